"""``--mirror on|off|both`` for the benchmarks: score models with the left–right mirror average, without it,
or both (each model twice; the rows without it are named ``NAME (one pass)``)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from synthlab.registry import InferenceModel


def add_mirror_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mirror", choices=("on", "off", "both"), default="on",
                        help="average with the mirror image's prediction, as the commands do by default")


def with_mirroring(models: dict[str, InferenceModel], choice: str) -> dict[str, InferenceModel]:
    """The models as ``choice`` asks; in ``both``, every mirrored row is followed by its one-pass row."""
    if choice != "both":
        return {name: replace(model, mirror=choice == "on") for name, model in models.items()}
    rows = {}
    for name, model in models.items():
        rows[name] = replace(model, mirror=True)
        rows[f"{name} (one pass)"] = replace(model, mirror=False)
    return rows
