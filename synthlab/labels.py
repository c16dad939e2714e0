"""Label maps that keep their names, colours and terminology.

A :class:`LabelMap` is an integer SimpleITK image plus one :class:`Segment` per
label value. Two file forms keep the metadata:

* ``.seg.nrrd``: Slicer's segmentation file, written and read with slicerio;
* any other volume format (``.nii.gz``, ``.nrrd``, ``.mha``) plus a
  ``<name>.labels.json`` sidecar beside it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio

from synthlab import volume
from synthlab.errors import InputError

SEG_NRRD = ".seg.nrrd"

# Terminology entries use the DICOM/SNOMED codes that Slicer's "Segmentation category and type" lists use.
SLICER_ANATOMY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_ANATOMICAL_STRUCTURE = ["SCT", "123037004", "Anatomical Structure"]


def _anatomy(code: str, meaning: str) -> dict:
    return {"contextName": SLICER_ANATOMY_CONTEXT, "category": _ANATOMICAL_STRUCTURE,
            "type": ["SCT", code, meaning]}


@dataclass
class Segment:
    """One labelled structure: its voxel value, name, RGB colour (0–1) and optional terminology."""

    value: int
    name: str
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    terminology: dict | None = None

    def __post_init__(self):
        self.value = int(self.value)
        self.color = tuple(float(c) for c in self.color)


@dataclass
class LabelMap:
    """An integer image (0 = background) and the segments its values stand for."""

    image: sitk.Image
    segments: list[Segment] = field(default_factory=list)

    def segment(self, name: str) -> Segment:
        for segment in self.segments:
            if segment.name.lower() == name.lower():
                return segment
        raise KeyError(name)

    def mask(self, name: str) -> np.ndarray:
        """Boolean (z, y, x) mask of the named segment."""
        return sitk.GetArrayViewFromImage(self.image) == self.segment(name).value

    def volume_ml(self, name: str) -> float:
        """Volume of the named segment in millilitres."""
        return float(self.mask(name).sum()) * float(np.prod(self.image.GetSpacing())) / 1000

    def present_values(self) -> list[int]:
        return [int(v) for v in np.unique(sitk.GetArrayViewFromImage(self.image)) if v != 0]


# The project's label conventions (ARCHITECTURE.md): pelvis contours and brain tumour subregions (BraTS order).
PELVIS_SEGMENTS = (
    Segment(1, "prostate", (0.85, 0.6, 0.5), _anatomy("41216001", "Prostate")),
    Segment(2, "seminal vesicles", (0.55, 0.8, 0.3), _anatomy("64739004", "Seminal vesicle")),
    Segment(3, "rectum", (0.55, 0.35, 0.2), _anatomy("34402009", "Rectum")),
    Segment(4, "bladder", (0.9, 0.85, 0.3), _anatomy("89837001", "Urinary bladder")),
)
# Other names planning systems give the pelvis organs (compared after lower-casing and dropping everything
# but letters).
ORGAN_ALIASES = {
    "prostate": ("prostate", "prostategland", "ctvprostate"),
    "seminal vesicles": ("seminalvesicles", "seminalvesicle", "sv", "svs", "vesicles", "vs"),
    "rectum": ("rectum", "rectal", "rectumwall", "anorectum"),
    "bladder": ("bladder", "urinarybladder", "bladderwall"),
}


PELVIS_ORGANS = [segment.name for segment in PELVIS_SEGMENTS]


def name_key(name: str) -> str:
    """A segment name reduced for comparison: lower case, letters only (``"Rectum_Wall"`` -> ``"rectumwall"``)."""
    return re.sub(r"[^a-z]", "", name.lower())


def organ_for_name(name: str, organs: list[str] | tuple[str, ...]) -> str | None:
    """The organ (of ``organs``) a segment name stands for, by name or a known alias; None if none."""
    key = name_key(name)
    for organ in organs:
        if key in ORGAN_ALIASES.get(organ, (name_key(organ),)):
            return organ
    return None


def parse_organ_map(text: str | None) -> dict[str, str]:
    """``"SV=seminal vesicles,Blase=bladder"`` (the ``--organ-map`` form) -> segment name -> organ."""
    pairs = [item.split("=", 1) for item in (text or "").split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise InputError("--organ-map", "use SEGMENT=ORGAN pairs separated by commas")
    return {segment.strip(): organ.strip() for segment, organ in pairs}


def parse_organ_list(text: str | None) -> list[str] | None:
    """``"rectum,bladder"`` (the ``--guide-organs`` form) -> organ names; ``"none"`` -> []; None -> None."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    return [] if [name.lower() for name in names] == ["none"] else names


