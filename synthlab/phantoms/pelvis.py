"""Pelvis phantom: planning and daily CTs of a male pelvis, with prostate, seminal vesicles, rectum, bladder.

No pelvic CT ships offline, so the anatomy is built from implicit shapes (:mod:`synthlab.phantoms.shapes`)
with sizes and positions drawn per patient, and imaged like a CT.

Hounsfield units (tissue means, drawn per patient within these ranges; ICRU 46 / typical CT
measurements): air −1000, fat −120 to −80, muscle 35 to 55, prostate 30 to 50, seminal vesicles 20 to
40, bladder wall 30 to 45, urine 0 to 15, rectal wall 35 to 50, faeces −80 to 40 with gas bubbles,
rectal gas −1000 (gas rises anteriorly in a supine patient, with an air–fluid level), cancellous bone
150 to 400, cortical bone 900 to 1500. Scanner: PSF blur (0.5–0.8 voxel in-plane), correlated noise of
SD 8–20 HU, 1.0–1.5 mm pixels and 2, 2.5 or 3 mm slices (``small``: 1.5 mm and 3 mm, cropped to
the organs).

Anatomy (patient frame, LPS mm, prostate centre at the origin at planning): prostate 22–55 ml (an
irregular ellipsoid narrowing towards the apex); paired seminal vesicles, tubes from the prostate
base running posterior-superior-lateral; bladder 100–500 ml above the prostate with a 2–6 mm wall;
rectum behind the prostate along the sacral curve, lumen radius 11–22 mm; pubic symphysis and rami,
femoral heads, necks and shafts, acetabula, ischial tuberosities, iliac wings, sacrum and coccyx;
subcutaneous fat 12–40 mm, muscle, intrapelvic fat; a CT couch.

Between scans: couch set-up error (SD 3.5 mm and 1° per axis); bladder volume spanning 1.6–3× across a
patient's scans; rectal lumen radius ±4–6 mm and gas; the prostate pushed by the rectum (anterior wall
displacement × 0.5–0.8) and bladder, tilted about the left–right axis, with 1–1.5 mm random motion;
the seminal vesicles follow and move further (their tips up to about twice the prostate's motion).
Bones are rigid: they move only with the set-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from synthlab import datalist, volume
from synthlab.figures import Row, montage
from synthlab.labels import PELVIS_SEGMENTS, LabelMap, write_labels
from synthlab.phantoms.fields import blur, case_seed, smooth_noise
from synthlab.phantoms.shapes import (
    Canvas,
    bounding_box,
    ellipsoid,
    polyline_box,
    rotation_matrix,
    superellipse_cylinder,
    tube,
)
from synthlab.progress import StageProgress
from synthlab.volume import atomic_output

PROSTATE, SEMINAL_VESICLES, RECTUM, BLADDER = (segment.value for segment in PELVIS_SEGMENTS)
HU_RANGES = {"fat": (-120, -80), "muscle": (35, 55), "prostate": (30, 50), "seminal_vesicles": (20, 40),
             "bladder_wall": (30, 45), "urine": (0, 15), "rectal_wall": (35, 50), "faeces": (-80, 40),
             "cancellous": (150, 400), "cortical": (900, 1500)}
GAS_HU = -1000.0
SIZES = ("small", "full")
SOFT_TISSUE_WINDOW = (-160.0, 240.0)  # HU: window 400, level 40


@dataclass
class Patient:
    """What stays fixed for a patient: body, bones, tissue HU and the organs' reference shapes."""

    hu: dict[str, float]
    body: dict
    bones: dict
    prostate: dict
    seminal_vesicles: list[np.ndarray]  # per side: control points in the prostate frame
    rectum_wall_y: float  # posterior rectal wall behind the prostate (fixed against the sacrum)
    rectum_radius: float  # at planning


