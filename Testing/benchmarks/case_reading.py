"""Time ``read_cases`` as ``synthlab train synthtumour`` reads its images with its default settings (FLAIR on
the 2 mm canvas, bias field removed), in the training process and with each worker count given.

    .venv/bin/python Testing/benchmarks/case_reading.py --datalist more_unlabelled.json --cases 16 --workers 0 2
"""

from __future__ import annotations

import argparse
import time

from synthlab.datalist import read_datalist
from synthlab.synthtumour.fit import TumourFitOptions, case_reader
from synthlab.trainer import read_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datalist", required=True, help="datalist whose training cases are read")
    parser.add_argument("--cases", type=int, default=16, help="how many of them")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts to time")
    arguments = parser.parse_args()
    entries = read_datalist(arguments.datalist)["training"][:arguments.cases]
    read = case_reader(TumourFitOptions())
    for workers in arguments.workers:
        start = time.perf_counter()
        read_cases(read, entries, lambda *_: None, "cases", workers)
        seconds = time.perf_counter() - start
        print(f"workers {workers}: {len(entries)} cases in {seconds:.1f} s ({seconds / len(entries):.2f} s a case)")


if __name__ == "__main__":
    main()
