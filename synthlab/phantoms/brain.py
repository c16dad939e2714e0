"""Brain phantom: multi-contrast MRI (T1w, T2w, FLAIR, ADC), a CBV map and tumour labels per subject.

Each case is a new subject made from real anatomy (MNI152 or Colin27 tissue fractions, see
:mod:`synthlab.phantoms.anatomy`):

1. anatomy: a random affine (global scale 0.88–1.12, ±4 % per axis, ±8° rotations, ±6 mm position)
   and a smooth non-linear deformation (1.5–4 mm SD, correlation length 40 mm) of the template;
2. a tumour in 65 % of cases (:mod:`synthlab.phantoms.tumour`), with mass effect on the anatomy;
3. tissue properties per subject within literature ranges at 3 T (:mod:`synthlab.phantoms.mri`), mixed
   per voxel by partial volume, with mild tissue texture;
4. images from the signal equations of a random protocol, a receive bias field (5–20 %), a slight
   blur (PSF sigma 0.3–0.8 voxel) and Rician noise (SNR of white matter 12–50); ADC is computed from
   simulated b = 0 and b = 1000 s/mm² images, as a scanner does;
5. CBV (ml/100 g): tissue CBV with cortical heterogeneity (±20 %), tubular vessels in the cortex and
   sulci (8–16 ml/100 g at their centre) and sparse medullary vessels, and in the tumour rim a heterogeneous,
   high CBV with neovascular tubes; DSC-like blur and noise.

Images are skull-stripped (zero outside the brain mask), as in BraTS and UPenn-GBM. Intensities of
T1w, T2w and FLAIR are in arbitrary scanner units (a random gain); ADC is in 10⁻⁶ mm²/s.
Tumour labels: 1 necrotic core, 2 oedema, 3 enhancing rim (BraTS order); whole tumour is labels > 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from synthlab import datalist, volume
from synthlab.figures import Row, montage
from synthlab.labels import TUMOUR_SEGMENTS, LabelMap, write_labels
from synthlab.phantoms import anatomy, mri, tumour
from synthlab.phantoms.fields import bias_field, blur, case_seed, rician, smooth_noise, tubes
from synthlab.phantoms.shapes import grid_points, rotation_matrix
from synthlab.processes import map_in_processes
from synthlab.progress import StageProgress
from synthlab.volume import atomic_output

SIZES = {"small": (2.0, 96), "full": (1.0, 192)}  # spacing (mm), voxels per side
TUMOUR_PROBABILITY = 0.65
MODALITIES = ("t1", "t2", "flair", "adc", "cbv")
ADC_MAX = 4000.0  # 1e-6 mm²/s; noise in low-signal voxels is clipped here
# CBV texture: log-SD of the grey-matter heterogeneity; the rim's log-SD and its shares from the cellularity
# texture (seen by T2 and ADC) and from a field no MRI shows; vessel CBV ranges (ml/100 g, neovessels × rim CBV).
GM_CBV_SPREAD = 0.2
RIM_CBV_SPREAD, RIM_CBV_TEXTURE, RIM_CBV_HIDDEN = 0.35, 0.6, 0.8
VESSEL_CBV = {"cortical": (8.0, 16.0), "medullary": (1.0, 3.0), "neovessels": (0.5, 1.5)}


@dataclass
class BrainCase:
    """One generated subject: images, brain mask, tumour labels, true tissue fractions and what was drawn."""

    images: dict[str, sitk.Image]
    mask: sitk.Image
    labels: LabelMap
    fractions: dict[str, np.ndarray] = field(repr=False)
    parameters: dict = field(default_factory=dict)

    @property
    def has_tumour(self) -> bool:
        return bool(self.labels.present_values())


def output_grid(size: str) -> sitk.Image:
    """The case grid: a cube centred on the origin, LPS axes."""
    spacing, voxels = SIZES[size]
    grid = sitk.Image([voxels] * 3, sitk.sitkFloat32)
    grid.SetSpacing([spacing] * 3)
    grid.SetOrigin([-(voxels - 1) / 2 * spacing] * 3)
    return grid


@dataclass
class SubjectWarp:
    """Output point p -> template point: centre + A·p + d(p) (A: scale and rotation; d: smooth field)."""

    matrix: np.ndarray
    centre: np.ndarray
    displacement: np.ndarray  # (3, z, y, x) mm

    @classmethod
    def draw(cls, template: sitk.Image, grid: sitk.Image, rng: np.random.Generator) -> tuple[SubjectWarp, dict]:
        scale = rng.uniform(0.88, 1.12) * rng.uniform(0.96, 1.04, 3)
        angles = rng.uniform(-8, 8, 3)
        brain = volume.array_of(template) > 0.5
        centroid_index = np.argwhere(brain).mean(axis=0)[::-1]  # (x, y, z)
        centre = np.array(template.TransformContinuousIndexToPhysicalPoint(centroid_index.tolist()))
        centre += rng.uniform(-6, 6, 3)
        amplitude = rng.uniform(1.5, 4.0)
        shape = grid.GetSize()[::-1]
        correlation = 40.0 / grid.GetSpacing()[0]
        displacement = np.stack([amplitude * smooth_noise(shape, correlation, rng) for _ in range(3)])
        warp = cls(rotation_matrix(angles) @ np.diag(1 / scale), centre, displacement)
        return warp, {"scale": scale.round(3).tolist(), "rotation_deg": angles.round(2).tolist(),
                      "deformation_sd_mm": round(float(amplitude), 2)}

    def sample(self, images: dict[str, sitk.Image], grid: sitk.Image, points: np.ndarray) -> dict[str, np.ndarray]:
        """Resample template images onto the grid through this warp, from output points (3, z, y, x)."""
        source = np.einsum("ij,j...->i...", self.matrix, points) + self.centre.reshape(3, 1, 1, 1)
        source += self.displacement
        field_image = sitk.GetImageFromArray(np.moveaxis(source - points, 0, -1).astype(np.float64),
                                             isVector=True)
        field_image.CopyInformation(grid)
        transform = sitk.DisplacementFieldTransform(field_image)
        return {key: volume.array_of(sitk.Resample(image, grid, transform, sitk.sitkLinear, 0.0))
                for key, image in images.items()}


def _tumour_candidates(fractions: dict[str, np.ndarray], points: np.ndarray, spacing: float) -> np.ndarray:
    """Points in white matter at least 12 mm inside the brain: where gliomas typically arise."""
    brain = (fractions["gm"] + fractions["wm"] + fractions["csf"]) > 0.5
    depth = ndimage.distance_transform_edt(brain, sampling=spacing)
    candidates = (fractions["wm"] > 0.5) & (depth > 12.0)
    if not candidates.any():
        candidates = depth >= depth.max() * 0.5
    return points[:, candidates].T


def _apply_tumour(fractions: dict[str, np.ndarray], parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Replace tissue by rim and core, and turn a share of the remaining parenchyma into oedema."""
    tumour_fraction = parts["rim"] + parts["core"]
    remaining = 1.0 - tumour_fraction
    share = parts["oedema_share"]
    return {"gm": fractions["gm"] * remaining * (1 - share), "wm": fractions["wm"] * remaining * (1 - share),
            "csf": fractions["csf"] * remaining,
            "oedema": (fractions["gm"] + fractions["wm"]) * remaining * share,
            "rim": parts["rim"], "core": parts["core"]}