@dataclass
class Scan:
    """One CT's state: couch set-up and organ filling and motion (index 0 is the planning CT)."""

    setup_rotation_deg: np.ndarray
    setup_translation: np.ndarray
    bladder_ml: float
    rectum_radius: float
    rectal_gas: float  # share of the lumen filled with gas (0–0.6)
    prostate_shift: np.ndarray
    prostate_tilt_deg: float
    vesicle_tip_shift: list[np.ndarray]

    def as_dict(self) -> dict:
        return {key: (np.round(value, 2).tolist() if isinstance(value, np.ndarray) else
                      [np.round(v, 2).tolist() for v in value] if isinstance(value, list) else round(value, 3))
                for key, value in vars(self).items()}


def draw_patient(rng: np.random.Generator) -> Patient:
    hu = {name: float(rng.uniform(*bounds)) for name, bounds in HU_RANGES.items()}
    volume_ml = rng.uniform(22, 55)
    ratios = np.array([1.2, 0.85, 1.0]) * rng.uniform(0.9, 1.1, 3)
    scale = (3 * volume_ml * 1000 / (4 * np.pi * np.prod(ratios))) ** (1 / 3)
    semi = ratios * scale
    prostate = {"semi_axes": semi, "taper": rng.uniform(0.05, 0.2), "irregularity": rng.normal(0, 0.04, 3)}
    seminal_vesicles = []
    for side in (-1, 1):
        base = [side * rng.uniform(4, 8), 0.5 * semi[1], 0.75 * semi[2]]
        middle = [side * rng.uniform(14, 20), semi[1] + rng.uniform(2, 6), semi[2] + rng.uniform(5, 10)]
        tip = [side * rng.uniform(25, 35), semi[1] + rng.uniform(6, 14), semi[2] + rng.uniform(14, 24)]
        seminal_vesicles.append(np.array([base, middle, tip]))
    rectum_radius = rng.uniform(13, 18)
    rectum_wall_y = semi[1] + rng.uniform(1, 3) + 2 * rectum_radius
    body = {"half_width": rng.uniform(150, 195), "half_depth": rng.uniform(100, 135),
            "centre_y": rng.uniform(10, 25), "exponent": rng.uniform(2.2, 3.0), "fat": rng.uniform(12, 40)}
    femoral = {"x": rng.uniform(82, 95), "y": rng.uniform(-12, 2), "z": rng.uniform(-5, 12),
               "radius": rng.uniform(22, 26)}
    bones = {"femoral_head": femoral, "symphysis_y": -(semi[1] + rng.uniform(18, 28)),
             "symphysis_z": rng.uniform(-12, 0), "cortex": rng.uniform(1.5, 3.0), "sacrum_y": rectum_wall_y + 6}
    return Patient(hu, body, bones, prostate, seminal_vesicles, rectum_wall_y, rectum_radius)


def _bladder_volumes(scans: int, rng: np.random.Generator) -> np.ndarray:
    """Bladder volumes (ml) whose largest is 1.6–3× the smallest across the scans."""
    smallest = rng.uniform(100, 180)
    largest = smallest * rng.uniform(1.6, 3.0)
    volumes = rng.uniform(smallest, largest, scans)
    if scans >= 2:
        low, high = rng.choice(scans, 2, replace=False)
        volumes[low], volumes[high] = smallest, largest
    return volumes


def draw_scans(patient: Patient, fractions: int, rng: np.random.Generator) -> list[Scan]:
    """The planning scan (index 0) and ``fractions`` daily scans, with organ motion relative to planning."""
    bladder = _bladder_volumes(fractions + 1, rng)
    push = rng.uniform(0.5, 0.8)  # share of the rectal wall displacement passed on to the prostate
    scans = []
    for index in range(fractions + 1):
        planning = index == 0
        radius_change = 0.0 if planning else rng.uniform(-4, 6)
        bladder_change = bladder[index] - bladder[0]
        noise = np.zeros(3) if planning else rng.normal(0, [1.0, 1.5, 1.5])
        shift = noise + np.array([0.0, -2 * push * radius_change + 0.008 * bladder_change,
                                  0.3 * radius_change - 0.008 * bladder_change])
        tips = [1.0 * shift + np.array([0.0, -0.6 * radius_change + 0.015 * bladder_change,
                                        -0.01 * bladder_change]) + (0 if planning else rng.normal(0, 2.0, 3))
                for _ in range(2)]
        scans.append(Scan(
            setup_rotation_deg=np.clip(rng.normal(0, 1.0, 3), -3, 3),
            setup_translation=np.clip(rng.normal(0, 3.5, 3), -10, 10),
            bladder_ml=float(bladder[index]), rectum_radius=patient.rectum_radius + radius_change,
            rectal_gas=float(rng.uniform(0, 0.6)), prostate_shift=shift,
            prostate_tilt_deg=0.0 if planning else float(rng.normal(0, 2.5) - 0.6 * radius_change),
            vesicle_tip_shift=tips))
    return scans


