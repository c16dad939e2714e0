"""Paired comparison of two models' per-case rows from ``cbv_benchmark.py`` reports (same cases, same order):
mean of each, mean difference B − A with its standard error over cases, and on how many cases B is higher.

    .venv/bin/python Testing/benchmarks/paired_reports.py A.json:MODEL_A B.json:MODEL_B
"""

from __future__ import annotations

import argparse
import json

import numpy as np

METRICS = ("ssim_brain", "ssim_tumour", "psnr")


def case_rows(argument: str) -> list[dict]:
    path, _, model = argument.rpartition(":")
    return json.loads(open(path).read())["cases"][model]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="REPORT.json:MODEL")
    parser.add_argument("b", help="REPORT.json:MODEL")
    arguments = parser.parse_args()
    rows_a, rows_b = case_rows(arguments.a), case_rows(arguments.b)
    if [row["case"] for row in rows_a] != [row["case"] for row in rows_b]:
        raise SystemExit("the two reports do not hold the same cases in the same order")
    for key in METRICS:
        pairs = np.array([(a[key], b[key]) for a, b in zip(rows_a, rows_b, strict=True) if key in a and key in b])
        difference = pairs[:, 1] - pairs[:, 0]
        error = difference.std(ddof=1) / np.sqrt(len(difference))
        print(f"{key}: A {pairs[:, 0].mean():.3f}, B {pairs[:, 1].mean():.3f}, B − A {difference.mean():+.4f} ± "
              f"{error:.4f} (standard error), B higher on {int((difference > 0).sum())} of {len(difference)}")


if __name__ == "__main__":
    main()
