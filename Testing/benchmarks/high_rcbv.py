"""How many tumours with a high true rCBV each model's synthetic CBV also puts above the high-grade cut, from the
per-case rows of ``cbv_benchmark.py`` or ``synthlab evaluate cbv`` reports (also those written before the
summary counted them).

    .venv/bin/python Testing/benchmarks/high_rcbv.py REPORT.json:MODEL [REPORT.json:MODEL ...]
"""

from __future__ import annotations

import argparse

import numpy as np
from paired_reports import case_rows

from synthlab.hiersynth.commands import HIGH_GRADE_RCBV, high_rcbv_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="REPORT.json:MODEL")
    for argument in parser.parse_args().reports:
        rows = [row for row in case_rows(argument) if "tumour_rcbv" in row]
        counts = high_rcbv_counts(rows)
        print(f"{argument}: mean tumour rCBV {np.mean([row['tumour_rcbv'] for row in rows]):.2f} "
              f"(true {np.mean([row['true_tumour_rcbv'] for row in rows]):.2f}, {len(rows)} tumours); "
              f"above {HIGH_GRADE_RCBV}: {counts['high_rcbv_found']} of the {counts['high_rcbv_tumours']} truly above, "
              f"and {counts['high_rcbv_false']} truly below")


if __name__ == "__main__":
    main()
