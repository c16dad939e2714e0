"""Glioma-like tumours for the brain phantom: irregular geometry, compartments and mass effect.

A tumour is a noisy level set around a centre (so its outline is lobulated, not spherical): an
enhancing/solid rim, a necrotic core inside it (in most tumours), and vasogenic oedema around it that
spreads preferentially along white matter and stays out of CSF. The tumour pushes nearby tissue
outwards (mass effect): the healthy anatomy is sampled through a radial compression that is largest at
the tumour and fades over about 1.5 tumour radii.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from synthlab.phantoms.fields import smooth_noise, soft_inside

RADIUS_MM = (8.0, 24.0)  # equivalent radius of rim + core: about 2–58 ml
NECROSIS_PROBABILITY = 0.8
MASS_EFFECT_REACH = 1.5  # in tumour radii


@dataclass
class TumourSpec:
    centre_mm: tuple[float, float, float]
    radius_mm: float
    core_ratio: float  # core radius / tumour radius; 0 means a solid tumour without necrosis
    oedema_ratio: float  # oedema radius / tumour radius
    irregularity: float  # amplitude of the level-set noise
    push: float  # mass effect strength (0–1): peak compression of the radial coordinate

    def as_dict(self) -> dict:
        return {key: (list(value) if isinstance(value, tuple) else round(float(value), 3))
                for key, value in asdict(self).items()}


def draw_tumour(candidates_mm: np.ndarray, rng: np.random.Generator) -> TumourSpec:
    """Draw a tumour centred on one of the candidate points (N×3, mm) with random size and shape."""
    centre = candidates_mm[rng.integers(len(candidates_mm))]
    has_core = rng.random() < NECROSIS_PROBABILITY
    return TumourSpec(centre_mm=tuple(float(c) for c in centre), radius_mm=float(rng.uniform(*RADIUS_MM)),
                      core_ratio=float(rng.uniform(0.45, 0.75)) if has_core else 0.0,
                      oedema_ratio=float(rng.uniform(1.15, 1.7)), irregularity=float(rng.uniform(0.1, 0.35)),
                      push=float(rng.uniform(0.25, 0.6)))


def _radius_from_centre(points: np.ndarray, centre) -> tuple[np.ndarray, np.ndarray]:
    offset = points - np.asarray(centre, dtype=np.float32).reshape(3, 1, 1, 1)
    return offset, np.sqrt((offset ** 2).sum(axis=0))


def displaced_points(points: np.ndarray, spec: TumourSpec) -> np.ndarray:
    """Where each output point (3×z×y×x, mm) finds its tissue in the healthy brain, given the mass effect.

    The radial map r -> r·(1 − push·exp(−(r/(reach·R))²)) is monotonic for push < 1, so no tissue folds.
    """
    offset, radius = _radius_from_centre(points, spec.centre_mm)
    reach = MASS_EFFECT_REACH * spec.radius_mm
    factor = 1.0 - spec.push * np.exp(-(radius / reach) ** 2)
    return points - offset * (1.0 - factor)


def compartments(points: np.ndarray, spec: TumourSpec, parenchyma: np.ndarray, wm: np.ndarray,
                 spacing_mm: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Rim and core fractions of each voxel, and the share of the remaining parenchyma that is oedematous.

    All are z×y×x arrays in 0–1 on the output grid. ``parenchyma`` (GM+WM, 0–1) confines the tumour
    to brain tissue; oedema also spreads further in white matter.
    """
    _, radius = _radius_from_centre(points, spec.centre_mm)
    shape = radius.shape
    scale = max(2.0, spec.radius_mm / 2 / spacing_mm)
    whole_level = radius / spec.radius_mm + spec.irregularity * smooth_noise(shape, scale, rng)
    whole = soft_inside(whole_level, spec.radius_mm, spacing_mm) * np.clip(parenchyma * 1.5, 0, 1)
    core = np.zeros_like(whole)
    if spec.core_ratio > 0:
        core_radius = spec.core_ratio * spec.radius_mm
        core_level = radius / core_radius + spec.irregularity * smooth_noise(shape, scale, rng)
        core = np.minimum(soft_inside(core_level, core_radius, spacing_mm), whole)
    oedema_radius = spec.oedema_ratio * spec.radius_mm
    oedema_level = (radius / oedema_radius + spec.irregularity * smooth_noise(shape, 2 * scale, rng)
                    - 0.2 * (wm - 0.5))
    oedema_share = soft_inside(oedema_level, oedema_radius, spacing_mm)
    return {"rim": whole - core, "core": core, "oedema_share": oedema_share}
