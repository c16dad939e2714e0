"""Patient set-up correction: a rigid match on bone of the planning CT to the daily CT, before the network.

A patient lies a little differently on the couch every day. The network was trained on pairs a few
millimetres and degrees apart; one lying further off, or turned, would put the organs beyond its
reach. As a radiotherapy team matches on bony anatomy first, a rigid registration of the two CTs'
bone finds the set-up. The daily CT is then moved into the planning CT's frame by its geometry alone
(its voxels are not resampled), the network registers what is left there, and the results are put
back on the daily CT's own grid: the field returned maps daily points to planning points (ITK
convention) and includes the set-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from synthlab import volume

BONE_WINDOW_HU = (200.0, 1200.0)  # cancellous to cortical bone; soft tissue and urine fall to zero
MATCH_SPACING_MM = 4.0  # both CTs are averaged down to about this spacing first (the model grid is 4 mm)
SHRINK_FACTORS = (2, 1)  # coarse to fine, in those voxels
SMOOTHING_MM = (4.0, 1.0)
SAMPLING = 0.1  # share of voxels the metric samples (a fixed seed: the same answer every run)
SAMPLING_SEED = 7
ITERATIONS = 100


def _rigid(dimension: int) -> sitk.Transform:
    return sitk.Euler3DTransform() if dimension == 3 else sitk.Euler2DTransform()


@dataclass
class SetupCorrection:
    """A rigid transform mapping daily (fixed) points to planning (moving) points."""

    transform: sitk.Transform

    @classmethod
    def identity(cls, dimension: int = 3) -> SetupCorrection:
        return cls(_rigid(dimension))

    @property
    def matrix(self) -> np.ndarray:
        dims = self.transform.GetDimension()
        return np.array(self.transform.GetMatrix()).reshape(dims, dims)

    @property
    def translation_mm(self) -> np.ndarray:
        """How far the anatomy at the rotation centre (the daily CT's centre, for a found set-up) lies on the planning
        CT from where it lies on the daily CT."""
        return np.array(self.transform.GetTranslation())

    @property
    def rotation_deg(self) -> np.ndarray:
        """Rotation angles about x, y(, z) (LPS), degrees."""
        parameters = np.array(self.transform.GetParameters())
        return np.degrees(parameters[:3] if self.transform.GetDimension() == 3 else parameters[:1])

    def summary(self) -> dict[str, list[float]]:
        """For JSON: the translation (mm) and rotation (degrees), rounded to 0.01."""
        return {"translation_mm": [round(float(v), 2) for v in self.translation_mm],
                "rotation_deg": [round(float(v), 2) for v in self.rotation_deg]}

    def describe(self) -> str:
        shift = np.linalg.norm(self.translation_mm)
        return f"{shift:.1f} mm and {np.abs(self.rotation_deg).max():.1f}° (largest rotation)"

    def moved(self, image: sitk.Image) -> sitk.Image:
        """A copy of ``image`` whose voxel at x sits at T(x): the same values, a new origin and direction. The daily
        CT moved so lies in the planning CT's frame, its anatomy where the planning CT has it."""
        moved = sitk.Image(image)
        moved.SetOrigin(self.transform.TransformPoint(image.GetOrigin()))
        direction = self.matrix @ np.array(image.GetDirection()).reshape(self.matrix.shape)
        moved.SetDirection(direction.ravel().tolist())
        return moved

    @staticmethod
    def back_on(image: sitk.Image, daily: sitk.Image) -> sitk.Image:
        """An image on the moved daily grid (the same voxels) back on the daily CT's own grid."""
        back = sitk.Image(image)
        back.CopyInformation(daily)
        return back

    def field_on(self, field: sitk.Image, daily: sitk.Image) -> sitk.Image:
        """A field made on the moved daily grid (moved point -> planning point) as a field on the daily CT's own
        grid (daily point -> planning point, ITK convention): the set-up's displacement T(x) - x plus the field."""
        rigid = sitk.TransformToDisplacementField(self.transform, sitk.sitkVectorFloat64, daily.GetSize(),
                                                  daily.GetOrigin(), daily.GetSpacing(), daily.GetDirection())
        total = volume.array_of(rigid, np.float64) + volume.array_of(field, np.float64)
        return volume.image_like(total, daily, is_vector=True)


def _bone(image: sitk.Image) -> sitk.Image:
    """The HU in the bone window, averaged down to about ``MATCH_SPACING_MM`` (zero outside bone)."""
    low, high = BONE_WINDOW_HU
    factors = [max(1, round(MATCH_SPACING_MM / spacing)) for spacing in image.GetSpacing()]
    return sitk.BinShrink(sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, low, high) - low, factors)