def scan_grid(patient: Patient, size: str, rng: np.random.Generator) -> sitk.Image:
    """The room-frame CT grid shared by a patient's scans (identity direction, LPS)."""
    if size == "small":
        spacing, low, high = (1.5, 1.5, 3.0), np.array([-90.0, -80, -50]), np.array([90.0, 90, 115])
    else:
        pixel = round(float(rng.uniform(1.0, 1.5)), 3)
        spacing = (pixel, pixel, float(rng.choice([2.0, 2.5, 3.0])))
        body = patient.body
        low = np.array([-body["half_width"] - 20, body["centre_y"] - body["half_depth"] - 20, -75.0])
        high = np.array([body["half_width"] + 20, body["centre_y"] + body["half_depth"] + 45, 115.0])
    size_voxels = np.ceil((high - low) / spacing).astype(int) + 1
    grid = sitk.Image(size_voxels.tolist(), sitk.sitkInt16)
    grid.SetSpacing(spacing)
    grid.SetOrigin(low.tolist())
    return grid


def _prostate_frame(scan: Scan) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation of the prostate frame in the patient frame (tilt about left–right)."""
    return rotation_matrix([scan.prostate_tilt_deg, 0, 0]), scan.prostate_shift


def _prostate_level(patient: Patient, scan: Scan):
    semi, taper = patient.prostate["semi_axes"], patient.prostate["taper"]
    irregular = patient.prostate["irregularity"]
    rotation, shift = _prostate_frame(scan)

    def level(points):
        local = np.einsum("ji,j...->i...", rotation.astype(np.float32),
                          points - shift.astype(np.float32).reshape(3, 1, 1, 1))
        u = local / semi.astype(np.float32).reshape(3, 1, 1, 1)
        narrowing = 1 + taper * np.clip(u[2], -1.5, 1.5)  # wider base (superior), narrower apex
        radius = np.sqrt((u[0] / narrowing) ** 2 + u[1] ** 2 + u[2] ** 2)
        bumps = irregular[0] * u[0] * u[1] + irregular[1] * u[1] * u[2] + irregular[2] * u[0] * u[2]
        return (radius - 1 - bumps) * semi.min()

    return level, bounding_box(shift, semi.max() * 1.5)


def _vesicles(patient: Patient, scan: Scan) -> list[np.ndarray]:
    """Control points of each seminal vesicle: the base follows the prostate, middle and tip move further."""
    rotation, shift = _prostate_frame(scan)
    placed = []
    for nodes, tip_shift in zip(patient.seminal_vesicles, scan.vesicle_tip_shift, strict=True):
        moved = nodes @ rotation.T + shift
        moved[1] += 0.5 * tip_shift
        moved[2] += tip_shift
        placed.append(moved)
    return placed


def _bladder(patient: Patient, scan: Scan) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre, semi-axes and wall thickness: the bladder sits on the prostate base and fills upwards."""
    rotation, shift = _prostate_frame(scan)
    semi_p = patient.prostate["semi_axes"]
    neck = rotation @ np.array([0.0, -0.2 * semi_p[1], 0.9 * semi_p[2]]) + shift
    ratios = np.array([1.25, 0.95, 1.0])
    k = (3 * scan.bladder_ml * 1000 / (4 * np.pi * np.prod(ratios))) ** (1 / 3)
    wall = float(np.clip(4.0 * (200 / scan.bladder_ml) ** (1 / 3), 2.0, 6.0))
    return neck + np.array([0.0, 0.05 * k, 0.92 * k]), ratios * k, wall


