"""What ``changed_ct.py`` and ``changed_mri.py`` share: checking where a changed copy goes and what it copies,
and the grid changes (thicker slices, another voxel order) that apply to any image."""

from __future__ import annotations

import argparse
from pathlib import Path

import SimpleITK as sitk

from synthlab import volume
from synthlab.datalist import read_datalist
from synthlab.errors import InputError


def copy_parser(description: str, kind: str, items: str) -> argparse.ArgumentParser:
    """A parser with the options every changed copy takes: the ``kind`` datalist, the split whose ``items`` are
    copied, and the new output folder."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--datalist", required=True, help=f"{kind} datalist (JSON)")
    parser.add_argument("--split", default="test", help=f"the split whose {items} are copied")
    parser.add_argument("--out", required=True, help=f"new folder for the changed {items} and datalist.json")
    return parser


def checked_copy(parser: argparse.ArgumentParser, arguments: argparse.Namespace, file_keys: tuple[str, ...],
                 noun: str) -> tuple[Path, dict[str, list[dict]]]:
    """The absolute output folder and the datalist's splits, once ``--out`` is known to be new, ``--split`` to hold
    some ``noun``, every file under ``file_keys`` to exist and ``--orientation`` (if any) to be valid: all before
    anything is written. A failed check ends the script with a usage error."""
    out = Path(arguments.out).resolve()  # the datalist holds absolute paths
    if out.exists():
        parser.error(f"--out: {out} exists; give a new folder (nothing is overwritten)")
    try:
        splits = read_datalist(arguments.datalist)
    except InputError as error:
        parser.error(str(error))
    entries = splits.get(arguments.split)
    if not entries:
        parser.error(f"--split: {arguments.datalist} has no {noun} in split {arguments.split!r}")
    missing = sorted({entry[key] for entry in entries for key in file_keys
                      if key in entry and not Path(entry[key]).is_file()})
    if missing:
        parser.error(f"--datalist: {len(missing)} file(s) not found, the first {missing[0]}")
    if arguments.orientation and not is_orientation(arguments.orientation.upper()):
        parser.error(f"--orientation: {arguments.orientation!r} is not three axis letters such as RAS or LPI")
    return out, splits


def with_slice_thickness(image: sitk.Image, slice_mm: float, is_label: bool = False) -> sitk.Image:
    """The image resampled to ``slice_mm`` between slices over the same extent (labels by nearest neighbour);
    in-plane grid unchanged."""
    spacing = list(image.GetSpacing())
    size = list(image.GetSize())
    size[2] = max(1, int(round(size[2] * spacing[2] / slice_mm)))
    spacing[2] = slice_mm
    reference = sitk.Image(size, sitk.sitkUInt8)
    reference.SetSpacing(spacing)
    reference.SetOrigin(image.GetOrigin())
    reference.SetDirection(image.GetDirection())
    return volume.resample(image, reference, is_label=is_label)


def is_orientation(code: str) -> bool:
    """Three letters naming each axis once, one of L/R, one of P/A, one of I/S (as DICOMOrient takes)."""
    return len(code) == 3 and all(letter in "LRPAIS" for letter in code) and sorted(
        "LRPAIS".index(letter) // 2 for letter in code) == [0, 1, 2]
