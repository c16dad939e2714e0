"""The command line: help, a real command end to end, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import free_port, make_image, rotation_direction, synthlab, synthlab_here

from synthlab import labels, volume


def test_help_lists_commands():
    result = synthlab("--help")
    assert result.returncode == 0
    for command in ("info", "resample", "phantom", "demo"):
        assert command in result.stdout


def test_resample_puts_output_on_reference_grid_with_json_progress(tmp_path):
    reference = make_image(direction=rotation_direction(30))
    moving = make_image(size=(30, 30, 30), spacing=(1.0, 1.0, 1.0), origin=(-12.0, 15.0, 0.0), seed=3)
    volume.write_image(reference, tmp_path / "ref.nii.gz")
    volume.write_image(moving, tmp_path / "moving.mha")
    result = synthlab("resample", "--input", tmp_path / "moving.mha", "--reference", tmp_path / "ref.nii.gz",
                      "--out", tmp_path / "out.nrrd", "--progress", "json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["stage"] for e in events][-1] == "done"
    assert all(0.0 <= e["progress"] <= 1.0 for e in events)
    out = volume.read_image(tmp_path / "out.nrrd")
    assert volume.same_grid(out, reference)
    point = reference.TransformIndexToPhysicalPoint((10, 8, 6))
    expected = volume.resample(moving, reference)[10, 8, 6]
    assert out[10, 8, 6] == pytest.approx(expected, abs=1e-3)
    assert moving.TransformPhysicalPointToIndex(point)  # the point lies inside the moving image


def write_bad_inputs(tmp_path):
    volume.write_image(make_image(), tmp_path / "good.nrrd")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.float32)), str(tmp_path / "empty.nrrd"))
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 4, 4), np.nan, np.float32)), str(tmp_path / "nan.nrrd"))
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(16, dtype=np.float32).reshape(4, 4)), str(tmp_path / "flat.nrrd"))
    (tmp_path / "corrupt.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    volume.write_image(make_image(origin=(900.0, 0.0, 0.0)), tmp_path / "far.nrrd")


@pytest.mark.parametrize("bad,message", [
    ("missing.nrrd", "--input: file not found"),
    ("corrupt.nii.gz", "--input: cannot read corrupt.nii.gz"),
    ("empty.nrrd", "--input: image is empty"),
    ("nan.nrrd", "--input: image contains NaN"),
    ("flat.nrrd", "--input: expected a 3D image, got a 2D image"),
    ("far.nrrd", "--input: does not overlap --reference"),
])
def test_bad_input_gives_one_line_exit_2_and_no_output(tmp_path, bad, message):
    write_bad_inputs(tmp_path)
    result = synthlab_here("resample", "--input", tmp_path / bad, "--reference", tmp_path / "good.nrrd",
                           "--out", tmp_path / "out" / "result.nrrd")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synthlab: error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_geometry_mismatch_between_inputs_that_must_share_a_grid(tmp_path):
    volume.write_image(make_image(), tmp_path / "t1.nrrd")
    volume.write_image(make_image(spacing=(1.0, 1.0, 1.0)), tmp_path / "t2.nrrd")
    result = synthlab_here("info", "--same-grid", tmp_path / "t1.nrrd", tmp_path / "t2.nrrd")
    assert result.returncode == 2
    assert "t2.nrrd: grid (size 20x16x12, spacing 1x1x1 mm" in result.stderr
    assert f"differs from {tmp_path / 't1.nrrd'}" in result.stderr


def test_missing_option_and_unknown_command_are_one_line(tmp_path):
    for args, message in [(("resample", "--reference", "x.nrrd"), "Missing option '--input'"),
                          (("frobnicate",), "No such command 'frobnicate'")]:
        result = synthlab_here(*args)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_demo_refuses_a_file_as_output_folder(tmp_path):
    (tmp_path / "taken").write_text("keep me")
    result = synthlab_here("demo", "--out", tmp_path / "taken")
    assert result.returncode == 2 and "--out:" in result.stderr and "is a file" in result.stderr
    assert (tmp_path / "taken").read_text() == "keep me"


def test_demo_writes_volumes_overview_and_metrics(tmp_path):
    result = synthlab_here("demo", "--out", tmp_path / "demo", "--progress", "none")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["brain phantom"]["brain_volume_ml"] > 1000  # an adult brain, not an empty mask
    assert metrics["brain phantom"]["enhancing rim_ml"] > 0
    assert 20 <= metrics["pelvis phantom"]["planning"]["prostate_ml"] <= 60
    overview = sitk.ReadImage(str(tmp_path / "demo" / "overview.png"))
    assert overview.GetSize()[0] > 300
    t1 = volume.read_image(tmp_path / "demo" / "brain_phantom" / "t1.nrrd")
    np.testing.assert_allclose(t1.GetSpacing(), (2.0, 2.0, 2.0))
    contours = labels.read_labels(tmp_path / "demo" / "pelvis_phantom" / "fraction_01_contours.seg.nrrd")
    assert contours.present_values() == [1, 2, 3, 4]
    propagation = tmp_path / "demo" / "contour_propagation"  # the truth beside the result, and how far it moved
    truth = labels.read_labels(propagation / "true_daily_contours.seg.nrrd")
    np.testing.assert_array_equal(volume.array_of(truth.image), volume.array_of(contours.image))
    field = sitk.GetArrayFromImage(volume.read_image(propagation / "displacement.nrrd"))
    shift = volume.array_of(volume.read_image(propagation / "displacement_magnitude_mm.nrrd"))
    np.testing.assert_allclose(shift, np.linalg.norm(field, axis=-1), rtol=1e-5, atol=1e-5)
    assert shift.max() > 1  # the daily bladder is fuller than planned: something moved
    true_tumour = labels.read_labels(tmp_path / "demo" / "tumour_segmentation" / "true_tumour.seg.nrrd")
    assert abs(true_tumour.volume_ml(true_tumour.segments[0].name) - metrics["tumour segmentation"]["true_volume_ml"]) < 0.1


def test_version_is_printed():
    from synthlab import __version__

    result = synthlab("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"synthlab {__version__}"


@pytest.mark.parametrize("arguments, message", [
    (["phantom", "brain", "--cases", "0"], "--cases: must be at least 1 (got 0)"),
    (["phantom", "pelvis", "--patients", "0"], "--patients: must be at least 1 (got 0)"),
    (["phantom", "pelvis", "--fractions", "-1"], "--fractions: must be at least 1 (got -1)"),
    (["phantom", "brain", "--size", "huge"], "--size"),
])
def test_phantom_commands_refuse_bad_counts_in_one_line(tmp_path, arguments, message):
    result = synthlab_here(*arguments, "--out", tmp_path / "data")
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # nothing written


@pytest.mark.parametrize("kind", ["brain", "pelvis"])
def test_phantom_commands_refuse_a_file_as_output_folder(tmp_path, kind):
    (tmp_path / "taken").write_text("keep me")
    result = synthlab_here("phantom", kind, "--out", tmp_path / "taken")
    assert result.returncode == 2 and "--out:" in result.stderr and "is a file" in result.stderr
    assert (tmp_path / "taken").read_text() == "keep me"


@pytest.mark.parametrize("trainer", [["crossstitch", "--datalist"], ["register", "--datalist"],
                                     ["hiersynth", "--datalist"], ["synthtumour", "--unlabelled"]])
def test_trainers_refuse_a_file_as_cache_folder_in_one_line(tmp_path, trainer):
    datalist, taken = tmp_path / "datalist.json", tmp_path / "taken"
    datalist.write_text("{}")
    taken.write_text("keep me")
    healthy = ["--healthy", datalist] if trainer[0] == "synthtumour" else []
    result = synthlab_here("train", *trainer, datalist, *healthy, "--out", tmp_path / "run", "--cache", taken)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"--cache: {taken} is a file" in result.stderr
    assert taken.read_text() == "keep me" and not (tmp_path / "run").exists()


def test_a_run_past_its_time_fails_with_the_stack_of_each_thread():
    """A hung run (here: a server, which never ends by itself) must not leave a bare timeout: the helper asks
    synthlab to print where every thread is (SIGUSR1) before it kills the run."""
    with pytest.raises(pytest.fail.Exception) as failure:
        synthlab("serve", "--port", str(free_port()), "--device", "cpu", timeout=12)
    assert "still running after 12 s" in failure.value.msg
    assert "Thread 0x" in failure.value.msg and "File " in failure.value.msg