def _rectum_path(patient: Patient, scan: Scan) -> tuple[np.ndarray, np.ndarray]:
    """Centreline and outer radii: fixed posterior wall, lumen radius from the scan's filling."""
    wall_y, r = patient.rectum_wall_y, scan.rectum_radius
    points = np.array([[0, wall_y - 9, -48], [0, wall_y - 0.8 * r, -22], [0, wall_y - r, 0],
                       [0, wall_y + 12 - 1.1 * r, 35], [0, wall_y + 14 - 0.9 * r, 70]], dtype=float)
    radii = np.array([8.0, 0.8 * r, r, 1.1 * r, 0.9 * r])
    return points, radii


def _paint_body(canvas: Canvas, patient: Patient, texture_rng: np.random.Generator) -> None:
    body, hu = patient.body, patient.hu
    centre = (0.0, body["centre_y"])
    canvas.paint(superellipse_cylinder(centre, body["half_width"], body["half_depth"], body["exponent"]),
                 hu["fat"])
    canvas.paint(superellipse_cylinder(centre, body["half_width"] - body["fat"],
                                       body["half_depth"] - 0.8 * body["fat"], body["exponent"]), hu["muscle"])
    pelvis_fat = ellipsoid((0, patient.rectum_wall_y * 0.4, 25), (patient.bones["femoral_head"]["x"] - 30, 62, 110))
    canvas.paint(pelvis_fat, hu["fat"], box=bounding_box((0, patient.rectum_wall_y * 0.4, 25), (70, 70, 115)))
    couch_y = body["centre_y"] + body["half_depth"] + 2
    couch = (np.array([-250.0, couch_y, -500]), np.array([250.0, couch_y + 40, 500]))
    canvas.paint(lambda p: np.abs(p[1] - couch_y - 20) - 20, -850.0, box=couch)  # foam core
    canvas.paint(lambda p: np.abs(p[1] - couch_y - 1) - 1, 300.0, box=couch)  # carbon-fibre skin
    shape = canvas.hu.shape
    spacing = np.array(canvas.grid.GetSpacing()[::-1])
    soft_tissue = (canvas.hu > -300) & (canvas.hu < 150)
    canvas.hu += soft_tissue * 6.0 * smooth_noise(shape, 4.0 / spacing, texture_rng)


def _tube(nodes, radii) -> tuple:
    return tube(nodes, radii), polyline_box(nodes, radii)


def _ellipsoid(centre, semi_axes, rotation=None) -> tuple:
    return ellipsoid(centre, semi_axes, rotation), bounding_box(centre, np.max(semi_axes) + 1)


def _bone_shapes(patient: Patient) -> tuple[list, list]:
    """Primitives of the pelvic girdle (with sacrum and coccyx) and of both femurs."""
    bones, head = patient.bones, patient.bones["femoral_head"]
    symphysis_y, symphysis_z, sacrum_y = bones["symphysis_y"], bones["symphysis_z"], bones["sacrum_y"]
    girdle = [_tube([(0, sacrum_y + 2, -30), (0, sacrum_y + 10, 5), (0, sacrum_y + 28, 45), (0, sacrum_y + 40, 110)],
                    [5, 9, 18, 26])]
    femurs = []
    for side in (-1, 1):
        x, y, z, r = side * head["x"], head["y"], head["z"], head["radius"]
        tuberosity = (side * 52, y + 32, z - 42)
        wing = (side * 100, patient.rectum_wall_y - 10, z + 62)
        girdle += [
            _ellipsoid((x - side * 8, y, z + 8), (r + 9, r + 11, r + 13)),  # acetabulum
            _tube([(x - side * 12, y - 8, z + 6), (side * 6, symphysis_y, symphysis_z)], [10, 9]),  # pubic ramus
            _tube([(side * 8, symphysis_y + 6, symphysis_z - 14), tuberosity], [8, 14]),  # inferior ramus
            _tube([tuberosity, (x - side * 12, y + 14, z)], [14, 12]),  # ischium
            _tube([(x - side * 5, y + 6, z + 22), wing], [17, 12]),  # body of the ilium
            _ellipsoid(wing, (9, 52, 38), rotation_matrix([0, 0, side * 35])),  # iliac wing
            _tube([(side * 82, sacrum_y + 22, z + 78), (side * 28, sacrum_y + 28, 90)], [14, 16]),  # sacroiliac
        ]
        trochanter = (x + side * 45, y + 5, z - 25)
        femurs += [_ellipsoid((x, y, z), (r,) * 3), _tube([(x, y, z), trochanter], [15, 17]),
                   _tube([trochanter, (x + side * 32, y + 10, z - 220)], [16, 13])]
    return girdle, femurs