def parse_organ_weights(text: str | None, organs: Sequence[str]) -> dict[str, float] | None:
    """``"bladder=0.5,rectum=0.3"`` (the ``--segmentation-weight`` form) -> organ -> weight; one number -> that
    weight for every organ in ``organs``; ``"none"`` -> {}; None -> None."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return {}
    items = [item.split("=", 1) for item in text.split(",") if item.strip()]
    try:
        if len(items) == 1 and len(items[0]) == 1:
            return {organ: float(items[0][0]) for organ in organs}
        if all(len(item) == 2 for item in items):
            return {organ.strip(): float(weight) for organ, weight in items}
    except ValueError:
        pass
    raise InputError("--segmentation-weight", f"'{text}': give one number, ORGAN=WEIGHT pairs separated by commas, "
                                              "or 'none'")


def format_organ_map(mapping: dict[str, str]) -> str | None:
    """The ``--organ-map`` form of a mapping (entries with no organ left out); None when empty."""
    return ",".join(f"{segment}={organ}" for segment, organ in mapping.items() if organ) or None


TUMOUR_SEGMENTS = (
    Segment(1, "necrotic core", (0.9, 0.85, 0.2)),
    Segment(2, "oedema", (0.3, 0.75, 0.9)),
    Segment(3, "enhancing rim", (0.9, 0.25, 0.2)),
)


def sidecar_path(path: str | os.PathLike) -> Path:
    """``case.nii.gz`` -> ``case.labels.json``."""
    path = Path(path)
    stem = path.name[: -len(volume.suffix_of(path))] if volume.suffix_of(path) else path.stem
    return path.with_name(f"{stem}.labels.json")


def is_seg_nrrd(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(SEG_NRRD)


def write_labels(labels: LabelMap, path: str | os.PathLike) -> Path:
    """Write a label map with its metadata (.seg.nrrd, or volume + sidecar), atomically."""
    path = Path(path)
    image = sitk.Cast(labels.image, sitk.sitkUInt8 if _max_value(labels) < 256 else sitk.sitkUInt16)
    if is_seg_nrrd(path):
        with volume.atomic_output(path) as temporary:
            slicerio.write_segmentation(str(temporary), _to_slicerio(image, labels.segments))
        return path
    sidecar = sidecar_path(path)
    with volume.atomic_output(sidecar) as temporary:
        temporary.write_text(json.dumps({"segments": [asdict(s) for s in labels.segments]}, indent=2))
        volume.write_image(image, path)
    return path


def read_labels(path: str | os.PathLike, name: str | None = None, dimension: int | None = 3) -> LabelMap:
    """Read a label map; names and colours come from the file (.seg.nrrd) or its sidecar, if any.

    Overlapping .seg.nrrd segments (several layers) are refused: a label map holds one value per voxel.
    """
    name = name or str(path)
    path = Path(path)
    if not is_seg_nrrd(path):
        image = volume.read_image(path, name, dimension=dimension, check_content=False)
        _require_integer(image, name)
        sidecar = sidecar_path(path)
        segments = []
        if sidecar.is_file():
            segments = [Segment(**s) for s in json.loads(sidecar.read_text())["segments"]]
        labels = LabelMap(image, segments)
        _name_unnamed_values(labels)
        return labels
    if not path.is_file():
        raise InputError(name, f"file not found: {path}")
    try:
        segmentation = slicerio.read_segmentation(str(path))
    except Exception as error:  # slicerio raises several types for a corrupt header
        raise InputError(name, f"cannot read {path.name}: {error}") from None
    return _from_slicerio(segmentation, name)


def _max_value(labels: LabelMap) -> int:
    values = [s.value for s in labels.segments]
    array_max = int(sitk.GetArrayViewFromImage(labels.image).max()) if labels.image.GetNumberOfPixels() else 0
    return max(values + [array_max])


def _require_integer(image: sitk.Image, name: str) -> None:
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise InputError(name, "a label map must hold whole numbers (got fractional values)")


def _name_unnamed_values(labels: LabelMap) -> None:
    known = {s.value for s in labels.segments}
    for value in labels.present_values():
        if value not in known:
            labels.segments.append(Segment(value, f"Label {value}"))
    labels.segments.sort(key=lambda s: s.value)


def _ijk_to_lps(image: sitk.Image) -> np.ndarray:
    matrix = np.eye(4)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    matrix[:3, :3] = direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def _to_slicerio(image: sitk.Image, segments: list[Segment]) -> dict:
    voxels = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # (k, j, i) -> (i, j, k)
    entries = []
    for segment in segments:
        entry = {"id": f"Segment_{segment.value}", "labelValue": segment.value, "layer": 0,
                 "name": segment.name, "color": list(segment.color)}
        if segment.terminology:
            entry["terminology"] = segment.terminology
        entries.append(entry)
    return {"voxels": voxels, "ijkToLPS": _ijk_to_lps(image), "encoding": "gzip", "segments": entries,
            "containedRepresentationNames": ["Binary labelmap"], "masterRepresentation": "Binary labelmap"}


def _from_slicerio(segmentation: dict, name: str) -> LabelMap:
    voxels = np.asarray(segmentation["voxels"])
    if voxels.ndim != 3:
        raise InputError(name, "overlapping segments (several layers) are not supported; "
                               "export a single-layer segmentation")
    image = sitk.GetImageFromArray(np.ascontiguousarray(voxels.transpose(2, 1, 0)))
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"], dtype=float)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((ijk_to_lps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(ijk_to_lps[:3, 3].tolist())
    segments = [Segment(s["labelValue"], s.get("name", f"Label {s['labelValue']}"),
                        tuple(s.get("color", (0.5, 0.5, 0.5))), s.get("terminology"))
                for s in segmentation.get("segments", [])]
    labels = LabelMap(image, segments)
    _name_unnamed_values(labels)
    return labels
