"""Bringing a (fixed, moving) pair onto the model's grid, and fields back to the fixed image's grid.

The model grid has identity direction (LPS axes), the model's spacing, and
covers a region of the fixed image (the whole image, or a box around the moving
contours), padded to a multiple of the network's size step. The moving image and
its contours are resampled onto it in physical space, so the two scans may differ
in size, spacing, orientation and position.

Network displacements are voxels along tensor axes (z, y, x); fields leave this
module in the ITK convention: LPS millimetres on the fixed grid, mapping fixed
points to moving points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from synthlab import volume
from synthlab.crossstitch.networks import SIZE_MULTIPLE
from synthlab.errors import InputError

# Contours move with the organs: look this far (mm) beyond the planning contours for today's.
ROI_MARGIN_MM = 40.0
# The field fades to zero over this distance (mm) inside the border of a region smaller than the image.
TAPER_MM = 15.0


@dataclass
class ModelGrid:
    """A reference image (identity direction, model spacing) that network tensors are laid on."""

    reference: sitk.Image

    @property
    def spacing(self) -> np.ndarray:
        return np.array(self.reference.GetSpacing())

    @property
    def shape(self) -> tuple[int, ...]:
        """Tensor shape (z, y, x) / (y, x)."""
        return tuple(reversed(self.reference.GetSize()))

    def resample(self, image: sitk.Image, is_label: bool = False, default: float = 0.0) -> np.ndarray:
        """``image`` on this grid as a float32 array (tensor order)."""
        resampled = volume.resample(sitk.Cast(image, sitk.sitkFloat32), self.reference, is_label, default=default)
        return volume.array_of(resampled)

    def one_hot(self, labels: sitk.Image, values: Sequence[int]) -> np.ndarray:
        """Partial-volume masks of each label value on this grid (channels, tensor order), by linear resampling."""
        return np.stack([self.resample(sitk.Cast(labels == int(v), sitk.sitkFloat32)) for v in values])

    def field_to_mm(self, ddf_voxels: np.ndarray) -> sitk.Image:
        """A (dims, tensor order) voxel displacement as an LPS-millimetre vector image on this grid."""
        dims = ddf_voxels.shape[0]
        components = [ddf_voxels[dims - 1 - axis] * self.spacing[axis] for axis in range(dims)]  # x, y(, z)
        return volume.image_like(np.stack(components, axis=-1).astype(np.float64), self.reference, is_vector=True)


def model_grid(fixed: sitk.Image, spacing: Sequence[float], region: tuple[np.ndarray, np.ndarray] | None = None
               ) -> ModelGrid:
    """An identity-direction grid of ``spacing`` covering ``region`` (low, high LPS corners) or the whole
    fixed image, with each side padded to a multiple of the network's size step."""
    low, high = region if region is not None else volume.physical_bounds(fixed)
    spacing = np.asarray(spacing, dtype=float)
    if len(spacing) != fixed.GetDimension():
        raise InputError("--fixed", f"the model is {len(spacing)}D but the image is {fixed.GetDimension()}D")
    size = np.maximum(1, np.ceil((high - low) / spacing - 1e-6).astype(int))
    size = (np.ceil(size / SIZE_MULTIPLE) * SIZE_MULTIPLE).astype(int)
    origin = (low + high) / 2 - (size - 1) / 2 * spacing
    reference = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    reference.SetSpacing(spacing.tolist())
    reference.SetOrigin(origin.tolist())
    return ModelGrid(reference)


