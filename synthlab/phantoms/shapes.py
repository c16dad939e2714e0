"""Phantom geometry: grid coordinates, rotations, implicit shapes and a canvas that paints them.

A shape is a *level* function of patient-frame points (3, ...) in mm: about the signed distance to its
surface, negative inside. Painting blends a value into the voxels by their partial-volume membership,
so later shapes cover earlier ones the way organs displace fat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import SimpleITK as sitk

Level = Callable[[np.ndarray], np.ndarray]


def rotation_matrix(angles_deg: Sequence[float]) -> np.ndarray:
    """Rotation about x, then y, then z (degrees)."""
    matrix = np.eye(3)
    for axis, angle in enumerate(np.deg2rad(angles_deg)):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        rotation = np.eye(3)
        rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
        matrix = rotation @ matrix
    return matrix


def grid_points(grid: sitk.Image, low=None, high=None) -> np.ndarray:
    """Physical coordinates (3, z, y, x) in mm of an axis-aligned grid's voxels, index range [low, high)."""
    low = np.zeros(3, int) if low is None else low
    high = np.array(grid.GetSize()) if high is None else high
    axes = [np.float32(o) + np.float32(s) * np.arange(lo, hi, dtype=np.float32)
            for o, s, lo, hi in zip(grid.GetOrigin(), grid.GetSpacing(), low, high, strict=True)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return np.stack([x, y, z])


def _column(vector) -> np.ndarray:
    return np.asarray(vector, dtype=np.float32).reshape(3, *([1] * 3))


def ellipsoid(centre, semi_axes, rotation: np.ndarray | None = None) -> Level:
    """Ellipsoid (semi-axes in mm along the rotated x, y, z); level ≈ distance for near-spherical ones."""
    semi = np.asarray(semi_axes, dtype=np.float32)
    inverse = np.eye(3) if rotation is None else np.asarray(rotation).T

    def level(points):
        local = np.einsum("ij,j...->i...", inverse.astype(np.float32), points - _column(centre))
        radius = np.sqrt(((local / _column(semi)) ** 2).sum(axis=0))
        return (radius - 1.0) * semi.min()

    return level


def tube(points_mm, radii_mm) -> Level:
    """A tube along a polyline whose radius varies linearly between its control points."""
    nodes = np.asarray(points_mm, dtype=np.float32)
    radii = np.asarray(radii_mm, dtype=np.float32)

    def level(points):
        best = None
        for start, end, r0, r1 in zip(nodes[:-1], nodes[1:], radii[:-1], radii[1:], strict=True):
            axis = end - start
            t = np.clip(np.einsum("i,i...->...", axis, points - _column(start)) / float(axis @ axis), 0, 1)
            closest = _column(start) + t[None] * _column(axis)
            distance = np.sqrt(((points - closest) ** 2).sum(axis=0)) - (r0 + (r1 - r0) * t)
            best = distance if best is None else np.minimum(best, distance)
        return best

    return level


def superellipse_cylinder(centre_xy, half_width: float, half_depth: float, exponent: float) -> Level:
    """An infinite cylinder along z with a rounded-box (superellipse) cross-section: a body outline."""

    def level(points):
        x = np.abs(points[0] - centre_xy[0]) / half_width
        y = np.abs(points[1] - centre_xy[1]) / half_depth
        return ((x ** exponent + y ** exponent) ** (1 / exponent) - 1.0) * min(half_width, half_depth)

    return level


def bounding_box(centre, extent) -> tuple[np.ndarray, np.ndarray]:
    centre, extent = np.asarray(centre, float), np.broadcast_to(np.asarray(extent, float), (3,))
    return centre - extent, centre + extent


def polyline_box(points_mm, radii_mm) -> tuple[np.ndarray, np.ndarray]:
    nodes, margin = np.asarray(points_mm, float), float(np.max(radii_mm))
    return nodes.min(axis=0) - margin, nodes.max(axis=0) + margin


class Canvas:
    """A CT being painted: HU and labels on a room-frame grid; shapes are given in the patient frame.

    ``setup`` maps patient to room coordinates (x_room = R·x_patient + t): the couch set-up of one scan.
    """

    def __init__(self, grid: sitk.Image, rotation: np.ndarray, translation, background_hu: float):
        self.grid = grid
        self.rotation, self.translation = np.asarray(rotation, float), np.asarray(translation, float)
        self.hu = np.full(grid.GetSize()[::-1], background_hu, np.float32)
        self.labels = np.zeros(grid.GetSize()[::-1], np.uint8)
        self.voxel_mm = float(min(grid.GetSpacing()))

    def region(self, box: tuple[np.ndarray, np.ndarray] | None) -> tuple[tuple[slice, ...], np.ndarray]:
        """Index slices covering a patient-frame box (None: everything) and the patient points inside them."""
        size = np.array(self.grid.GetSize())
        if box is None:
            low, high = np.zeros(3, int), size
        else:
            corners = np.array([[box[i][0], box[j][1], box[k][2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
            room = corners @ self.rotation.T + self.translation
            indices = np.array([self.grid.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in room])
            low = np.clip(np.floor(indices.min(axis=0)).astype(int) - 2, 0, size)
            high = np.clip(np.ceil(indices.max(axis=0)).astype(int) + 3, 0, size)
        slices = tuple(slice(lo, hi) for lo, hi in zip(low[::-1], high[::-1], strict=True))
        room = grid_points(self.grid, low, high) - _column(self.translation)
        return slices, np.einsum("ji,j...->i...", self.rotation.astype(np.float32), room)

    def paint(self, level: Level, value: float | Callable[[np.ndarray, np.ndarray], np.ndarray],
              box=None, label: int | None = None) -> None:
        """Blend ``value`` (HU, or a function of (level, points)) into the shape; set ``label`` where ≥ half."""
        slices, points = self.region(box)
        if points.size == 0:
            return
        distance = level(points)
        self._blend(slices, distance, value(distance, points) if callable(value) else value, label)

    def paint_union(self, shapes: Sequence[tuple[Level, tuple]], value: Callable[[np.ndarray], np.ndarray],
                    label: int | None = None) -> None:
        """Paint the union of (level, box) shapes as one object, ``value`` a function of the union's level.

        One bone made of several primitives gets one cortex, not a shell around every primitive.
        """
        union_box = (np.min([box[0] for _, box in shapes], axis=0), np.max([box[1] for _, box in shapes], axis=0))
        union_slices, _ = self.region(union_box)
        distance = np.full([s.stop - s.start for s in union_slices], np.inf, np.float32)
        for level, box in shapes:
            slices, points = self.region(box)
            local = tuple(slice(s.start - u.start, s.stop - u.start) for s, u in zip(slices, union_slices, strict=True))
            if points.size:
                distance[local] = np.minimum(distance[local], level(points))
        self._blend(union_slices, distance, value(distance), label)

    def _blend(self, slices, distance: np.ndarray, values, label: int | None) -> None:
        membership = np.clip(0.5 - distance / self.voxel_mm, 0.0, 1.0)
        self.hu[slices] += membership * (values - self.hu[slices])
        if label is not None:
            self.labels[slices][membership >= 0.5] = label
