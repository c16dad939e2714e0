"""The named ``--model NAME=weights.safetensors`` items of the CBV benchmark scripts, loaded."""

from __future__ import annotations

import argparse

from named_weights import named_weights

from synthlab.hiersynth.inference import CBVModel


def load_models(parser: argparse.ArgumentParser, items: list[str], device: str) -> dict[str, CBVModel]:
    """Each ``NAME=weights`` item's model (its card beside the weights), by name, in the order given."""
    return {name: CBVModel.from_files(path, device) for name, path in named_weights(parser, items).items()}
