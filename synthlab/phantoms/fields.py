"""Randomness shared by the phantoms: per-case seeds, smooth noise, bias fields, vessels, scanner noise and blur.

All fields are numpy float32 arrays indexed (z, y, x), like ``sitk.GetArrayFromImage``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def case_seed(seed: int, index: int) -> np.random.SeedSequence:
    """Seed of item ``index`` (case, patient) of a dataset made with ``seed``: the same whatever its size."""
    return np.random.SeedSequence(entropy=seed, spawn_key=(index,))


def smooth_noise(shape: Sequence[int], scale: float | Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian random field whose correlation length is about ``scale`` voxels (per axis).

    White noise on a coarse lattice (one node every ``scale`` voxels) is smoothed and interpolated up,
    which is much faster than filtering a full-size volume with a wide kernel.
    """
    scales = np.broadcast_to(np.asarray(scale, dtype=float), (len(shape),))
    coarse_shape = [max(2, int(np.ceil(n / s)) + 3) for n, s in zip(shape, scales, strict=True)]
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma=1.0, mode="wrap")
    field = ndimage.zoom(coarse, [n / c for n, c in zip(shape, coarse_shape, strict=True)], order=1, grid_mode=True,
                         mode="grid-wrap")
    field = field[tuple(slice(0, n) for n in shape)].astype(np.float32)
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def bias_field(shape: Sequence[int], scale: float | Sequence[float], strength: float,
               rng: np.random.Generator) -> np.ndarray:
    """Multiplicative receive-coil inhomogeneity: exp(strength · smooth noise), about ±strength."""
    return np.exp(strength * smooth_noise(shape, scale, rng))


def tubes(shape: Sequence[int], scale: float | Sequence[float], radius: float,
          rng: np.random.Generator) -> np.ndarray:
    """Branching tube-like structures (0–1): where two independent smooth fields are both near zero.

    The zero set of one smooth field is a sheet; two sheets meet along curves, which look like vessels.
    ``radius`` is the tube radius as a fraction of ``scale``.
    """
    first, second = smooth_noise(shape, scale, rng), smooth_noise(shape, scale, rng)
    return np.exp(-(first ** 2 + second ** 2) / (2 * radius ** 2)).astype(np.float32)


def blur(values: np.ndarray, sigma_voxels: float | Sequence[float]) -> np.ndarray:
    """Point-spread function of the scanner: a Gaussian blur (sigma in voxels, per axis)."""
    return ndimage.gaussian_filter(values, sigma=sigma_voxels, mode="nearest").astype(np.float32)


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude MRI noise: |signal + complex Gaussian noise of SD sigma per channel|."""
    real = signal + rng.normal(0.0, sigma, signal.shape).astype(np.float32)
    imaginary = rng.normal(0.0, sigma, signal.shape).astype(np.float32)
    return np.sqrt(real ** 2 + imaginary ** 2)


def soft_inside(level: np.ndarray, length_mm: float, spacing_mm: float) -> np.ndarray:
    """Partial-volume membership of ``level < 1`` for a level set that grows by 1 over ``length_mm``.

    The transition is one voxel wide, so boundaries are neither jagged nor blurred.
    """
    return np.clip(0.5 + (1.0 - level) * length_mm / spacing_mm, 0.0, 1.0).astype(np.float32)
