"""Nodes <-> files on slicer-core's real MRML scene (no Slicer application, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import make_image, rotation_direction
from test_labels import pelvis_labels

from synthlab import labels, mrml, volume
from synthlab.client import BackendError, LocalBackend
from synthlab.slicer_job import NodeJob

slicer = pytest.importorskip("slicer")


@pytest.fixture(scope="module")
def scene():
    return mrml.headless_scene()


def ras_of_lps(point):
    return [-point[0], -point[1], point[2]]


def test_volume_node_round_trip_keeps_voxels_and_geometry(scene, tmp_path):
    image = make_image(direction=rotation_direction(30))
    volume.write_image(image, tmp_path / "in.nii.gz")
    node = mrml.load_volume(scene, tmp_path / "in.nii.gz", "T1")
    # Slicer's RAS geometry agrees with the LPS file: voxel (3, 4, 5) sits at the same physical point
    ijk_to_ras = slicer.util.arrayFromVTKMatrix(_ijk_to_ras(node))
    expected = ras_of_lps(image.TransformIndexToPhysicalPoint((3, 4, 5)))
    np.testing.assert_allclose((ijk_to_ras @ [3, 4, 5, 1])[:3], expected, atol=1e-4)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(node), volume.array_of(image))
    written = volume.read_image(mrml.save_node(node, tmp_path / "out.nrrd"))
    assert volume.same_grid(written, image)
    np.testing.assert_array_equal(volume.array_of(written), volume.array_of(image))


def _ijk_to_ras(node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


def test_segmentation_from_seg_nrrd_and_labelmap_keeps_names_and_colours(scene, tmp_path):
    original = pelvis_labels()
    node = mrml.load_segmentation(scene, labels.write_labels(original, tmp_path / "c.nii.gz"), "Contours")
    assert mrml.segment_names(node) == ["prostate", "bladder"]
    bladder = node.GetSegmentation().GetSegment(node.GetSegmentation().GetSegmentIdBySegmentName("bladder"))
    np.testing.assert_allclose(bladder.GetColor(), (0.9, 0.85, 0.3), atol=1e-5)
    # node -> .seg.nrrd -> label map: voxels land where they were
    back = labels.read_labels(mrml.save_node(node, tmp_path / "back.seg.nrrd"))
    resampled = volume.onto_grid(back.image, original.image, is_label=True)
    values = sitk.GetArrayFromImage(resampled)
    assert [s.name for s in back.segments] == ["prostate", "bladder"]
    assert ((values == back.segment("bladder").value) == original.mask("bladder")).all()
    assert ((values == back.segment("prostate").value) == original.mask("prostate")).all()


def test_labelmap_node_to_named_segmentation(scene, tmp_path):
    original = pelvis_labels()
    volume.write_image(original.image, tmp_path / "labels.nrrd")
    labelmap = mrml.load_volume(scene, tmp_path / "labels.nrrd", "labels", labelmap=True)
    node = mrml.labelmap_to_segmentation(labelmap, original.segments, "Organs")
    assert sorted(mrml.segment_names(node)) == ["bladder", "prostate"]


def test_displacement_field_becomes_a_grid_transform_that_moves_points(scene, tmp_path):
    """A field mapping fixed to moving points (LPS mm) moves a fixed RAS point to the moving point."""
    reference = make_image(size=(10, 10, 10), spacing=(2.0, 2.0, 2.0), origin=(-10.0, -10.0, -10.0))
    displacement_lps = np.array([2.0, -3.0, 5.0])
    field = volume.image_like(np.tile(displacement_lps, (10, 10, 10, 1)), reference, is_vector=True)
    volume.write_image(field, tmp_path / "field.nrrd")
    node = mrml.load_grid_transform(scene, tmp_path / "field.nrrd", "Deformation")
    fixed_lps = np.array([1.0, 2.0, 3.0])
    moved = node.GetTransformFromParent().TransformPoint(ras_of_lps(fixed_lps))
    np.testing.assert_allclose(moved, ras_of_lps(fixed_lps + displacement_lps), atol=1e-4)


def test_metrics_become_a_table(scene):
    table = mrml.metrics_table(scene, {"prostate": {"Dice": 0.91, "MSD (mm)": 1.2},
                                       "bladder": {"Dice": 0.95, "MSD (mm)": 0.9}}, "Metrics")
    assert table.GetNumberOfRows() == 2 and table.GetNumberOfColumns() == 3
    assert table.GetCellText(1, 0) == "bladder" and table.GetCellText(0, 1) == "0.91"
    assert table.GetColumnName(2) == "MSD (mm)"
    single = mrml.metrics_table(scene, {"volume (ml)": 12.5}, "Tumour volume")
    assert single.GetNumberOfRows() == 1 and single.GetCellText(0, 1) == "12.5"


def test_node_job_runs_a_real_task_and_results_load_as_nodes(scene, tmp_path):
    volume.write_image(make_image(), tmp_path / "ref.nrrd")
    volume.write_image(make_image(size=(30, 30, 30), spacing=(1.0, 1.0, 1.0), seed=4), tmp_path / "in.nrrd")
    reference = mrml.load_volume(scene, tmp_path / "ref.nrrd", "reference")
    moving = mrml.load_volume(scene, tmp_path / "in.nrrd", "moving")
    job = NodeJob(LocalBackend(), "resample", {"input": moving, "reference": reference}, {"out": "out.nrrd"})
    result = job.finish()
    output = mrml.load_volume(scene, result.outputs["out"], "resampled")
    mrml.set_provenance(output, task="resample")
    job.cleanup()
    assert not job.folder.exists()
    assert output.GetImageData().GetDimensions() == reference.GetImageData().GetDimensions()
    assert output.GetAttribute("SynthLab.task") == "resample"
    assert job.latest_event["stage"] == "done"


def test_node_job_reports_the_backend_message(scene, tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 5, 5), np.float32)), str(tmp_path / "empty.nrrd"))
    volume.write_image(make_image(), tmp_path / "ref.nrrd")
    empty = mrml.load_volume(scene, tmp_path / "empty.nrrd", "empty")
    reference = mrml.load_volume(scene, tmp_path / "ref.nrrd", "reference")
    job = NodeJob(LocalBackend(), "resample", {"input": empty, "reference": reference}, {"out": "out.nrrd"})
    with pytest.raises(BackendError, match="--input: image is empty"):
        job.finish()
    job.cleanup()
