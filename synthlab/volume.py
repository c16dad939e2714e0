"""Image I/O and geometry: every result must lie exactly on its reference input's grid.

Images are SimpleITK images throughout, so physical geometry (size, spacing,
origin, direction, in LPS millimetres) travels with the voxels. Models see a
*canonical* grid: identity direction (LPS axes), a fixed spacing, covering the
input's physical extent. :func:`to_canonical` builds it and :func:`onto_grid`
maps a result back onto the input's own grid.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from synthlab.errors import InputError

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
IMAGE_2D_SUFFIXES = (".png",)

# Two grids are the same when their geometry agrees to this tolerance (mm, or unitless for direction).
GRID_TOLERANCE = 1e-4


def suffix_of(path: str | os.PathLike) -> str:
    """The file's format suffix, treating ``.nii.gz`` as one suffix."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def check_suffix(path: str | os.PathLike, name: str, allow_2d: bool = False) -> None:
    allowed = VOLUME_SUFFIXES + (IMAGE_2D_SUFFIXES if allow_2d else ())
    if suffix_of(path) not in allowed:
        raise InputError(name, f"unsupported file type '{suffix_of(path) or Path(path).name}' "
                               f"(use one of {', '.join(allowed)})")


def read_image(path: str | os.PathLike, name: str | None = None, dimension: int | Sequence[int] | None = 3,
               check_content: bool = True) -> sitk.Image:
    """Read an image, refusing files that are missing, unreadable or unsuitable.

    ``name`` is how the user knows this input (for messages); ``dimension`` is
    the required dimension (or several allowed ones, or None for any).
    Colour PNGs are converted to grey levels. With ``check_content`` an empty,
    constant or non-finite image is refused.
    """
    name = name or str(path)
    path = Path(path)
    if not path.is_file():
        raise InputError(name, f"file not found: {path}")
    check_suffix(path, name, allow_2d=True)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise InputError(name, f"cannot read {path.name}: {reason}") from None
    if image.GetNumberOfComponentsPerPixel() > 1 and suffix_of(path) in IMAGE_2D_SUFFIXES:
        image = _to_grey(image)
    if dimension is not None:
        allowed = (dimension,) if isinstance(dimension, int) else tuple(dimension)
        if image.GetDimension() not in allowed:
            wanted = " or ".join(f"{d}D" for d in allowed)
            raise InputError(name, f"expected a {wanted} image, got a {image.GetDimension()}D image")
    if check_content:
        check_intensities(image, name)
    return image


def _to_grey(image: sitk.Image) -> sitk.Image:
    channels = sitk.GetArrayFromImage(image).astype(np.float32)[..., :3]
    grey = sitk.GetImageFromArray(channels.mean(axis=-1))
    grey.CopyInformation(sitk.VectorIndexSelectionCast(image, 0))
    return grey


def check_intensities(image: sitk.Image, name: str) -> None:
    """Refuse an image with no voxels, non-finite values, or one value everywhere."""
    values = sitk.GetArrayViewFromImage(image)
    if values.size == 0:
        raise InputError(name, "image has no voxels")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise InputError(name, "image contains NaN or infinite values")
    low, high = values.min(), values.max()
    if low == high:
        what = "empty (every voxel is 0)" if low == 0 else f"constant (every voxel is {low:g})"
        raise InputError(name, f"image is {what}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    A crash or an error leaves neither a half-written file nor a changed ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix_of(path) or path.suffix
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool | None = None) -> Path:
    """Write ``image`` atomically. NRRD is uncompressed by default (fast for Slicer), NIfTI .gz compressed.

    PNG holds 8-bit grey levels only: values are rounded and clipped to 0–255.
    """
    path = Path(path)
    suffix = suffix_of(path)
    if suffix not in VOLUME_SUFFIXES + IMAGE_2D_SUFFIXES:
        raise InputError(str(path), f"unsupported output type '{suffix}'")
    if suffix in IMAGE_2D_SUFFIXES:
        image = sitk.Cast(sitk.Clamp(sitk.Round(sitk.Cast(image, sitk.sitkFloat32)), sitk.sitkFloat32, 0, 255),
                          sitk.sitkUInt8)
    if compress is None:
        compress = suffix == ".nii.gz"
    with atomic_output(path) as temporary:
        sitk.WriteImage(image, str(temporary), useCompression=compress)
    return path


# --- grids ---------------------------------------------------------------------------------------------------

def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = GRID_TOLERANCE) -> bool:
    """True when ``a`` and ``b`` have the same size, spacing, origin and direction."""
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance))


def describe_grid(image: sitk.Image) -> str:
    size = "x".join(str(s) for s in image.GetSize())
    spacing = "x".join(f"{s:.3g}" for s in image.GetSpacing())
    origin = ",".join(f"{o:.1f}" for o in image.GetOrigin())
    return f"size {size}, spacing {spacing} mm, origin ({origin})"


def require_same_grid(reference_name: str, reference: sitk.Image, others: Mapping[str, sitk.Image]) -> None:
    """Refuse any of ``others`` whose grid differs from the reference's."""
    for name, image in others.items():
        if not same_grid(reference, image):
            raise InputError(name, f"grid ({describe_grid(image)}) differs from {reference_name} "
                                   f"({describe_grid(reference)})")


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest LPS coordinates covered by the image's voxels (outer voxel faces)."""
    size = np.array(image.GetSize())
    corners = np.array(np.meshgrid(*[(-0.5, s - 0.5) for s in size], indexing="ij")).reshape(len(size), -1).T
    points = np.array([image.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners])
    return points.min(axis=0), points.max(axis=0)