def _paint_bones(canvas: Canvas, patient: Patient) -> None:
    """Pelvic girdle, hip joint spaces, then femurs; bones clear any organ label they cover."""
    hu, head, cortex = patient.hu, patient.bones["femoral_head"], patient.bones["cortex"]

    def bone(distance):
        return np.where(distance < -cortex, hu["cancellous"], hu["cortical"])

    girdle, femurs = _bone_shapes(patient)
    canvas.paint_union(girdle, bone, label=0)
    for side in (-1, 1):
        centre = (side * head["x"], head["y"], head["z"])
        canvas.paint(ellipsoid(centre, (head["radius"] + 2,) * 3), hu["muscle"] - 10,
                     box=bounding_box(centre, head["radius"] + 3), label=0)  # joint space
    canvas.paint_union(femurs, bone, label=0)


def _paint_organs(canvas: Canvas, patient: Patient, scan: Scan, rng: np.random.Generator) -> None:
    hu = patient.hu
    path, radii = _rectum_path(patient, scan)
    box = polyline_box(path, radii)
    canvas.paint(tube(path, radii), hu["rectal_wall"], box=box, label=RECTUM)
    lumen = tube(path, np.maximum(radii - 3.0, 2.0))
    slices, points = canvas.region(box)
    texture = smooth_noise(points.shape[1:], 2.0, rng)
    bubbles = smooth_noise(points.shape[1:], 1.5, rng) > 1.8

    def content(distance, p):
        """Faeces with bubbles; gas above an air–fluid level (anterior, the patient lying supine)."""
        centre_y, lumen_radius = np.interp(p[2], path[:, 2], path[:, 1]), np.interp(p[2], path[:, 2], radii - 3)
        faeces = np.where(bubbles, GAS_HU, hu["faeces"] + 50 * texture)
        return np.where(p[1] < centre_y - (1 - 2 * scan.rectal_gas) * lumen_radius, GAS_HU, faeces)

    canvas.paint(lumen, content, box=box)
    centre, semi, wall = _bladder(patient, scan)
    bladder_box = bounding_box(centre, semi.max() + 2)
    canvas.paint(ellipsoid(centre, semi), hu["bladder_wall"], box=bladder_box, label=BLADDER)
    canvas.paint(ellipsoid(centre, semi - wall), hu["urine"], box=bladder_box)
    for nodes in _vesicles(patient, scan):
        vesicle_radii = [6.0, 6.5, 4.5]
        canvas.paint(tube(nodes, vesicle_radii), hu["seminal_vesicles"], box=polyline_box(nodes, vesicle_radii),
                     label=SEMINAL_VESICLES)
    level, prostate_box = _prostate_level(patient, scan)
    canvas.paint(level, hu["prostate"], box=prostate_box, label=PROSTATE)


