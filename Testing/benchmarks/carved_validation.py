"""Score tumour models on the senior's validation: held-out tumour images, pseudo-labelled by one source model,
each carved into a held-out healthy brain, and the brains without a tumour (Dice pooled over all of them).

The pseudo labels follow training's rule (one pass of the source, ``pseudo_label``), with the outlines moved to
FLAIR's half-contrast edge when the label source's card says its training did (or ``--pseudo-label-edges``
says so); the carving is training's
``carve_mix`` and ``carved_pairs`` (``--every-pairing`` carves each image into every brain instead). Unlike
training, the score here uses one fixed label source for every model, so models of
different juniors are compared on the same cases, and it scores each model's mask as inference makes it
(components under 0.5 ml removed). Session 38 used it to ask whether this score ranks models as
their test Dice does.

    .venv/bin/python Testing/benchmarks/carved_validation.py --healthy brain60/healthy.json \
        --unlabelled brain60/unlabelled.json --label-source shipped \
        --model shipped=Resources/models/tumour-synthtumour-phantom.safetensors junior1=R1/junior/junior.safetensors \
        --report carved.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from itertools import product
from pathlib import Path

import torch
from named_weights import add_named_weights_option, named_weights

from synthlab.datalist import read_datalist
from synthlab.synthtumour.evaluation import model_mask
from synthlab.synthtumour.fit import pseudo_label, pseudo_label_edges_named_in
from synthlab.synthtumour.inference import TumourModel
from synthlab.synthtumour.training import carved_cases, carved_pairs, overlap_counts, pooled_dice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--healthy", type=Path, required=True, help="datalist whose validation brains are the canvas")
    parser.add_argument("--unlabelled", type=Path, required=True, help="datalist whose validation tumour images are carved")
    add_named_weights_option(parser, "--model", "tumour models to score, each NAME=weights.safetensors")
    parser.add_argument("--label-source", required=True, help="the NAME whose pseudo labels define the carved tumours")
    parser.add_argument("--every-pairing", action="store_true",
                        help="carve each tumour image into every brain (tumours × brains cases), not one brain each")
    parser.add_argument("--pseudo-label-edges", choices=("model", "half-contrast"),
                        help="outline of the source's pseudo labels (default: the rule named in the label source's "
                             "card, else model)")
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    named = named_weights(parser, args.model)
    if args.label_source not in named:
        parser.error(f"--label-source {args.label_source} is not one of the --model names ({', '.join(named)})")
    models = {name: TumourModel.from_files(path, "auto", mirror=False) for name, path in named.items()}
    source = models[args.label_source]
    edges = args.pseudo_label_edges or pseudo_label_edges_named_in(source.card)
    brains = [source.read_entry(entry) for entry in read_datalist(args.healthy)["validation"]]
    tumours = [replace(case, label=pseudo_label(source.segment_canvas(case), source.spacing,
                                                case if edges == "half-contrast" else None))
               for case in (source.read_entry(entry) for entry in read_datalist(args.unlabelled)["validation"])]
    if not brains or not tumours:
        parser.error("both datalists need a validation split: the brains and the held-out tumour images")
    pairs = list(product(tumours, brains)) if args.every_pairing else carved_pairs(tumours, brains)
    cases = carved_cases(pairs, brains)
    scores = {}
    for name, model in models.items():
        counts = sum(overlap_counts(torch.from_numpy(model_mask(model, case, source.spacing)),
                                    torch.from_numpy(case.label)) for case in cases)
        scores[name] = round(float(pooled_dice(counts)), 4)
        print(f"{name}: {scores[name]}", flush=True)
    report = {"label_source": args.label_source, "pseudo_label_edges": edges, "carved_cases": len(pairs),
              "tumour_free_cases": len(brains), "pseudo_label_voxels": [int(t.label.sum()) for t in tumours],
              "scores": scores}
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
