"""Timing on one full-size phantom brain (1 mm, 192³), shared by the brain benchmarks."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from synthlab.phantoms import brain
from synthlab.phantoms.fields import case_seed


def time_full_brain(run: Callable[[dict[str, str], str], object], contrasts: Sequence[str], repeats: int
                    ) -> list[float]:
    """Seconds per ``run(contrast paths, mask path)`` on a 1 mm full-size phantom brain with a tumour (none made
    for ``repeats`` 0)."""
    if repeats < 1:
        return []
    case = brain.generate_case(case_seed(99, 0), "full", with_tumour=True)
    with tempfile.TemporaryDirectory() as folder:
        files = brain.write_case(case, Path(folder) / "full")
        paths = {name: str(Path(folder) / files[name]) for name in contrasts}
        mask = str(Path(folder) / files["mask"])
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run(paths, mask)
            times.append(round(time.perf_counter() - started, 2))
    return times