def render(patient: Patient, scan: Scan, grid: sitk.Image, rng: np.random.Generator) -> tuple[sitk.Image, LabelMap]:
    """Paint one CT and its true contours on ``grid`` and add the scanner's blur and noise."""
    canvas = Canvas(grid, rotation_matrix(scan.setup_rotation_deg), scan.setup_translation, GAS_HU)
    _paint_body(canvas, patient, rng)
    _paint_organs(canvas, patient, scan, rng)
    _paint_bones(canvas, patient)
    spacing = np.array(grid.GetSpacing()[::-1])
    psf = rng.uniform(0.5, 0.8) * spacing[-1] / spacing  # same blur in mm in-plane; thinner across slices
    image = blur(canvas.hu, psf)
    noise = blur(rng.standard_normal(image.shape).astype(np.float32), (0, 0.7, 0.7))
    image += noise * (rng.uniform(8, 20) / noise.std())
    ct = volume.image_like(np.clip(np.round(image), -1024, 3071).astype(np.int16), grid)
    return ct, LabelMap(volume.image_like(canvas.labels, grid), list(PELVIS_SEGMENTS))


@dataclass
class PelvisPatient:
    """A planning CT and its daily CTs (each: image and true contours) and what was drawn."""

    scans: list[tuple[sitk.Image, LabelMap]]
    parameters: dict = field(default_factory=dict)


def generate_patient(seed: int | np.random.SeedSequence, fractions: int = 5, size: str = "full") -> PelvisPatient:
    rng = np.random.default_rng(seed)
    patient = draw_patient(rng)
    scans = draw_scans(patient, fractions, rng)
    grid = scan_grid(patient, size, rng)
    images = [render(patient, scan, grid, rng) for scan in scans]
    parameters = {"size": size, "prostate_semi_axes_mm": np.round(patient.prostate["semi_axes"], 2).tolist(),
                  "hu": {k: round(v, 1) for k, v in patient.hu.items()}, "scans": [s.as_dict() for s in scans]}
    return PelvisPatient(images, parameters)


def scan_name(index: int) -> str:
    return "planning" if index == 0 else f"fraction_{index:02d}"


def write_patient(patient: PelvisPatient, folder: Path) -> list[dict]:
    """Write every scan; return one datalist entry per daily scan paired with the planning scan."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (ct, labels) in enumerate(patient.scans):
        name = scan_name(index)
        image_path = volume.write_image(ct, folder / f"{name}_ct.nii.gz")
        labels_path = write_labels(labels, folder / f"{name}_contours.seg.nrrd")
        paths.append(tuple(str(p.relative_to(folder.parent)) for p in (image_path, labels_path)))
    with atomic_output(folder / "parameters.json") as temporary:
        temporary.write_text(json.dumps(patient.parameters, indent=2) + "\n")
    (moving, moving_labels), daily = paths[0], paths[1:]
    return [{"patient": folder.name, "fraction": index + 1, "fixed": fixed, "fixed_labels": fixed_labels,
             "moving": moving, "moving_labels": moving_labels} for index, (fixed, fixed_labels) in enumerate(daily)]


def preview_rows(patient: PelvisPatient, most: int = 3) -> list[Row]:
    return [Row(scan_name(index).replace("_", " "), ct, [labels.image], window=SOFT_TISSUE_WINDOW)
            for index, (ct, labels) in enumerate(patient.scans[:most + 1])]


def generate_dataset(out: Path, patients: int, fractions: int, seed: int, size: str, progress: StageProgress,
                     preview: bool = False) -> Path:
    """Write ``patients`` patients under ``out`` and a datalist of (daily, planning) pairs, split by patient."""
    groups = []
    for index in range(patients):
        progress(index / patients, f"patient {index + 1}/{patients}")
        patient = generate_patient(case_seed(seed, index), fractions, size)
        groups.append({"pairs": write_patient(patient, out / f"patient_{index:03d}")})
        if preview and index == 0:
            montage(preview_rows(patient), out / "preview.png", title="SynthLab pelvis phantom")
    splits = datalist.split(groups, np.random.default_rng(seed))
    path = datalist.write_datalist({name: [pair for group in split for pair in group["pairs"]]
                                    for name, split in splits.items()}, out / "datalist.json")
    progress(1.0, f"{patients} patients written")
    return path
