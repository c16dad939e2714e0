"""Paired comparison of two models' per-case rows from benchmark reports (same cases, same order):
mean of each, mean difference B − A with its standard error over cases, and on how many cases B is higher.

    .venv/bin/python Testing/benchmarks/paired_reports.py A.json:MODEL_A B.json:MODEL_B [A2:M B2:M ...]

The metrics are the CBV benchmark's unless --metric names others, for example the contour benchmark's
``--metric "prostate msd_mm" --metric "rectum msd_mm"``.

Several pairs (for example one per training seed) are compared one by one, then summarised over the pairs:
the mean of the per-pair differences with their spread, and the per-case difference averaged over the pairs.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

METRICS = ("ssim_brain", "ssim_tumour", "psnr")


def case_rows(argument: str) -> list[dict]:
    path, _, model = argument.rpartition(":")
    return json.loads(open(path).read())["cases"][model]


def case_differences(rows_a: list[dict], rows_b: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-case values of A and B, for the cases that have the metric (tumour ROI: tumour cases only)."""
    pairs = np.array([(a[key], b[key]) for a, b in zip(rows_a, rows_b, strict=True) if key in a and key in b])
    if not len(pairs):
        raise SystemExit(f"no case of both reports has the metric {key!r}")
    return pairs[:, 0], pairs[:, 1]


def describe(difference: np.ndarray) -> str:
    error = difference.std(ddof=1) / np.sqrt(len(difference))
    return (f"B − A {difference.mean():+.4f} ± {error:.4f} (standard error), "
            f"B higher on {int((difference > 0).sum())} of {len(difference)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="REPORT.json:MODEL, in pairs A B [A B ...]")
    parser.add_argument("--metric", action="append", dest="metrics", help=f"repeatable; default {', '.join(METRICS)}")
    arguments = parser.parse_args()
    if len(arguments.reports) % 2:
        parser.error("give the reports in pairs: A.json:MODEL B.json:MODEL")
    pairs = [(case_rows(a), case_rows(b)) for a, b in zip(arguments.reports[::2], arguments.reports[1::2], strict=True)]
    for rows_a, rows_b in pairs:
        if [row["case"] for row in rows_a] != [row["case"] for row in rows_b]:
            raise SystemExit("the two reports do not hold the same cases in the same order")
    if len({tuple(row["case"] for row in rows_a) for rows_a, _ in pairs}) != 1:
        raise SystemExit("the pairs do not hold the same cases in the same order")
    for key in arguments.metrics or METRICS:
        per_pair = [case_differences(rows_a, rows_b, key) for rows_a, rows_b in pairs]
        for index, (a, b) in enumerate(per_pair):
            label = f"{key}" if len(pairs) == 1 else f"{key} [pair {index + 1}]"
            print(f"{label}: A {a.mean():.3f}, B {b.mean():.3f}, {describe(b - a)}")
        if len(pairs) > 1:
            means = np.array([(b - a).mean() for a, b in per_pair])
            averaged = np.mean([b - a for a, b in per_pair], axis=0)
            print(f"{key} [over {len(pairs)} pairs]: A {np.mean([a.mean() for a, _ in per_pair]):.3f}, "
                  f"B {np.mean([b.mean() for _, b in per_pair]):.3f}; per-pair B − A {means.mean():+.4f} "
                  f"(SD {means.std(ddof=1):.4f}, B higher in {int((means > 0).sum())} of {len(means)}); "
                  f"per case, averaged over the pairs: {describe(averaged)}")


if __name__ == "__main__":
    main()
