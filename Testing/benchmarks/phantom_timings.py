"""Phantom generation speed on this machine: brain cases (small and full) and pelvis patients.

Run from the repository root: `.venv/bin/python Testing/benchmarks/phantom_timings.py [--repeats N]`.
Each timing generates and writes one case or patient into a temporary folder, in this process, after
one warm-up case that loads the templates (their loading time is reported separately).
Prints a Markdown table to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from synthlab.phantoms import anatomy, brain, pelvis
from synthlab.phantoms.fields import case_seed


def seconds(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    loading = {name: seconds(lambda n=name: anatomy.tissue_fractions(n, 0.84)) for name in anatomy.ANATOMIES}
    rows = [(f"load {name} tissue maps (once a process)", [value]) for name, value in loading.items()]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        for size in ("small", "full"):
            brain.write_case(brain.generate_case(0, size), out / f"warm_{size}")
            timings = [seconds(lambda i=i, s=size: brain.write_case(
                brain.generate_case(case_seed(1, i), s, with_tumour=True), out / f"brain_{s}_{i}"))
                for i in range(repeats)]
            spacing, voxels = brain.SIZES[size]
            rows.append((f"brain case, {size} ({spacing:g} mm, {voxels}³, with tumour)", timings))
        for size in ("small", "full"):
            timings = [seconds(lambda i=i, s=size: pelvis.write_patient(pelvis.generate_patient(
                case_seed(1, i), 5, s), out / f"pelvis_{s}_{i}"))
                for i in range(repeats)]
            rows.append((f"pelvis patient, {size}, planning + 5 fractions", timings))
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}\n")
    print("| what | median s | min s | max s | runs |\n|---|---|---|---|---|")
    for name, values in rows:
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} | {len(values)} |")


if __name__ == "__main__":
    main()
