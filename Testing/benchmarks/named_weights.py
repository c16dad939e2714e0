"""``NAME=weights.safetensors`` arguments of the benchmark scripts, read one way: a name given twice is refused
(a dict would silently keep only the last), as is an item without a name or a path."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_named_weights_option(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """``flag`` takes one or more ``NAME=weights`` items and may be repeated; every item given is kept."""
    parser.add_argument(flag, required=True, nargs="+", action="extend", metavar="NAME=WEIGHTS",
                        help=f"{help}; one or more, and the option may be repeated")


def named_weights(parser: argparse.ArgumentParser, items: list[str], *,
                  bare_name_from_file: bool = False) -> dict[str, Path]:
    """Each item's weights by name, in the order given; ``bare_name_from_file`` names a bare path after its file."""
    pairs = []
    for item in items:
        name, separator, path = item.partition("=")
        if not separator and bare_name_from_file:
            name, path = Path(item).stem, item
        if not name or not path:
            parser.error(f"{item!r}: give each model as NAME=weights.safetensors")
        pairs.append((name, Path(path)))
    names = [name for name, _ in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        parser.error(f"each model needs a name of its own (NAME=weights.safetensors); given twice: {', '.join(twice)}")
    return dict(pairs)
