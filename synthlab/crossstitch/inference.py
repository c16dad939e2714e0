"""Inference without Lightning: contour propagation (``synthlab contour``) and registration (``register``).

The pair is resampled onto the model grid (see :mod:`geometry`), the network
predicts a displacement field (the whole region at once, or a sliding window),
optionally refined by a few gradient steps on this pair (instance optimisation),
and the field is mapped back onto the fixed image's grid in the ITK convention.
Planning contours are warped at their own resolution through that field, so
every planning segment (even ones the model does not know) keeps its name,
colour and detail. ``register`` also works with no network at all (model
``optimisation-only``): instance optimisation from zero displacement, on the fixed
image's own grid, for images of any modality.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage

from synthlab import volume
from synthlab.crossstitch import geometry
from synthlab.crossstitch.data import PERCENTILE_RANGE, PairArrays, match_organs, pair_on_grid, require_ct
from synthlab.crossstitch.instance import SegmentationGuide, refine_field
from synthlab.crossstitch.networks import FILTERS, SIZE_MULTIPLE, JointNetwork
from synthlab.crossstitch.setup import SetupCorrection, estimate_setup
from synthlab.device import autocast, resolve_device
from synthlab.errors import InputError
from synthlab.labels import PELVIS_SEGMENTS, LabelMap, Segment
from synthlab.metrics import surface_distances
from synthlab.progress import StageProgress
from synthlab.registry import InferenceModel

warnings.filterwarnings("ignore", message=".*Using PyTorch native grid_sample.*")

OPTIMISATION_ONLY = "optimisation-only"  # register with no network: instance optimisation from zero
OPTIMISATION_STEPS = 100  # its default steps a pyramid level
OPTIMISATION_MIN_SPACING_MM = {2: 1.0, 3: 2.0}  # its grid: the fixed image's spacing, at least this
EXPECTED_ORGAN_MARGIN_MM = 20.0  # the network's own segmentation keeps only pieces this close to where the organ lands


class LoadedModel(InferenceModel):
    """A joint registration + segmentation network (a ``contour`` or a ``register`` model)."""

    @property
    def dimension(self) -> int:
        return int(self.card["spatial_dims"])

    def iterations(self, asked: int | None) -> int:
        """Instance-optimisation steps: those asked for, else the card's default (0 when it has none)."""
        return int(self.card.get("inference", {}).get("iterations", 0)) if asked is None else asked

    def setup_correction(self, asked: bool | None) -> bool:
        """Whether a rigid bone match corrects the patient's set-up before the network: as asked, else the card's
        choice (off when it has none)."""
        return bool(self.card.get("inference", {}).get("setup_correction", False)) if asked is None else asked

    def guided_organs(self, asked: Sequence[str] | None) -> list[str]:
        """Organs whose contours instance optimisation pulls towards the model's own segmentation: those
        asked for, else the card's default (none when it has none)."""
        names = list(self.card.get("inference", {}).get("guided_organs", []) if asked is None else asked)
        unknown = [name for name in names if name not in self.card.get("organs", [])]
        if unknown:
            raise InputError("--guide-organs", f"unknown organ {', '.join(unknown)} (model '{self.model_id}' knows "
                                               f"{', '.join(self.card.get('organs', []))})")
        return names

    def segmentation_weights(self, asked: Mapping[str, float] | None) -> dict[str, float]:
        """Per organ, the weight of the model's own segmentation against the warped planning contour in the
        contour it returns (0: the warped contour alone): those asked for, else the card's (none when it has
        none)."""
        weights = dict(self.card.get("inference", {}).get("segmentation_weights", {}) if asked is None else asked)
        for name, weight in weights.items():
            if name not in self.card.get("organs", []):
                raise InputError("--segmentation-weight", f"unknown organ {name} (model '{self.model_id}' knows "
                                                          f"{', '.join(self.card.get('organs', []))})")
            if not 0 <= weight <= 1:
                raise InputError("--segmentation-weight", f"{name}: {weight} is not between 0 and 1")
        return {name: float(weight) for name, weight in weights.items() if weight > 0}

    def segmentation_border_fade_mm(self) -> float:
        """Distance (mm) over which the own segmentation's weight falls to 0 at the daily scan's border, where the
        network saw too little of the patient (a short scan ending at an organ); the card's, else 0 (none)."""
        return float(self.card.get("inference", {}).get("segmentation_border_fade_mm", 0.0))

    def segmentation_checks(self, disagreement_mm: Mapping[str, float], uncertain_band_mm: Mapping[str, float]
                            ) -> list[SegmentationCheck]:
        """The two checks an organ's own segmentation must pass to be weighed in, with the card's limits (none
        when it has none): its distance from the warped contour, and the width of its unsure band."""
        limits = self.card.get("inference", {})
        return [SegmentationCheck("from the warped contour", dict(disagreement_mm),
                                  float(limits.get("segmentation_disagreement_mm", float("inf")))),
                SegmentationCheck("unsure band", dict(uncertain_band_mm),
                                  float(limits.get("segmentation_uncertain_band_mm", float("inf"))))]

    @classmethod
    def from_weights(cls, weights: Mapping[str, torch.Tensor], card: dict, device: torch.device) -> LoadedModel:
        network = JointNetwork(card["configuration"], int(card["spatial_dims"]), len(card.get("organs", [])),
                               label_inputs=card["task"] == "contour" and bool(card.get("organs")),
                               diffeomorphic=bool(card.get("diffeomorphic")),
                               filters=tuple(card.get("filters", FILTERS)))
        network.load_state_dict(dict(weights))
        return cls(card.get("id", "unregistered"), card, network.to(device).eval(), device)