def _tumour_labels(fractions: dict[str, np.ndarray]) -> np.ndarray:
    labels = np.zeros(fractions["gm"].shape, np.uint8)
    labels[fractions["oedema"] >= 0.5] = 2
    labels[fractions["rim"] + fractions["core"] >= 0.5] = 3
    labels[fractions["core"] >= 0.5] = 1
    return labels


@dataclass
class Textures:
    """Per-voxel fields shared across contrasts, so images and CBV stay physically consistent."""

    tissue: np.ndarray  # mild proton-density texture of every tissue
    rim: np.ndarray  # tumour cellularity: more cells -> lower ADC, longer T2 and higher CBV
    cortical_vessels: np.ndarray
    medullary_vessels: np.ndarray
    neovessels: np.ndarray

    @classmethod
    def draw(cls, shape, spacing: float, rng: np.random.Generator) -> Textures:
        return cls(tissue=np.exp(0.04 * smooth_noise(shape, 3.0 / spacing, rng)),
                   rim=smooth_noise(shape, 4.0 / spacing, rng),
                   cortical_vessels=tubes(shape, 8.0 / spacing, 0.18, rng),
                   medullary_vessels=tubes(shape, 12.0 / spacing, 0.06, rng),
                   neovessels=tubes(shape, 4.0 / spacing, 0.2, rng))


