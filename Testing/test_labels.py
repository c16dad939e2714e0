"""Label maps keep names, colours and terminology through .seg.nrrd and NIfTI + sidecar."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import rotation_direction

from synthlab import labels, volume
from synthlab.errors import InputError

PROSTATE_TERMINOLOGY = {"contextName": labels.SLICER_ANATOMY_CONTEXT,
                        "category": ["SCT", "123037004", "Anatomical Structure"],
                        "type": ["SCT", "41216001", "Prostate"]}


def pelvis_labels() -> labels.LabelMap:
    values = np.zeros((10, 12, 14), np.uint8)
    values[2:5, 3:6, 4:8] = 1
    values[6:9, 2:10, 2:12] = 4
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((1.2, 1.2, 3.0))
    image.SetOrigin((-30.0, 12.5, -80.0))
    image.SetDirection(rotation_direction(10))
    return labels.LabelMap(image, [labels.Segment(1, "prostate", (0.85, 0.6, 0.5), PROSTATE_TERMINOLOGY),
                                   labels.Segment(4, "bladder", (0.9, 0.85, 0.3))])


@pytest.mark.parametrize("filename", ["contours.seg.nrrd", "contours.nii.gz", "contours.nrrd"])
def test_round_trip_keeps_voxels_geometry_and_metadata(tmp_path, filename):
    original = pelvis_labels()
    loaded = labels.read_labels(labels.write_labels(original, tmp_path / filename))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded.image), sitk.GetArrayFromImage(original.image))
    np.testing.assert_allclose(loaded.image.GetSpacing(), original.image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(loaded.image.GetOrigin(), original.image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(loaded.image.GetDirection(), original.image.GetDirection(), atol=1e-5)
    assert [(s.value, s.name) for s in loaded.segments] == [(1, "prostate"), (4, "bladder")]
    np.testing.assert_allclose(loaded.segment("bladder").color, (0.9, 0.85, 0.3), atol=1e-5)
    assert loaded.segment("prostate").terminology["type"] == PROSTATE_TERMINOLOGY["type"]
    assert loaded.mask("prostate").sum() == 3 * 3 * 4


def test_sidecar_sits_beside_nifti(tmp_path):
    labels.write_labels(pelvis_labels(), tmp_path / "case.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.labels.json", "case.nii.gz"]


def test_plain_label_image_gets_default_names(tmp_path):
    values = np.zeros((4, 4, 4), np.uint8)
    values[1, 1, 1], values[2, 2, 2] = 2, 3
    path = tmp_path / "plain.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
    loaded = labels.read_labels(path)
    assert [s.name for s in loaded.segments] == ["Label 2", "Label 3"]


def test_seg_nrrd_is_read_by_slicerio_conventions(tmp_path):
    """slicerio itself sees our segments with their names and label values."""
    import slicerio

    path = labels.write_labels(pelvis_labels(), tmp_path / "c.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    assert slicerio.segment_names(segmentation) == ["prostate", "bladder"]
    assert slicerio.segment_from_name(segmentation, "bladder")["labelValue"] == 4


def test_fractional_label_image_is_refused(tmp_path):
    path = tmp_path / "prob.nrrd"
    volume.write_image(sitk.GetImageFromArray(np.full((3, 3, 3), 0.5, np.float32)), path)
    with pytest.raises(InputError, match="whole numbers"):
        labels.read_labels(path, "--moving-labels")


def test_segment_volume_is_in_millilitres():
    original = pelvis_labels()  # prostate: 3 x 3 x 4 voxels of 1.2 x 1.2 x 3 mm
    assert original.volume_ml("prostate") == pytest.approx(36 * 1.2 * 1.2 * 3.0 / 1000)
    assert original.volume_ml("bladder") == pytest.approx(3 * 8 * 10 * 1.2 * 1.2 * 3.0 / 1000)
