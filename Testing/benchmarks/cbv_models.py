"""``--model NAME=weights.safetensors`` (repeatable) for the CBV benchmark scripts: the named models, loaded."""

from __future__ import annotations

import argparse

from synthlab.hiersynth.inference import CBVModel


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, help="NAME=weights.safetensors (repeat)")


def load_models(items: list[str], device: str) -> dict[str, CBVModel]:
    """Each ``NAME=weights`` item's model (its card beside the weights), by name, in the order given."""
    models = {}
    for item in items:
        name, _, path = item.partition("=")
        models[name] = CBVModel.from_files(path, device)
    return models
