"""Geometry is kept through every format, reorientation and resampling."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import make_image, rotation_direction

from synthlab import volume
from synthlab.errors import InputError


def permuted_and_flipped(image: sitk.Image, order, flips) -> sitk.Image:
    """The same physical image stored with axes permuted and flipped (geometry adjusted to match)."""
    return sitk.Flip(sitk.PermuteAxes(image, order), flips)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii", ".nii.gz", ".mha"])
def test_geometry_survives_every_format(tmp_path, suffix):
    image = make_image(direction=rotation_direction(20))
    path = volume.write_image(image, tmp_path / f"case{suffix}")
    loaded = volume.read_image(path)
    assert loaded.GetSize() == image.GetSize()
    np.testing.assert_allclose(loaded.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(loaded.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(loaded.GetDirection(), image.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(volume.array_of(loaded), volume.array_of(image))


def test_png_round_trip_for_2d(tmp_path):
    values = (np.arange(30 * 20).reshape(20, 30) % 256).astype(np.uint8)
    image = sitk.GetImageFromArray(values)
    loaded = volume.read_image(volume.write_image(image, tmp_path / "slice.png"), dimension=2)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded), values)


@pytest.mark.parametrize("order,flips", [((0, 1, 2), (True, False, False)), ((2, 0, 1), (False, False, False)),
                                         ((1, 2, 0), (False, True, True))])
def test_permuted_and_flipped_copies_are_physically_identical(order, flips):
    image = make_image()
    copy = permuted_and_flipped(image, order, flips)
    assert copy.GetDirection() != image.GetDirection()
    a, b = volume.to_canonical(image), volume.to_canonical(copy)
    assert volume.same_grid(a, b)
    np.testing.assert_array_equal(volume.array_of(a), volume.array_of(b))
    # and mapping a result back lands exactly on each input's own grid
    back = volume.onto_grid(b, copy)
    assert volume.same_grid(back, copy)
    np.testing.assert_allclose(volume.array_of(back), volume.array_of(copy), atol=1e-4)


def test_oblique_copy_round_trip_keeps_physical_values():
    """An obliquely stored image, taken to canonical space and back, keeps its values where they were."""
    image = make_image(size=(32, 32, 24), spacing=(1.0, 1.0, 1.0), direction=rotation_direction(25))
    canonical = volume.to_canonical(image)
    assert np.allclose(canonical.GetDirection(), np.eye(3).ravel())
    back = volume.onto_grid(canonical, image)
    assert volume.same_grid(back, image)
    inner = (slice(6, -6),) * 3  # away from the box corners, linear interpolation twice
    error = np.abs(volume.array_of(back)[inner] - volume.array_of(image)[inner])
    assert np.median(error) < 3.0  # values span 0..180; the noise alone has sigma 1


def test_physical_point_has_same_value_in_original_and_oblique_copy():
    """Sample one physical point in an image and in a rotated resampling of it: the same value."""
    image = make_image(size=(40, 40, 30), spacing=(1.0, 1.0, 1.0))
    oblique_grid = make_image(size=(40, 40, 30), spacing=(1.0, 1.0, 1.0), direction=rotation_direction(15),
                              origin=(-5.0, 15.0, 3.0))
    oblique = volume.resample(image, oblique_grid)
    canonical = volume.to_canonical(oblique, spacing=(1.0, 1.0, 1.0))
    point = image.TransformIndexToPhysicalPoint((20, 20, 15))
    index = canonical.TransformPhysicalPointToIndex(point)
    assert abs(canonical[index] - image[20, 20, 15]) < 6.0


def test_canonical_spacing_and_labels_use_nearest():
    labels = sitk.GetImageFromArray(np.repeat(np.arange(4, dtype=np.uint8), 6)[None, None, :].repeat(8, 0).repeat(8, 1))
    resampled = volume.to_canonical(labels, spacing=(0.5, 2.0, 2.0), is_label=True)
    assert set(np.unique(volume.array_of(resampled, np.uint8))) <= {0, 1, 2, 3}
    np.testing.assert_allclose(resampled.GetSpacing(), (0.5, 2.0, 2.0))
    back = volume.onto_grid(resampled, labels, is_label=True)
    assert (volume.array_of(back, np.uint8) == volume.array_of(labels, np.uint8)).mean() > 0.95


def test_write_is_atomic_when_it_fails(tmp_path, monkeypatch):
    target = tmp_path / "out.nrrd"
    volume.write_image(make_image(seed=1), target)
    before = target.read_bytes()

    def broken_write(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken_write)
    with pytest.raises(RuntimeError):
        volume.write_image(make_image(seed=2), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.nrrd"]


@pytest.mark.parametrize("content,message", [
    (np.zeros((4, 5, 6), np.float32), "empty"),
    (np.full((4, 5, 6), 7.0, np.float32), "constant"),
    (np.where(np.arange(120).reshape(4, 5, 6) == 3, np.nan, 1.0).astype(np.float32), "NaN"),
])
def test_bad_content_is_refused(tmp_path, content, message):
    path = tmp_path / "bad.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(content), str(path))
    with pytest.raises(InputError, match=message) as caught:
        volume.read_image(path, "--t1")
    assert caught.value.name == "--t1"


def test_missing_unreadable_and_wrong_dimension(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        volume.read_image(tmp_path / "nope.nii.gz", "--t1")
    corrupt = tmp_path / "corrupt.nrrd"
    corrupt.write_text("this is not an image")
    with pytest.raises(InputError, match="cannot read corrupt.nrrd"):
        volume.read_image(corrupt, "--t1")
    flat = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(12, dtype=np.float32).reshape(3, 4)), str(flat))
    with pytest.raises(InputError, match="expected a 3D image, got a 2D image"):
        volume.read_image(flat, "--t1")
    with pytest.raises(InputError, match="unsupported file type"):
        volume.read_image(corrupt.rename(tmp_path / "x.txt"), "--t1")


def test_grid_mismatch_and_no_overlap_are_named():
    a = make_image()
    b = make_image(spacing=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="--t2: grid .* differs from --t1"):
        volume.require_same_grid("--t1", a, {"--t2": b})
    far = make_image(origin=(500.0, 0.0, 0.0))
    with pytest.raises(InputError, match="does not overlap"):
        volume.require_overlap("--t1", a, "--mask", far)
