"""MONAI datalists: ``{"training": [...], "validation": [...], "test": [...]}``, paths relative to the JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from synthlab import volume
from synthlab.errors import InputError
from synthlab.volume import atomic_output

SPLITS = ("training", "validation", "test")
DEFAULT_FRACTIONS = {"validation": 0.15, "test": 0.15}


def split(entries: list[dict], rng: np.random.Generator, group_key: str | None = None) -> dict[str, list[dict]]:
    """Shuffle entries into training/validation/test (about 70/15/15; at least one each from 3 entries).

    With ``group_key`` the groups (e.g. tumour vs healthy) are interleaved first, so every split gets a mix.
    """
    groups: dict = {}
    for entry in entries:
        groups.setdefault(entry.get(group_key) if group_key else None, []).append(entry)
    shuffled = [[group[i] for i in rng.permutation(len(group))] for _, group in sorted(groups.items(), key=str)]
    interleaved = [entry for layer in _zip_longest(shuffled) for entry in layer]
    counts = {name: max(1, round(fraction * len(entries))) if len(entries) >= 3 else 0
              for name, fraction in DEFAULT_FRACTIONS.items()}
    test, validation = interleaved[:counts["test"]], interleaved[counts["test"]:sum(counts.values())]
    training = interleaved[sum(counts.values()):]
    return {"training": training, "validation": validation, "test": test}


def _zip_longest(lists: list[list]) -> list[list]:
    length = max((len(items) for items in lists), default=0)
    return [[items[i] for items in lists if i < len(items)] for i in range(length)]


def write_datalist(splits: dict[str, list[dict]], path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps({name: splits.get(name, []) for name in SPLITS}, indent=2) + "\n")
    return path


def read_datalist(path: str | os.PathLike) -> dict[str, list[dict]]:
    """Read a datalist; every image path becomes absolute (relative ones are taken from the JSON's folder)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("--datalist", f"file not found: {path}")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError("--datalist", f"{path.name} is not valid JSON: {error}") from None
    unknown = set(content) - set(SPLITS)
    if unknown:
        raise InputError("--datalist", f"unknown sections {sorted(unknown)}; expected {', '.join(SPLITS)}")
    return {name: [_absolute(entry, path.parent) for entry in content.get(name, [])] for name in SPLITS}


def pooled(base: dict[str, list[dict]], extras: list[dict[str, list[dict]]]) -> dict[str, list[dict]]:
    """``base`` with every case of ``extras`` (all their splits) added to its training split.

    Validation and test stay ``base``'s, so a model trained on more subjects is chosen and scored as before.
    Cases named in ``base``'s validation or test are refused: they would leak into training.
    """
    held_out = set().union(*(_image_paths(entry) for name in ("validation", "test") for entry in base[name]))
    extra = [entry for splits in extras for name in SPLITS for entry in splits[name]]
    leaking = sorted({entry.get("case", "?") for entry in extra if _image_paths(entry) & held_out})
    if leaking:
        raise InputError("--extra", f"cases {', '.join(leaking)} are in the base's validation or test split")
    return {**base, "training": base["training"] + extra}


def _image_paths(entry: dict) -> set[str]:
    return {value for value in entry.values() if _is_image_path(value)}


def _absolute(entry: dict, folder: Path) -> dict:
    return {key: str((folder / value).resolve()) if _is_image_path(value) else value
            for key, value in entry.items()}


def _is_image_path(value) -> bool:
    return isinstance(value, str) and volume.suffix_of(value) in volume.VOLUME_SUFFIXES + volume.IMAGE_2D_SUFFIXES