def load_model(task: str, model_id: str | None = None, device: str = "auto") -> LoadedModel:
    """A registered model for ``task`` (``contour`` or ``register``), its files checked against their SHA-256."""
    return LoadedModel.registered(model_id, device, task)


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None].to(device)


@torch.no_grad()
def predict(model: LoadedModel, pair: PairArrays, window: int | None = None) -> dict[str, np.ndarray]:
    """The finest-scale field (voxels, tensor order) and organ probabilities on the pair's model grid."""
    dims = model.dimension
    channels = [pair.fixed[None], pair.moving[None]]
    if model.network.label_inputs:
        channels.append(pair.moving_organs)
    inputs = _tensor(np.concatenate(channels), model.device)

    def network(batch: torch.Tensor) -> torch.Tensor:
        labels = batch[:, 2:] if model.network.label_inputs else None
        output = model.network(batch[:, :1], batch[:, 1:2], labels)
        parts = ([output["ddf"][-1]] if "ddf" in output else []) + (
            [torch.softmax(output["seg"][-1], dim=1)] if "seg" in output else [])
        return torch.cat(parts, dim=1).float()

    with autocast(model.device):
        if window is None:
            stacked = network(inputs)
        else:
            size = [max(SIZE_MULTIPLE, window // SIZE_MULTIPLE * SIZE_MULTIPLE)] * dims
            stacked = sliding_window_inference(inputs, size, 1, network, overlap=0.5, mode="gaussian")
    stacked = stacked[0].cpu().numpy()
    result = {}
    if model.network.predicts_field:
        result["ddf"], stacked = stacked[:dims], stacked[dims:]
    if model.network.predicts_segmentation:
        result["probabilities"] = stacked
    return result


def refine(ddf: np.ndarray, pair: PairArrays, device: torch.device, photometric: str, iterations: int,
           probabilities: np.ndarray | None = None, guided: Sequence[int] = ()) -> np.ndarray:
    """Instance optimisation of the field on this pair (see :mod:`instance`); the contours of the ``guided``
    organs (indices) are pulled towards the model's own ``probabilities`` on the fixed image (background first)."""
    guide = None
    contoured = [index for index in guided if pair.moving_organs[index].any()]
    if probabilities is not None and contoured:
        guide = SegmentationGuide(_tensor(pair.moving_organs[contoured], device),
                                  _tensor(probabilities[1:][contoured], device))
    with torch.enable_grad():
        field = refine_field(torch.from_numpy(ddf)[None].to(device), _tensor(pair.fixed[None], device),
                             _tensor(pair.moving[None], device), photometric, iterations, guide=guide)
    return field[0].cpu().numpy()


@dataclass
class SegmentationCheck:
    """One per-organ measure of the model's own segmentation (mm) and the most it may be for the organ to be
    weighed into the contours."""

    what: str
    values_mm: dict[str, float]
    limit_mm: float

    def failing(self, organ: str) -> bool:
        return self.values_mm[organ] > self.limit_mm


@dataclass
class RegistrationResult:
    field: sitk.Image  # ITK convention on the fixed grid
    warped: sitk.Image  # moving image on the fixed grid


@dataclass
class ContourResult:
    contours: LabelMap  # planning segments on the daily grid
    field: sitk.Image | None
    warped: sitk.Image | None
    segmentation: LabelMap | None  # the network's own segmentation of the daily CT
    guided_organs: list[str]  # organs that instance optimisation pulled towards that segmentation
    segmentation_weights: dict[str, float]  # organs whose contours weigh in that segmentation, and by how much
    # organs asked to weigh in the segmentation: its mean surface distance (mm) from their warped contour, and
    # the width (mm) of the band around the organ where the network is unsure (probability 0.2–0.8)
    segmentation_disagreement_mm: dict[str, float]
    segmentation_uncertain_band_mm: dict[str, float]
    setup: SetupCorrection | None = None  # the rigid set-up correction found first, when one was asked for
    # organs weighed in whose warped contour reaches where the daily scan ends (the segmentation counts less there)
    near_scan_border: list[str] = dataclasses.field(default_factory=list)

    def inference_summary(self) -> dict:
        """How the contours were made, for JSON: guided organs, segmentation weights, the set-up correction (None
        when none ran), both measures of the own segmentation (0.01 mm; None where the model found no organ) and
        the organs near the daily scan's border."""
        checks = {name: {organ: round(value, 2) if np.isfinite(value) else None for organ, value in values.items()}
                  for name, values in (("segmentation_disagreement_mm", self.segmentation_disagreement_mm),
                                       ("segmentation_uncertain_band_mm", self.segmentation_uncertain_band_mm))}
        return {"guided_organs": self.guided_organs, "segmentation_weights": self.segmentation_weights,
                "setup_correction": self.setup.summary() if self.setup else None, **checks,
                "near_scan_border": self.near_scan_border}


def _require_dimension(model: LoadedModel, image: sitk.Image, name: str) -> None:
    if image.GetDimension() != model.dimension:
        raise InputError(name, f"is a {image.GetDimension()}D image but model '{model.model_id}' registers "
                               f"{model.dimension}D images")


def _final_field(model: LoadedModel, ddf: np.ndarray, pair: PairArrays, fixed: sitk.Image, iterations: int | None,
                 progress: StageProgress, at: float, probabilities: np.ndarray | None = None,
                 guided: Sequence[str] = ()) -> sitk.Image:
    """The network's field, refined on this pair when asked (or by the card), the ``guided`` organs pulled towards
    the model's own segmentation ``probabilities``, on the fixed grid (ITK)."""
    iterations = model.iterations(iterations)
    if iterations:
        note = f", guided by the model's segmentation for {', '.join(guided)}" if guided else ""
        progress(at, f"instance optimisation ({iterations} steps a level{note})")
        indices = [model.card["organs"].index(name) for name in guided]
        ddf = refine(ddf, pair, model.device, model.card.get("photometric", "ncc"), iterations, probabilities, indices)
    return geometry.field_on_fixed_grid(pair.grid.field_to_mm(ddf), fixed)


def register_images(model: LoadedModel, fixed: sitk.Image, moving: sitk.Image, iterations: int | None = None,
                    window: int | None = None, progress: StageProgress | None = None) -> RegistrationResult:
    """Deformably register ``moving`` to ``fixed`` (2D or 3D, as the model)."""
    progress = progress or (lambda *args, **kwargs: None)
    _require_dimension(model, fixed, "--fixed")
    _require_dimension(model, moving, "--moving")
    volume.require_overlap("--fixed", fixed, "--moving", moving)
    if model.card["intensity"]["kind"] == "hu-window":
        require_ct(fixed, "--fixed")
        require_ct(moving, "--moving")
    progress(0.1, "resampling onto the model grid")
    pair = pair_on_grid(fixed, moving, model.card["spacing"], model.card["intensity"])
    progress(0.3, "predicting the displacement field")
    field = _final_field(model, predict(model, pair, window)["ddf"], pair, fixed, iterations, progress, 0.5)
    return _warped_result(fixed, moving, field, progress)


def register_by_optimisation(fixed: sitk.Image, moving: sitk.Image, iterations: int | None = None,
                             device: str = "auto", progress: StageProgress | None = None) -> RegistrationResult:
    """Deformably register ``moving`` to ``fixed`` (2D or 3D, any modality) with no network: instance
    optimisation from zero displacement (affine, then dense; local NCC + edge-aware smoothness)."""
    progress = progress or (lambda *args, **kwargs: None)
    if moving.GetDimension() != fixed.GetDimension():
        raise InputError("--moving", f"is {moving.GetDimension()}D but --fixed is {fixed.GetDimension()}D")
    volume.require_overlap("--fixed", fixed, "--moving", moving)
    floor = OPTIMISATION_MIN_SPACING_MM[fixed.GetDimension()]
    progress(0.1, "resampling onto the fixed image's grid")
    pair = pair_on_grid(fixed, moving, [max(s, floor) for s in fixed.GetSpacing()],
                        {"kind": "percentile", "percentiles": list(PERCENTILE_RANGE)})
    steps = iterations or OPTIMISATION_STEPS
    progress(0.3, f"instance optimisation from zero displacement ({steps} steps a level)")
    ddf = refine(np.zeros((fixed.GetDimension(), *pair.grid.shape), np.float32), pair, resolve_device(device),
                 "ncc", steps)
    field = geometry.field_on_fixed_grid(pair.grid.field_to_mm(ddf), fixed)
    return _warped_result(fixed, moving, field, progress)


def _warped_result(fixed: sitk.Image, moving: sitk.Image, field: sitk.Image, progress: StageProgress
                   ) -> RegistrationResult:
    progress(0.8, "warping")
    default = float(np.percentile(volume.array_of(moving), 0.5))
    return RegistrationResult(field, geometry.warp_image(moving, fixed, field, default))


GUIDANCE_OPTIONS = "--guided/--guide-organs"  # either option asks for guidance; errors name both


def _require_joint(model: LoadedModel, option: str) -> None:
    """``option`` needs both a field and a segmentation from the model."""
    if not (model.network.predicts_field and model.network.predicts_segmentation):
        raise InputError(option, f"model '{model.model_id}' is not a joint registration + segmentation model")


def propagate_contours(model: LoadedModel, fixed: sitk.Image, moving: sitk.Image, moving_labels: LabelMap,
                       organ_map: Mapping[str, str] | None = None, iterations: int | None = None, window: int | None = None,
                       warp_ct: bool = False, guide_organs: Sequence[str] | None = None,
                       segmentation_weights: Mapping[str, float] | None = None, setup_correction: bool | None = None,
                       progress: StageProgress | None = None) -> ContourResult:
    """Today's contours: the planning contours warped onto the daily CT by the predicted field. Its instance
    optimisation pulls the ``guide_organs`` (default: the card's) towards the joint model's own segmentation,
    and each organ in ``segmentation_weights`` (default: the card's) is that weighted mix of the warped contour
    and the joint model's own segmentation (see :func:`fuse_with_segmentation`), without the pieces that lie
    far from the warped contour (see :func:`near_expected_organs`), unless that segmentation is further from the
    warped contour than the card allows (see :func:`trusted_weights`). With ``setup_correction`` (default: the
    card's), a rigid match on bone first brings the daily CT into the planning CT's frame (see :mod:`setup`)."""
    progress = progress or (lambda *args, **kwargs: None)
    for name, image in (("--fixed", fixed), ("--moving", moving), ("--moving-labels", moving_labels.image)):
        _require_dimension(model, image, name)
    require_ct(fixed, "--fixed")
    require_ct(moving, "--moving")
    volume.require_overlap("--fixed", fixed, "--moving", moving)
    volume.require_overlap("--moving", moving, "--moving-labels", moving_labels.image)
    for segment in moving_labels.segments:
        if segment.value not in moving_labels.present_values():
            raise InputError("--moving-labels", f"segment '{segment.name}' is empty")
    guided = model.guided_organs(guide_organs)
    if guide_organs:
        _require_joint(model, GUIDANCE_OPTIONS)
    if guide_organs and not model.iterations(iterations):
        raise InputError(GUIDANCE_OPTIONS, "guides instance optimisation: give --iterations above 0")
    weights = model.segmentation_weights(segmentation_weights)
    if weights:
        _require_joint(model, "--segmentation-weight")
    matched = match_organs(moving_labels, model.card["organs"], organ_map)
    if not model.setup_correction(setup_correction):
        return _propagate(model, fixed, moving, moving_labels, matched, organ_map, iterations, window, warp_ct, guided,
                          weights, progress)
    progress(0.02, "matching the planning CT's bone to the daily CT's (set-up correction)")
    setup = estimate_setup(fixed, moving)
    progress(0.04, f"set-up correction: {setup.describe()}")
    result = _propagate(model, setup.moved(fixed), moving, moving_labels, matched, organ_map, iterations, window,
                        warp_ct, guided, weights, progress)
    return _back_on_daily(result, setup, fixed)


def _back_on_daily(result: ContourResult, setup: SetupCorrection, daily: sitk.Image) -> ContourResult:
    """A result made on the daily CT moved into the planning frame, on the daily CT's own grid."""
    def labels(label_map: LabelMap | None) -> LabelMap | None:
        return None if label_map is None else LabelMap(setup.back_on(label_map.image, daily), label_map.segments)

    return dataclasses.replace(
        result, contours=labels(result.contours), segmentation=labels(result.segmentation),
        warped=None if result.warped is None else setup.back_on(result.warped, daily),
        field=None if result.field is None else setup.field_on(result.field, daily), setup=setup)


def _propagate(model: LoadedModel, fixed: sitk.Image, moving: sitk.Image, moving_labels: LabelMap,
               matched: Mapping[str, int], organ_map: Mapping[str, str] | None, iterations: int | None,
               window: int | None, warp_ct: bool, guided: list[str], weights: dict[str, float],
               progress: StageProgress) -> ContourResult:
    """:func:`propagate_contours` once its inputs are checked, on the fixed image's grid as it is given."""
    organs = model.card["organs"]
    progress(0.05, "resampling onto the model grid")
    pair = pair_on_grid(fixed, moving, model.card["spacing"], model.card["intensity"], organs, moving_labels,
                        organ_map=organ_map)
    progress(0.25, "predicting")
    output = predict(model, pair, window)
    segmentation = probabilities = None
    if "probabilities" in output:
        probabilities = _on_fixed_grid(output["probabilities"], pair, fixed)
        segmentation = _segmentation(probabilities, fixed, organs, moving_labels, matched)
    if "ddf" not in output:
        progress(0.9, "segmentation-only model: the contours are its segmentation")
        planning_on_daily = LabelMap(volume.resample(moving_labels.image, fixed, is_label=True), moving_labels.segments)
        segmentation = near_expected_organs(segmentation, planning_on_daily)
        return ContourResult(segmentation, None, None, segmentation, [], {}, {}, {})
    if "probabilities" not in output or not model.iterations(iterations):
        guided = []
    field = _final_field(model, output["ddf"], pair, fixed, iterations, progress, 0.4, output.get("probabilities"),
                         guided)
    progress(0.75, "warping the planning contours")
    values = [segment.value for segment in moving_labels.segments]
    masks = geometry.warp_label_masks(moving_labels.image, values, fixed, field)
    segments = list(moving_labels.segments)
    contours = warped_contours = LabelMap(geometry.labels_from_masks(masks, values, fixed), segments)
    if segmentation is not None:
        segmentation = near_expected_organs(segmentation, warped_contours)
    weights = {organ: weight for organ, weight in weights.items() if organ in matched}
    disagreement = {organ: disagreement_mm(segmentation, warped_contours, matched[organ]) for organ in weights}
    band = {organ: uncertain_band_mm(output["probabilities"][1 + organs.index(organ)], model.card["spacing"])
            for organ in weights}
    weights = trusted_weights(weights, model.segmentation_checks(disagreement, band), progress)
    near_border = []
    if weights:
        progress(0.85, "weighing in the model's own segmentation for " + ", ".join(weights))
        trust, near_border = scan_border_trust(weights, masks, values, matched, fixed,
                                               model.segmentation_border_fade_mm(), progress)
        fused = fuse_with_segmentation(masks, values, probabilities, organs, matched, weights, trust)
        contours = near_expected_organs(LabelMap(geometry.labels_from_masks(fused, values, fixed), segments),
                                        warped_contours)
    warped = geometry.warp_image(moving, fixed, field, -1024.0) if warp_ct else None
    return ContourResult(contours, field, warped, segmentation, guided, weights, disagreement, band,
                         near_scan_border=near_border)


def disagreement_mm(segmentation: LabelMap, warped_contours: LabelMap, value: int) -> float:
    """Mean surface distance (mm) between the segment ``value`` of the network's own segmentation and of the
    warped planning contours, measured in the box around both (inf when either is empty)."""
    own = volume.array_of(segmentation.image, np.uint16) == value
    warped = volume.array_of(warped_contours.image, np.uint16) == value
    if not own.any() or not warped.any():
        return float("inf")
    box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in ndimage.find_objects((own | warped).astype(np.uint8))[0])
    return surface_distances(own[box], warped[box], segmentation.image.GetSpacing()[::-1])["msd_mm"]


def uncertain_band_mm(probability: np.ndarray, spacing_mm: float | Sequence[float]) -> float:
    """How wide (mm) the band is where the network is unsure of an organ (probability 0.2–0.8): its voxels per
    voxel of the organ's boundary (probability above one half), times the voxel size; inf when there is no organ.
    About one voxel or less for an organ the network knows, whatever its size."""
    inside = probability > 0.5
    boundary = inside & ~ndimage.binary_erosion(inside)
    if not boundary.any():
        return float("inf")
    voxel_mm = float(np.prod(np.broadcast_to(spacing_mm, (probability.ndim,)))) ** (1 / probability.ndim)
    return float(((probability > 0.2) & (probability < 0.8)).sum() / boundary.sum() * voxel_mm)


def trusted_weights(weights: Mapping[str, float], checks: Sequence[SegmentationCheck],
                    progress: StageProgress) -> dict[str, float]:
    """The weights of the organs whose own segmentation passes every check. The others keep the warped contour
    alone, and the progress stream says so: an organ that looks unlike anything in training (a bladder filled
    with contrast, say) is segmented wrongly, and unsurely, while registration still follows it."""
    failed = {organ: [check for check in checks if check.failing(organ)] for organ in weights}
    distrusted = [organ for organ, failures in failed.items() if failures]
    if distrusted:
        progress(0.8, "set aside the model's own segmentation for " + "; ".join(
            f"{organ} (" + ", ".join(f"{check.what} {check.values_mm[organ]:.1f} mm, over {check.limit_mm:g}"
                                     for check in failed[organ]) + ")" for organ in distrusted)
            + ": kept the warped contour there")
    return {organ: weight for organ, weight in weights.items() if organ not in distrusted}


def near_expected_organs(segmentation: LabelMap, expected: LabelMap,
                         margin_mm: float = EXPECTED_ORGAN_MARGIN_MM) -> LabelMap:
    """The segmentation without the connected pieces of an organ that lie more than ``margin_mm`` from where that
    organ is expected (the propagated contour, or the planning contour for a model with no field); when no piece is
    that close, the closest one is kept. A network sees anatomy at the edge of a wide field of view that it never
    saw in training and may call it an organ there."""
    values = volume.array_of(segmentation.image, np.uint16)
    expected_values = volume.array_of(expected.image, np.uint16)
    spacing = segmentation.image.GetSpacing()[::-1]  # numpy (z, y, x) order
    for segment in segmentation.segments:
        target, organ = expected_values == segment.value, values == segment.value
        if segment not in expected.segments or not target.any() or not organ.any():
            continue
        box = ndimage.find_objects((target | organ).astype(np.uint8))[0]  # every distance needed lies inside
        distance = ndimage.distance_transform_edt(~target[box], sampling=spacing)
        pieces, count = ndimage.label(organ[box])
        labels = np.arange(1, count + 1)
        closest = np.asarray(ndimage.minimum(distance, pieces, labels))
        kept = labels[closest <= margin_mm] if (closest <= margin_mm).any() else labels[[closest.argmin()]]
        values[box][(pieces > 0) & ~np.isin(pieces, kept)] = 0
    return LabelMap(volume.image_like(values, segmentation.image), segmentation.segments)


def _on_fixed_grid(probabilities: np.ndarray, pair: PairArrays, fixed: sitk.Image) -> np.ndarray:
    """The network's probabilities (background first) resampled from the model grid onto the daily grid."""
    on_grid = [volume.image_like(p.astype(np.float32), pair.grid.reference) for p in probabilities]
    return np.stack([volume.array_of(volume.resample(p, fixed)) for p in on_grid])


def scan_border_trust(weights: Mapping[str, float], masks: np.ndarray, values: Sequence[int],
                      matched: Mapping[str, int], fixed: sitk.Image, fade_mm: float,
                      progress: StageProgress) -> tuple[np.ndarray | None, list[str]]:
    """How far the own segmentation is trusted on the daily grid: 1 inside, falling to 0 over ``fade_mm`` at the
    scan's border (None when ``fade_mm`` is 0), and the organs in ``weights`` whose warped contour reaches into
    that band (a short scan that ends at an organ), which the progress stream names."""
    if fade_mm <= 0:
        return None, []
    trust = volume.array_of(geometry.border_ramp(fixed, fade_mm))
    reaching = [organ for organ in weights if (masks[list(values).index(matched[organ])] > 0.5)[trust < 1].any()]
    if reaching:
        progress(0.85, f"the daily CT ends within {fade_mm:g} mm of the {', '.join(reaching)}: the model's own "
                       "segmentation counts less there")
    return trust, reaching


def fuse_with_segmentation(masks: np.ndarray, values: Sequence[int], probabilities: np.ndarray,
                           organs: Sequence[str], matched: Mapping[str, int], weights: Mapping[str, float],
                           trust: np.ndarray | None = None) -> np.ndarray:
    """The warped soft masks (one a planning value in ``values``) where, for each organ in ``weights`` with a
    planning segment (``matched``: organ → value), the organ's mask becomes ``(1 − w) · warped + w · probability``
    (channel ``1 + organs.index(organ)`` of ``probabilities``); with ``trust`` (a map on the daily grid), ``w``
    is the organ's weight times it."""
    fused = masks.copy()
    for organ, weight in weights.items():
        if organ in matched:
            index = list(values).index(matched[organ])
            weight = weight if trust is None else weight * trust
            fused[index] = (1 - weight) * masks[index] + weight * probabilities[1 + list(organs).index(organ)]
    return fused


def _segmentation(probabilities: np.ndarray, fixed: sitk.Image, organs: Sequence[str], moving_labels: LabelMap,
                  matched: Mapping[str, int]) -> LabelMap:
    """The network's organ segmentation on the daily grid, named and coloured like the planning segments."""
    planning = {segment.value: segment for segment in moving_labels.segments}
    defaults = {segment.name: segment for segment in PELVIS_SEGMENTS}
    segments, lookup = [], np.zeros(len(organs) + 1, np.uint16)
    for index, organ in enumerate(organs, start=1):
        source = planning.get(matched.get(organ)) or defaults.get(organ) or Segment(index, organ)
        segments.append(Segment(source.value, source.name, source.color, source.terminology))
        lookup[index] = source.value
    return LabelMap(volume.image_like(lookup[probabilities.argmax(0)], fixed), segments)
