"""Stage-1 tumour shapes (METHODS.md §2): a sphere whose surface is pushed along its normals by 3D simplex noise.

For a sphere the normal is the radial direction, so the displaced surface is the
star-shaped boundary r(u) = R·(1 + a·n(f·u)) for unit directions u, with n the
simplex noise sampled on the sphere at frequency f. A voxel is inside when its
distance from the centre is below r of its direction, which rasterises the
displaced mesh exactly at voxel centres. A second, smaller noisy sphere inside
gives the core. Volumes are drawn in millilitres (20–80 ml, i.e. 20,000–80,000
voxels at 1 mm) so the model is the same at any spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from opensimplex import OpenSimplex
from scipy import ndimage

VOLUME_ML = (20.0, 80.0)
NOISE_AMPLITUDE = (0.15, 0.45)  # relative radius change
NOISE_FREQUENCY = (0.8, 2.0)  # noise features per unit of direction
CORE_RATIO = (0.3, 0.7)  # core radius / tumour radius
NOISE_SAMPLES = 24  # noise lattice per axis over the direction cube [-f, f]^3


@dataclass
class NoisySphere:
    centre: np.ndarray  # voxel coordinates (z, y, x)
    radius_mm: float
    amplitude: float
    frequency: float
    seed: int

    def inside(self, shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
        """Boolean mask of the displaced sphere on a (z, y, x) grid with ``spacing`` (mm, z y x order)."""
        spacing = np.asarray(spacing, dtype=float)
        reach = int(np.ceil(self.radius_mm * (1 + self.amplitude) / spacing.min())) + 1
        low = np.maximum(np.floor(self.centre).astype(int) - reach, 0)
        high = np.minimum(np.floor(self.centre).astype(int) + reach + 1, shape)
        mask = np.zeros(shape, dtype=bool)
        if np.any(high <= low):
            return mask
        axes = [(np.arange(lo, hi) - c) * s for lo, hi, c, s in zip(low, high, self.centre, spacing, strict=True)]
        offsets = np.stack(np.meshgrid(*axes, indexing="ij"))
        distance = np.sqrt((offsets ** 2).sum(0))
        direction = offsets / np.maximum(distance, 1e-6)
        boundary = self.radius_mm * (1 + self.amplitude * self._noise_on_sphere(direction))
        mask[tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))] = distance <= boundary
        return mask

    def _noise_on_sphere(self, direction: np.ndarray) -> np.ndarray:
        """Simplex noise at ``frequency``·u, trilinearly read from a lattice over [-f, f]^3 (values about ±1)."""
        lattice = np.linspace(-self.frequency, self.frequency, NOISE_SAMPLES)
        noise = OpenSimplex(self.seed).noise3array(lattice, lattice, lattice)
        scale = (NOISE_SAMPLES - 1) / (2 * self.frequency)
        coordinates = (direction * self.frequency + self.frequency) * scale
        values = ndimage.map_coordinates(noise, coordinates.reshape(3, -1), order=1, mode="nearest")
        return (values / max(np.abs(noise).max(), 1e-6)).reshape(direction.shape[1:])


@dataclass
class TumourShape:
    whole: np.ndarray  # boolean (z, y, x)
    core: np.ndarray  # boolean, inside ``whole``; empty for a one-region tumour


def draw_tumour_shape(brain: np.ndarray, spacing: Sequence[float], rng: np.random.Generator,
                      with_core: bool) -> TumourShape:
    """A noisy-sphere tumour (and core) centred in ``brain`` (boolean z y x), clipped to the brain."""
    spacing = np.asarray(spacing, dtype=float)
    volume_ml = rng.uniform(*VOLUME_ML)
    radius = (3 * volume_ml * 1000 / (4 * np.pi)) ** (1 / 3)
    depth = ndimage.distance_transform_edt(brain, sampling=spacing)
    candidates = np.argwhere(depth >= min(radius * 0.6, depth.max() * 0.8))
    centre = candidates[rng.integers(len(candidates))] + rng.uniform(-0.5, 0.5, 3)

    def sphere(radius_mm: float, centre_voxel: np.ndarray) -> NoisySphere:
        return NoisySphere(centre_voxel, radius_mm, rng.uniform(*NOISE_AMPLITUDE), rng.uniform(*NOISE_FREQUENCY),
                           int(rng.integers(2**31)))

    whole = sphere(radius, centre).inside(brain.shape, spacing) & brain
    core = np.zeros_like(whole)
    if with_core:
        core_radius = radius * rng.uniform(*CORE_RATIO)
        offset = rng.normal(0, 0.15 * (radius - core_radius), 3) / spacing
        core = sphere(core_radius, centre + offset).inside(brain.shape, spacing) & whole
    return TumourShape(whole, core)