def _bone_centre(bone: sitk.Image) -> np.ndarray | None:
    """The centre of mass of the bone (LPS mm), None when the image has none."""
    weights = volume.array_of(bone)
    if not weights.any():
        return None
    index = [float(np.average(np.arange(n), weights=weights.sum(axis=tuple(a for a in range(weights.ndim) if a != axis))))
             for axis, n in enumerate(weights.shape)]
    return np.array(bone.TransformContinuousIndexToPhysicalPoint(index[::-1]))


def _registration() -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING, SAMPLING_SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.01, numberOfIterations=ITERATIONS,
                                                    relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(SHRINK_FACTORS))
    method.SetSmoothingSigmasPerLevel(list(SMOOTHING_MM))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _about(transform: sitk.Transform, centre) -> sitk.Transform:
    """The same rigid transform with its rotation centre at ``centre`` (its translation then says where that point
    goes)."""
    recentred = _rigid(transform.GetDimension())
    recentred.SetCenter(centre)
    recentred.SetParameters(transform.GetParameters())
    recentred.SetTranslation(np.subtract(transform.TransformPoint(centre), centre).tolist())
    return recentred


def _mismatch(transform: sitk.Transform, fixed_bone: sitk.Image, moving_bone: sitk.Image) -> float:
    """Mean squared difference of the bone over the whole daily CT, the planning CT's bone taken as none beyond its
    scan (the registration's own metric counts only where the scans overlap, so it favours slipping apart)."""
    laid = sitk.Resample(moving_bone, fixed_bone, transform, sitk.sitkLinear, 0.0)
    return float(np.mean((volume.array_of(laid) - volume.array_of(fixed_bone)) ** 2))


def estimate_setup(fixed: sitk.Image, moving: sitk.Image) -> SetupCorrection:
    """The rigid transform that best lays the planning CT's bone on the daily CT's (mean squares of the HU in
    the bone window, coarse to fine), started twice: from the CTs as they are, and with the centres of their bone
    laid on each other (for scans whose frames lie far apart); the better of the two over the whole daily CT, or
    the identity when neither is better than the CTs as they are."""
    dimension = fixed.GetDimension()
    fixed_bone, moving_bone = _bone(fixed), _bone(moving)
    low, high = volume.physical_bounds(fixed)
    as_they_are = _rigid(dimension)
    as_they_are.SetCenter(((low + high) / 2).tolist())
    starts = [as_they_are]
    centres = _bone_centre(fixed_bone), _bone_centre(moving_bone)
    if centres[0] is not None and centres[1] is not None:
        by_bone = _rigid(dimension)
        by_bone.SetCenter(centres[0].tolist())
        by_bone.SetTranslation((centres[1] - centres[0]).tolist())
        starts.append(by_bone)
    method = _registration()
    best, best_value = SetupCorrection.identity(dimension), _mismatch(as_they_are, fixed_bone, moving_bone)
    for start in starts:
        method.SetInitialTransform(start, inPlace=False)
        found = _rigid(dimension)
        found.SetCenter(start.GetCenter())
        found.SetParameters(sitk.CompositeTransform(method.Execute(fixed_bone, moving_bone)).GetNthTransform(0)
                            .GetParameters())
        found = _about(found, as_they_are.GetCenter())  # reported the same way whichever start won
        value = _mismatch(found, fixed_bone, moving_bone)
        if value < best_value:
            best, best_value = SetupCorrection(found), value
    return best
