"""Prepared training cases kept on disk, so a resumed run, or another run on the same images, skips reading them
again (bias fits and resampling take seconds a case).

A case is found again only when every file of its datalist entry has the same content, the reading function and
its settings are the same, and so is the source of the module that defines it; anything else reads afresh.
"""

from __future__ import annotations

import hashlib
import inspect
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from synthlab.registry import sha256_of
from synthlab.volume import atomic_output


def _describe(read: Callable) -> str:
    """The reading function and its settings, in words that stay the same from one process to the next."""
    function, arguments, keywords = (read.func, read.args, read.keywords) if isinstance(read, partial) \
        else (read, (), {})
    source = sha256_of(Path(inspect.getsourcefile(function)))
    return f"{function.__module__}.{function.__qualname__} {arguments!r} {sorted(keywords.items())!r} {source}"


@dataclass(frozen=True)
class CachedReader:
    """``read`` (picklable, as ``synthlab.processes.map_in_processes`` needs) with its results kept in ``folder``."""

    read: Callable[[dict], object]
    folder: Path

    def key(self, entry: dict) -> str:
        digest = hashlib.sha256(_describe(self.read).encode())
        for field in sorted(entry):
            value = entry[field]
            is_file = isinstance(value, str) and Path(value).is_file()
            digest.update(f"{field}={sha256_of(Path(value)) if is_file else repr(value)};".encode())
        return digest.hexdigest()

    def __call__(self, entry: dict):
        path = Path(self.folder) / f"{self.key(entry)}.pickle"
        if path.is_file():
            return pickle.loads(path.read_bytes())
        case = self.read(entry)
        with atomic_output(path) as temporary:  # runs reading at once may write the same case
            temporary.write_bytes(pickle.dumps(case, protocol=pickle.HIGHEST_PROTOCOL))
        return case