def _tissue_map(fractions, tissues, value_of, textures: Textures) -> np.ndarray:
    """Σ fraction × per-tissue value (a number or a map), the partial-volume mixture, times tissue texture."""
    total = np.zeros_like(fractions["gm"])
    for name, fraction in fractions.items():
        total += fraction * value_of(name, tissues[name])
    return total * textures.tissue


def _structural(sequence: mri.Sequence, fractions, tissues, textures: Textures, vessels: np.ndarray
                ) -> np.ndarray:
    def signal(name, tissue):
        if name == "rim":  # denser tumour: slightly longer T2
            return sequence.signal(replace(tissue, t2=tissue.t2 * np.exp(0.08 * textures.rim)))
        return sequence.signal(tissue)

    image = _tissue_map(fractions, tissues, signal, textures)
    if sequence.kind != "spgr":  # flowing blood gives spin-echo flow voids
        image *= 1 - 0.4 * vessels
    return image


def _diffusion(sequence: mri.Sequence, fractions, tissues, textures: Textures) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free b = 0 and b = 1000 signals; each tissue decays with its own ADC (partial volume)."""
    b0 = _tissue_map(fractions, tissues, lambda name, tissue: sequence.signal(tissue), textures)

    def decayed(name, tissue):
        adc = tissue.adc * (np.exp(-0.1 * textures.rim) if name == "rim" else 1.0)
        return sequence.signal(tissue) * np.exp(-sequence.b * adc * 1e-6)

    return b0, _tissue_map(fractions, tissues, decayed, textures)


def _cbv(fractions, tissues, textures: Textures, cortical: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shape = fractions["gm"].shape
    gm_heterogeneity = np.exp(GM_CBV_SPREAD * smooth_noise(shape, 6.0, rng))
    rim_cbv = tissues["rim"].cbv * np.exp(
        RIM_CBV_SPREAD * (RIM_CBV_TEXTURE * textures.rim + RIM_CBV_HIDDEN * smooth_noise(shape, 2.0, rng))
        - RIM_CBV_SPREAD ** 2 / 2)
    cbv = (fractions["gm"] * tissues["gm"].cbv * gm_heterogeneity + fractions["wm"] * tissues["wm"].cbv
           + fractions["oedema"] * tissues["oedema"].cbv + fractions["core"] * tissues["core"].cbv
           + fractions["rim"] * rim_cbv)
    cbv += rng.uniform(*VESSEL_CBV["cortical"]) * textures.cortical_vessels * cortical
    cbv += rng.uniform(*VESSEL_CBV["medullary"]) * textures.medullary_vessels * fractions["wm"]
    cbv += rng.uniform(*VESSEL_CBV["neovessels"]) * tissues["rim"].cbv * textures.neovessels * fractions["rim"]
    return cbv


def generate_case(seed: int | np.random.SeedSequence, size: str = "small", with_tumour: bool | None = None,
                  anatomy_name: str | None = None) -> BrainCase:
    """Generate one subject; everything random comes from ``seed``."""
    rng = np.random.default_rng(seed)
    anatomy_name = anatomy_name or str(rng.choice(anatomy.ANATOMIES))
    with_tumour = bool(rng.random() < TUMOUR_PROBABILITY) if with_tumour is None else with_tumour
    grid = output_grid(size)
    spacing = grid.GetSpacing()[0]
    template = anatomy.tissue_fractions(anatomy_name, smoothing_mm=0.42 * spacing if spacing > 1 else 0.0)
    template_images = {"gm": template.gm, "wm": template.wm, "csf": template.csf}
    points = grid_points(grid)
    warp, parameters = SubjectWarp.draw(template.gm + template.wm, grid, rng)
    parameters = {"anatomy": anatomy_name, "size": size, **parameters}
    healthy = warp.sample(template_images, grid, points)
    fractions = {**healthy, **{name: np.zeros_like(healthy["gm"]) for name in ("oedema", "rim", "core")}}
    if with_tumour:
        spec = tumour.draw_tumour(_tumour_candidates(healthy, points, spacing), rng)
        pushed = warp.sample(template_images, grid, tumour.displaced_points(points, spec))
        parts = tumour.compartments(points, spec, pushed["gm"] + pushed["wm"], pushed["wm"], spacing, rng)
        fractions = _apply_tumour(pushed, parts)
        parameters["tumour"] = spec.as_dict()

    tissues, protocol = mri.draw_tissues(rng), mri.draw_protocol(rng)
    textures = Textures.draw(grid.GetSize()[::-1], spacing, rng)
    brain_fraction = sum(fractions.values())
    mask = (brain_fraction >= 0.5).astype(np.uint8)
    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    cortical = np.clip(fractions["gm"] + fractions["csf"] * (depth < 10), 0, 1)
    vessels = textures.cortical_vessels * cortical

    shape = mask.shape
    bias_scale = 60.0 / spacing
    arrays, acquisition = {}, {}
    for name in ("t1", "t2", "flair"):
        sequence = protocol[name]
        clean = _structural(sequence, fractions, tissues, textures, vessels)
        arrays[name], acquisition[name] = _acquire([clean], sequence.signal(tissues["wm"]), shape, bias_scale, rng)
        arrays[name] = arrays[name][0]
    b0, b1000 = _diffusion(protocol["dwi"], fractions, tissues, textures)
    (b0, b1000), acquisition["dwi"] = _acquire([b0, b1000], protocol["dwi"].signal(tissues["wm"]), shape,
                                               bias_scale, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        adc = np.log(b0 / b1000) / protocol["dwi"].b * 1e6
    arrays["adc"] = np.clip(np.nan_to_num(adc, nan=0.0), 0.0, ADC_MAX)
    cbv = blur(_cbv(fractions, tissues, textures, cortical, rng), rng.uniform(0.5, 1.0))
    cbv += rng.normal(0, 0.03 * tissues["gm"].cbv, shape).astype(np.float32)
    arrays["cbv"] = np.clip(cbv, 0.0, None)

    images = {name: volume.image_like((arrays[name] * mask).astype(np.float32), grid) for name in MODALITIES}
    parameters.update({
        "protocol": {name: vars(sequence) for name, sequence in protocol.items()},
        "acquisition": acquisition,
        "tissues": {name: {k: round(float(v), 1) for k, v in vars(t).items()} for name, t in tissues.items()},
    })
    labels = LabelMap(volume.image_like(_tumour_labels(fractions), grid), list(TUMOUR_SEGMENTS))
    return BrainCase(images, volume.image_like(mask, grid), labels, fractions, parameters)


def _acquire(clean: list[np.ndarray], wm_signal: float, shape, bias_scale: float, rng: np.random.Generator
             ) -> tuple[list[np.ndarray], dict]:
    """Bias, blur, Rician noise and a scanner gain for images acquired together (e.g. b = 0 and b = 1000)."""
    strength, psf, snr = rng.uniform(0.05, 0.2), rng.uniform(0.3, 0.8), rng.uniform(12, 50)
    gain = rng.uniform(300, 3000) / wm_signal
    bias = bias_field(shape, bias_scale, strength, rng)
    sigma = wm_signal / snr
    acquired = [gain * rician(blur(image * bias, psf), sigma, rng) for image in clean]
    return acquired, {"bias": round(float(strength), 3), "psf_sigma_voxels": round(float(psf), 2),
                      "snr_wm": round(float(snr), 1)}


def write_case(case: BrainCase, folder: Path) -> dict[str, str]:
    """Write a case's files into ``folder``; return the datalist entry (paths relative to its parent)."""
    folder.mkdir(parents=True, exist_ok=True)
    entry = {}
    for name, image in case.images.items():
        entry[name] = volume.write_image(image, folder / f"{name}.nii.gz")
    entry["mask"] = volume.write_image(case.mask, folder / "mask.nii.gz")
    entry["label"] = write_labels(case.labels, folder / "tumour_labels.nii.gz")
    with atomic_output(folder / "parameters.json") as temporary:
        temporary.write_text(json.dumps(case.parameters, indent=2, default=float) + "\n")
    relative = {key: str(Path(path).relative_to(folder.parent)) for key, path in entry.items()}
    return {"case": folder.name, **relative, "tumour": case.has_tumour,
            "anatomy": case.parameters["anatomy"]}