def require_overlap(reference_name: str, reference: sitk.Image, name: str, image: sitk.Image) -> None:
    """Refuse an image that shares no physical space with the reference (it cannot be resampled onto it)."""
    low_a, high_a = physical_bounds(reference)
    low_b, high_b = physical_bounds(image)
    overlap = np.minimum(high_a, high_b) - np.maximum(low_a, low_b)
    if (overlap <= 0).any():
        raise InputError(name, f"does not overlap {reference_name} in physical space "
                               f"({describe_grid(image)} vs {describe_grid(reference)}); cannot resample it")


def resample(image: sitk.Image, reference: sitk.Image, is_label: bool = False,
             transform: sitk.Transform | None = None, default: float = 0.0) -> sitk.Image:
    """Resample ``image`` onto ``reference``'s grid: nearest neighbour for labels, linear otherwise."""
    interpolator = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    transform = transform or sitk.Transform(image.GetDimension(), sitk.sitkIdentity)
    return sitk.Resample(image, reference, transform, interpolator, default, image.GetPixelID())


def onto_grid(result: sitk.Image, reference: sitk.Image, is_label: bool = False) -> sitk.Image:
    """Map a result (e.g. from the canonical grid) back onto the reference input's exact grid."""
    if same_grid(result, reference):
        output = sitk.Image(result)
    else:
        output = resample(result, reference, is_label)
    output.CopyInformation(reference)
    return output


def _is_axis_aligned(image: sitk.Image) -> bool:
    direction = np.abs(np.array(image.GetDirection()).reshape(image.GetDimension(), -1))
    return bool(np.all(np.isclose(direction, 0, atol=1e-6) | np.isclose(direction, 1, atol=1e-6)))


def to_canonical(image: sitk.Image, spacing: Sequence[float] | None = None, is_label: bool = False) -> sitk.Image:
    """Bring an image to identity direction (LPS axes) and, optionally, a given spacing.

    Permutations and flips are exact voxel reorderings (no interpolation). An
    oblique image is resampled onto the axis-aligned box that encloses it. With
    ``spacing`` the result is then resampled to that spacing over the same
    physical extent.
    """
    dimension = image.GetDimension()
    identity = np.eye(dimension).ravel().tolist()
    if _is_axis_aligned(image):
        canonical = sitk.DICOMOrient(image, "LPS") if dimension == 3 else _flip_to_identity_2d(image)
    else:
        canonical = _resample_to_box(image, image.GetSpacing(), is_label)
    if spacing is not None and not np.allclose(canonical.GetSpacing(), spacing, atol=GRID_TOLERANCE):
        canonical = _resample_to_box(canonical, spacing, is_label)
    canonical.SetDirection(identity)  # remove round-off left by the reorientation
    return canonical


def _flip_to_identity_2d(image: sitk.Image) -> sitk.Image:
    """2D counterpart of DICOMOrient: permute and flip axes until the direction is the identity."""
    direction = np.array(image.GetDirection()).reshape(2, 2)
    order = [int(np.argmax(np.abs(direction[axis, :]))) for axis in range(2)]
    permuted = sitk.PermuteAxes(image, order) if order != [0, 1] else image
    direction = np.array(permuted.GetDirection()).reshape(2, 2)
    flips = [bool(direction[axis, axis] < 0) for axis in range(2)]
    return sitk.Flip(permuted, flips) if any(flips) else permuted


def _resample_to_box(image: sitk.Image, spacing: Sequence[float], is_label: bool) -> sitk.Image:
    """Resample onto an identity-direction grid of ``spacing`` enclosing the image's physical extent."""
    low, high = physical_bounds(image)
    spacing = np.asarray(spacing, dtype=float)
    size = np.maximum(1, np.round((high - low) / spacing - 1e-6).astype(int))
    centre = (low + high) / 2
    origin = centre - (size - 1) / 2 * spacing
    box = sitk.Image([int(s) for s in size], image.GetPixelID(), image.GetNumberOfComponentsPerPixel())
    box.SetSpacing(spacing.tolist())
    box.SetOrigin(origin.tolist())
    return resample(image, box, is_label)


def array_of(image: sitk.Image, dtype=np.float32) -> np.ndarray:
    """Voxel values as a numpy array in SimpleITK's (z, y, x) order."""
    return sitk.GetArrayFromImage(image).astype(dtype, copy=False)


def image_like(values: np.ndarray, reference: sitk.Image, is_vector: bool = False) -> sitk.Image:
    """An image with ``values`` (z, y, x order) on ``reference``'s grid."""
    image = sitk.GetImageFromArray(values, isVector=is_vector)
    image.CopyInformation(reference)
    return image


def check_outputs(inputs: Mapping[str, Path | None], outputs: Mapping[str, Path | None]) -> None:
    """Refuse an output that would overwrite an input, or two outputs with one path."""
    taken = {Path(p).resolve(): name for name, p in inputs.items() if p is not None}
    for name, path in outputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in taken:
            raise InputError(name, f"{path} is also {taken[resolved]}; choose another file (inputs are never "
                                   f"overwritten)")
        check_suffix(path, name, allow_2d=True)
        taken[resolved] = name
