"""Wall-clock timings of the spine: `synthlab demo` and the whole test suite, on this machine.

Run from the repository root: `.venv/bin/python Testing/benchmarks/spine_timings.py [--repeats N]`.
Prints a Markdown table to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    with tempfile.TemporaryDirectory() as folder:
        demo = [timed([sys.executable, "-m", "synthlab", "demo", "--out", os.path.join(folder, f"demo{i}"),
                       "--progress", "none"]) for i in range(repeats)]
    suite = [timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]) for _ in range(repeats)]
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}\n")
    print("| what | median s | min s | max s | runs |\n|---|---|---|---|---|")
    for name, values in (("synthlab demo (built-in data)", demo), ("pytest, whole suite", suite)):
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} | {len(values)} |")


if __name__ == "__main__":
    main()
