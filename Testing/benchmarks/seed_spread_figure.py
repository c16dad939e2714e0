"""Each organ's mean surface distance for several training seeds of each configuration, side by side, from the
per-pair rows of ``contour_benchmark.py`` reports: one dot a seed (its mean over the pairs), a bar at the mean
of the seeds. Shows whether two configurations differ by more than a seed changes one of them.

    .venv/bin/python Testing/benchmarks/seed_spread_figure.py --out spread.png \\
        "cross-stitch=r1.json:crossstitch (w-s1)" "cross-stitch=r2.json:crossstitch (w-s2)" \\
        "loss-joined=r1.json:loss-joined (w-s1)" ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from paired_reports import case_rows  # noqa: E402

METRIC = "msd_mm"


def seed_means(arguments: list[str]) -> dict[str, list[dict[str, float]]]:
    """GROUP=REPORT:METHOD arguments → for each group, one {organ: mean MSD over the pairs} per seed."""
    groups: dict[str, list[dict[str, float]]] = {}
    for argument in arguments:
        group, separator, source = argument.partition("=")
        if not separator:
            raise SystemExit(f"give GROUP=REPORT.json:METHOD, not {argument!r}")
        rows = case_rows(source)
        organs = sorted({key.removesuffix(f" {METRIC}") for row in rows for key in row if key.endswith(f" {METRIC}")})
        if not organs:
            raise SystemExit(f"{source}: no per-pair {METRIC} rows (a report from before they were kept?)")
        groups.setdefault(group, []).append(
            {organ: float(np.mean([row[f"{organ} {METRIC}"] for row in rows if f"{organ} {METRIC}" in row]))
             for organ in organs})
    return groups


def draw(groups: dict[str, list[dict[str, float]]], out: Path) -> Path:
    organs = sorted({organ for seeds in groups.values() for seed in seeds for organ in seed})
    figure, axis = plt.subplots(figsize=(1.8 + 1.6 * len(organs), 4.0))
    width = 0.8 / len(groups)
    for index, (group, seeds) in enumerate(groups.items()):
        colour = f"C{index}"
        for position, organ in enumerate(organs):
            values = [seed[organ] for seed in seeds if organ in seed]
            x = position - 0.4 + width * (index + 0.5)
            axis.scatter(np.full(len(values), x), values, color=colour, s=18, zorder=3,
                         label=f"{group} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})" if position == 0 else None)
            axis.hlines(np.mean(values), x - width / 2.5, x + width / 2.5, color=colour, linewidth=2)
    axis.set_xticks(range(len(organs)), organs)
    axis.set_ylabel("mean surface distance (mm)")
    axis.set_ylim(bottom=0)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(len(groups), 3), frameon=False)
    axis.set_title("One dot a training seed (its mean over the test pairs); bar: mean of the seeds", fontsize=9)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="GROUP=REPORT.json:METHOD, one a seed")
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    print(draw(seed_means(arguments.sources), arguments.out))


if __name__ == "__main__":
    main()
