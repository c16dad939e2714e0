"""What tumour models find in healthy brains (every voxel of it false): a screen run before the test set.

Every healthy brain of the datalist (all splits) through each model's inference mask (mirror as chosen, components
under 0.5 ml removed): the volume found in each brain, and how many came back empty. Session 45 found that healthy
phantom brains made apart from the test set order the models as the test's healthy brains do.

    .venv/bin/python Testing/benchmarks/healthy_screen.py --datalist brain_val46/healthy.json \
        --model shipped=Resources/models/tumour-synthtumour-phantom.safetensors other=R/senior.safetensors \
        --report screen.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mirroring import add_mirror_option, with_mirroring
from named_weights import add_named_weights_option, named_weights
from tumour_benchmark import require_one_preparation

from synthlab.datalist import read_datalist
from synthlab.synthtumour.evaluation import canvas_ml, healthy_findings, model_mask
from synthlab.synthtumour.inference import TumourModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datalist", type=Path, required=True, help="its healthy brains (tumour false) are screened")
    add_named_weights_option(parser, "--model", "tumour models to screen, each NAME=weights.safetensors")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--report", type=Path)
    add_mirror_option(parser)
    args = parser.parse_args()
    models = with_mirroring({name: TumourModel.from_files(path, args.device)
                             for name, path in named_weights(parser, args.model).items()},
                            args.mirror)
    entries = [entry for split in read_datalist(args.datalist).values() for entry in split
               if not entry.get("tumour", True)]
    if not entries:
        parser.error(f"{args.datalist} has no healthy brain (an entry with tumour false)")
    require_one_preparation(parser, models.values())
    reader = next(iter(models.values()))
    found = {name: [] for name in models}
    for index, entry in enumerate(entries):
        print(f"healthy brain {index + 1}/{len(entries)}", flush=True)
        case = reader.read_entry(entry)
        for name, model in models.items():
            volume = canvas_ml(model_mask(model, case, reader.spacing), reader.spacing)
            found[name].append({"case": entry.get("case"), "flair": entry["flair"], "found_ml": round(volume, 3)})
    report = {"datalist": str(args.datalist), "mirror": args.mirror,
              "models": {name: {**healthy_findings([row["found_ml"] for row in rows]), "brains": rows}
                         for name, rows in found.items()}}
    print(json.dumps({name: {key: value for key, value in row.items() if key != "brains"}
                      for name, row in report["models"].items()}, indent=2))
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