def contour_region(fixed: sitk.Image, moving_labels: sitk.Image, margin_mm: float = ROI_MARGIN_MM
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The part of the fixed image within ``margin_mm`` of the moving contours' bounding box (LPS)."""
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(sitk.Cast(moving_labels > 0, sitk.sitkUInt8))
    if not statistics.HasLabel(1):
        raise InputError("--moving-labels", "no contour voxels")
    box = statistics.GetBoundingBox(1)
    dims = moving_labels.GetDimension()
    start, size = np.array(box[:dims]), np.array(box[dims:])
    corners = np.array(np.meshgrid(*[(s - 0.5, s + n - 0.5) for s, n in zip(start, size, strict=True)],
                                   indexing="ij")).reshape(dims, -1).T
    points = np.array([moving_labels.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners])
    fixed_low, fixed_high = volume.physical_bounds(fixed)
    low = np.maximum(points.min(axis=0) - margin_mm, fixed_low)
    high = np.minimum(points.max(axis=0) + margin_mm, fixed_high)
    if (high <= low).any():
        raise InputError("--moving-labels", "the planning contours lie outside the daily image")
    return low, high


def field_on_fixed_grid(field: sitk.Image, fixed: sitk.Image, taper_mm: float = TAPER_MM) -> sitk.Image:
    """Resample a model-grid field onto the fixed image's grid (ITK convention, LPS mm, float64).

    Where the model grid covers only part of the fixed image, the field fades to zero
    over ``taper_mm`` inside the region's border, so it stays continuous (no folds).
    """
    (fixed_low, fixed_high), (field_low, field_high) = volume.physical_bounds(fixed), volume.physical_bounds(field)
    if not ((fixed_low >= field_low - 1e-3).all() and (fixed_high <= field_high + 1e-3).all()):
        taper = border_ramp(field, taper_mm)
        field = sitk.Compose([sitk.VectorIndexSelectionCast(field, i) * taper
                              for i in range(field.GetNumberOfComponentsPerPixel())])
    resampled = sitk.Resample(field, fixed, sitk.Transform(fixed.GetDimension(), sitk.sitkIdentity),
                              sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
    resampled.CopyInformation(fixed)
    return resampled


def border_ramp(image: sitk.Image, distance_mm: float) -> sitk.Image:
    """1 inside, falling linearly to 0 at the image border over ``distance_mm`` (on the image's own grid)."""
    size, spacing = np.array(image.GetSize()), np.array(image.GetSpacing())
    weight = np.ones(tuple(reversed(image.GetSize())), dtype=np.float64)
    for axis in range(image.GetDimension()):
        index = np.arange(size[axis])
        distance = np.minimum(index + 0.5, size[axis] - index - 0.5) * spacing[axis]
        ramp = np.clip(distance / distance_mm, 0, 1)
        shape = [1] * image.GetDimension()
        shape[image.GetDimension() - 1 - axis] = size[axis]
        weight = weight * ramp.reshape(shape)
    return volume.image_like(weight, image)


def displacement_transform(field: sitk.Image) -> sitk.DisplacementFieldTransform:
    """A SimpleITK transform from an ITK-convention field (the input image is left untouched)."""
    return sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))


def warp_label_masks(labels: sitk.Image, values: Sequence[int], fixed: sitk.Image, field: sitk.Image) -> np.ndarray:
    """Each label's mask warped onto the fixed grid through the field, linearly: one soft mask a value."""
    transform = displacement_transform(field)
    return np.stack([volume.array_of(sitk.Resample(sitk.Cast(labels == int(v), sitk.sitkFloat32), fixed, transform,
                                                   sitk.sitkLinear, 0.0)) for v in values])


def labels_from_masks(masks: np.ndarray, values: Sequence[int], fixed: sitk.Image) -> sitk.Image:
    """The label map of soft masks on the fixed grid: each voxel takes the strongest mask above one half."""
    threshold = np.full(masks.shape[1:], 0.5, np.float32)  # a label needs more than half
    winner = np.argmax(np.concatenate([threshold[None], masks]), axis=0)
    lookup = np.array([0] + [int(v) for v in values], dtype=np.uint16)
    return volume.image_like(lookup[winner], fixed)


def warp_labels(labels: sitk.Image, values: Sequence[int], fixed: sitk.Image, field: sitk.Image) -> sitk.Image:
    """Warp a label map onto the fixed grid through the field, each label smoothly (linear on its mask)."""
    return labels_from_masks(warp_label_masks(labels, values, fixed, field), values, fixed)


def warp_image(image: sitk.Image, fixed: sitk.Image, field: sitk.Image, default: float) -> sitk.Image:
    """Warp an image onto the fixed grid through the field (linear), keeping its pixel type."""
    return sitk.Resample(image, fixed, displacement_transform(field), sitk.sitkLinear, default,
                         image.GetPixelID())


def folding_fraction(field: sitk.Image, mask: sitk.Image | None = None) -> float:
    """Fraction of voxels (inside ``mask`` if given) where the transform's Jacobian determinant is ≤ 0.

    ITK's filter differentiates along the voxel axes and ignores the direction cosines, so the vectors are first
    expressed along the image's own axes (a rotation of coordinates, which leaves the determinant unchanged):
    fields on flipped or oblique grids (an RAS-stored CT) are measured like those on LPS grids.
    """
    dimension = field.GetDimension()
    direction = np.array(field.GetDirection()).reshape(dimension, dimension)
    along_axes = sitk.GetImageFromArray(sitk.GetArrayFromImage(field).astype(np.float64) @ direction, isVector=True)
    along_axes.SetSpacing(field.GetSpacing())
    determinant = volume.array_of(sitk.DisplacementFieldJacobianDeterminant(along_axes), np.float64)
    inside = volume.array_of(mask, bool) if mask is not None else np.ones_like(determinant, bool)
    return float((determinant[inside] <= 0).mean()) if inside.any() else 0.0
