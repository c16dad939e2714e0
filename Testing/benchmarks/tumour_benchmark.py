"""SynthTumour on held-out phantom tumours: junior, senior and the FLAIR intensity baseline; inference time.

The phantom's tumours come from its own generator (lobulated level sets with oedema and
necrosis, mass effect), not from the stage-1 noisy spheres. Dice and HD95 on the test
split's tumour cases; the baseline threshold is chosen on the validation split's labels. On the
test split's healthy brains: the tumour volume each method finds there (all of it false).
Timing: one full-size phantom brain (1 mm, 192^3) through ``synthlab tumour``'s pipeline. ``--mirror``
scores the models with the left–right mirror average (``on``, as ``synthlab tumour`` runs by default), without it
or both; the timing follows the first senior's first row.

    .venv/bin/python Testing/benchmarks/tumour_benchmark.py --datalist D/datalist.json \
        [--junior OUT/junior/junior.safetensors] --senior OUT/synthtumour-senior.safetensors [OTHER/senior.safetensors ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from full_brain import time_full_brain
from mirroring import add_mirror_option, with_mirroring
from named_weights import add_named_weights_option, named_weights

from synthlab.datalist import read_datalist
from synthlab.synthtumour.evaluation import baseline_mask, choose_threshold, evaluate, model_mask
from synthlab.synthtumour.inference import TumourModel, segment_tumour


def labelled_tumours(entries: list[dict], model: TumourModel) -> list:
    cases = [model.read_entry(e, with_label=True) for e in entries if e.get("tumour")]
    return [case for case in cases if case.label.any()]


def preparation(model: TumourModel) -> tuple:
    """What decides how a case is read for the model (a card without N4 levels has the default)."""
    return model.card["intensity"]["kind"], model.bias_levels, model.spacing


def require_one_preparation(parser: argparse.ArgumentParser, models) -> None:
    """Refuse models that would read the same case differently (they are scored on one reading of it)."""
    if len({preparation(model) for model in models}) > 1:
        parser.error("the models must share their image preparation (intensity, N4 levels, spacing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--junior", type=Path,
                        help="the seniors' junior, scored as a row of its own (omit when an earlier report has it)")
    add_named_weights_option(parser, "--senior", "seniors, each weights.safetensors or NAME=weights.safetensors "
                                                 "(more than one: each row is named NAME, else after its file)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="full-brain timings (0: none)")
    parser.add_argument("--report", type=Path)
    add_mirror_option(parser)
    args = parser.parse_args()
    named = named_weights(parser, args.senior, bare_name_from_file=True)
    juniors = {"junior": TumourModel.from_files(args.junior, args.device)} if args.junior else {}
    seniors = {("senior" if len(named) == 1 else f"senior: {name}"): TumourModel.from_files(path, args.device)
               for name, path in named.items()}
    senior = next(iter(seniors.values()))  # reads the cases
    require_one_preparation(parser, [*juniors.values(), *seniors.values()])
    spacing, splits = senior.spacing, read_datalist(args.datalist)
    test = labelled_tumours(splits["test"], senior)
    threshold = choose_threshold(labelled_tumours(splits["validation"], senior), spacing)
    rows = with_mirroring({**juniors, **seniors}, args.mirror)
    timed = next(model for name, model in rows.items() if not name.startswith("junior"))
    methods = {name: (lambda case, model=model: model_mask(model, case, spacing)) for name, model in rows.items()}
    methods["intensity baseline"] = lambda case: baseline_mask(case, threshold, spacing)
    healthy = [senior.read_entry(e) for e in splits["test"] if not e.get("tumour", True)]
    result = evaluate(methods, test, spacing, lambda fraction, message: print(message, flush=True), healthy)
    result.update(baseline_threshold=threshold, test_cases=len(test), device=str(senior.device), mirror=args.mirror,
                  full_brain_1mm_seconds=time_full_brain(
                      lambda paths, mask: segment_tumour(timed, paths, mask, 0.5, lambda *a, **k: None),
                      timed.channels, args.repeats))
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=2))
    if args.report:
        args.report.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