def preview_rows(images: dict[str, sitk.Image], labels: sitk.Image) -> list[Row]:
    """Montage rows of a case: every contrast and the CBV map, tumour labels outlined."""
    return [Row(name.upper(), images[name], [labels], "inferno" if name == "cbv" else "gray") for name in MODALITIES]


def generate_dataset(out: Path, cases: int, seed: int, size: str, progress: StageProgress,
                     preview: bool = False, workers: int = 0) -> Path:
    """Write ``cases`` subjects under ``out`` with a datalist split 70/15/15 (tumour and healthy mixed), made by
    ``workers`` processes at once when 2 or more; each case depends only on ``seed`` and its number."""
    make = partial(_generate_and_write, seed=seed, size=size, out=out)
    entries = map_in_processes(make, range(cases), progress, "cases", workers, verbs=("making", "made"))
    if preview:
        shown = next((entry for entry in entries if entry["tumour"]), entries[0])  # as written, not made again
        images = {name: volume.read_image(out / shown[name]) for name in MODALITIES}
        montage(preview_rows(images, volume.read_image(out / shown["label"])), out / "preview.png",
                title="SynthLab brain phantom")
    splits = datalist.split(entries, np.random.default_rng(seed), group_key="tumour")
    path = datalist.write_datalist(splits, out / "datalist.json")
    write_synthtumour_datalists(splits, out)
    progress(1.0, f"{cases} cases written")
    return path


def _generate_and_write(index: int, seed: int, size: str, out: Path) -> dict[str, str]:
    return write_case(generate_case(case_seed(seed, index), size), out / f"case_{index:03d}")


def write_synthtumour_datalists(splits: dict[str, list[dict]], out: Path) -> None:
    """``healthy.json`` (healthy brains) and ``unlabelled.json`` (tumour images with their labels removed, except
    in the test split, kept for evaluation): the inputs of ``synthlab train synthtumour``."""
    healthy = {name: [e for e in entries if not e["tumour"]] for name, entries in splits.items()}
    unlabelled = {name: [e if name == "test" else {k: v for k, v in e.items() if k != "label"}
                         for e in entries if e["tumour"]] for name, entries in splits.items()}
    datalist.write_datalist(healthy, out / "healthy.json")
    datalist.write_datalist(unlabelled, out / "unlabelled.json")

