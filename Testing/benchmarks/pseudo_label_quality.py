"""How good the junior's pseudo labels are: each one against the phantom's true tumour label.

Training never reads these labels (the unlabelled datalist has none); this check does, to see what the
senior is taught. For every case of the unlabelled datalist's training split, in the order the run
labelled them (``RUN/pseudo_labels/case_NNNN.npz``), it finds the same case (same FLAIR) in a labelled
datalist, reads its true label onto the run's canvas, and reports Dice, the volume ratio (pseudo / true)
and the coverage (share of the true tumour inside the pseudo label): a pseudo label that covers less than
half its tumour teaches the senior that the rest of the tumour is background.

    .venv/bin/python Testing/benchmarks/pseudo_label_quality.py --run RUN --unlabelled U.json \
        --labelled D1/datalist.json [D2/datalist.json ...] [--labels pseudo_labels_round2] [--spacing 2] --report R.md

``--labels`` names another of the run's label folders: a later round's (``--senior-rounds``), made by the
previous senior.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from synthlab.brain import read_entry
from synthlab.datalist import read_datalist
from synthlab.metrics import dice

UNDER_COVERED = 0.5  # a pseudo label holding less of its tumour than this is "under-labelled"


def true_label_entries(labelled: list[Path]) -> dict[str, dict]:
    """Every entry with a label in these datalists, by its FLAIR path."""
    return {str(Path(entry["flair"]).resolve()): entry for path in labelled
            for entries in read_datalist(path).values() for entry in entries if entry.get("label")}


def case_scores(pseudo: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"dice": dice(pseudo, truth), "volume_ratio": float(pseudo.sum() / max(1, truth.sum())),
            "coverage": float((pseudo & truth).sum() / max(1, truth.sum()))}


def summary(rows: list[dict]) -> dict[str, float | int]:
    dices = np.array([row["dice"] for row in rows])
    return {"cases": len(rows), "dice_mean": float(dices.mean()), "dice_median": float(np.median(dices)),
            "dice_min": float(dices.min()), "below_0.7": int((dices < 0.7).sum()), "below_0.5": int((dices < 0.5).sum()),
            "volume_ratio_median": float(np.median([row["volume_ratio"] for row in rows])),
            "under_covered": int(sum(row["coverage"] < UNDER_COVERED for row in rows))}


def report(rows: list[dict], labels: Path) -> str:
    stats = summary(rows)
    lines = [f"# Pseudo labels in {labels} against the true labels", "",
             f"{stats['cases']} cases: Dice mean {stats['dice_mean']:.3f}, median {stats['dice_median']:.3f}, "
             f"min {stats['dice_min']:.3f}; {stats['below_0.7']} below 0.7, {stats['below_0.5']} below 0.5; "
             f"median volume ratio {stats['volume_ratio_median']:.2f}; {stats['under_covered']} cover less than "
             f"{UNDER_COVERED:.0%} of their tumour.", "", "The ten worst:", "",
             "| case | Dice | volume ratio | coverage | true voxels |", "|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda row: row["dice"])[:10]:
        lines.append(f"| {row['case']} | {row['dice']:.3f} | {row['volume_ratio']:.2f} | {row['coverage']:.3f} "
                     f"| {row['true_voxels']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a `synthlab train synthtumour` output folder")
    parser.add_argument("--unlabelled", type=Path, required=True, help="the datalist the run was given")
    parser.add_argument("--labelled", type=Path, nargs="+", required=True,
                        help="the phantom's datalists, with labels, that hold the same cases")
    parser.add_argument("--labels", default="pseudo_labels",
                        help="the run's folder of pseudo labels to score (default: the junior's, pseudo_labels)")
    parser.add_argument("--report", type=Path, help="write the Markdown report here (default: print it)")
    parser.add_argument("--spacing", type=float, help="the run's model spacing in mm (default: its junior's card; "
                                                      "give it for a run labelled by --labeller, which has no junior)")
    arguments = parser.parse_args()
    junior_card = arguments.run / "junior" / "junior.json"
    if arguments.spacing is None and not junior_card.is_file():
        parser.error(f"{junior_card} is missing (a run labelled by --labeller has none): give --spacing")
    try:
        entries = read_datalist(arguments.unlabelled)["training"]
        spacing = arguments.spacing or json.loads(junior_card.read_text())["spacing"][0]
        truths = true_label_entries(arguments.labelled)
    except (OSError, ValueError, KeyError) as error:
        parser.error(str(error))
    rows = []
    for index, entry in enumerate(entries):
        pseudo_path = arguments.run / arguments.labels / f"case_{index:04d}.npz"
        truth_entry = truths.get(str(Path(entry["flair"]).resolve()))
        if not pseudo_path.is_file():
            parser.error(f"{pseudo_path} is missing: the run has not labelled case {index} of --unlabelled")
        if truth_entry is None:
            parser.error(f"no --labelled datalist holds a label for {entry['flair']}")
        truth = read_entry(truth_entry, ("flair",), spacing, with_label=True).label
        pseudo = np.load(pseudo_path)["label"]
        if pseudo.shape != truth.shape:
            parser.error(f"{pseudo_path} is {pseudo.shape}, its case's canvas {truth.shape}: another datalist?")
        folder = Path(entry["flair"]).parent  # case names repeat across pooled phantoms: keep the dataset's
        rows.append({"case": f"{folder.parent.name}/{folder.name}", "true_voxels": int(truth.sum()),
                     **case_scores(pseudo, truth)})
    text = report(rows, arguments.run / arguments.labels)
    if arguments.report:
        arguments.report.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
