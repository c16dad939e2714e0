"""A picture of what the CBV scores mean: each model's synthetic CBV beside the true CBV, in the tumour.

One row per held-out tumour case: FLAIR, the true CBV, then each model's CBV, on the axial slice through the
tumour's centre, cropped around it, the tumour outlined, one display window per row (the true CBV's range in the crop).
Each model's panel names its tumour-ROI SSIM on that case. Cases are chosen by tumour size, evenly from the
smallest to the largest (not by any model's score), unless named with ``--case DATASET/CASE``.

    .venv/bin/python Testing/benchmarks/cbv_figure.py --datalist D/datalist.json \
        --model hiersynth=RUN/hiersynth.safetensors --model gsm=RUN2/gsm.safetensors ... --out F.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from cbv_models import load_models  # noqa: E402
from mirroring import add_mirror_option, with_mirroring  # noqa: E402
from named_weights import add_named_weights_option  # noqa: E402

from synthlab import figures, volume  # noqa: E402
from synthlab.datalist import read_datalist  # noqa: E402
from synthlab.hiersynth.data import read_entry  # noqa: E402
from synthlab.hiersynth.evaluation import cbv_metrics  # noqa: E402
from synthlab.hiersynth.inference import CBVModel  # noqa: E402

MARGIN = 6  # voxels of brain shown around the tumour on each side


def case_name(entry: dict) -> str:
    """Dataset folder and case (case names repeat across pooled phantoms)."""
    folder = Path(entry["cbv"]).parent
    return f"{folder.parent.name}/{folder.name}"


def cases_by_tumour_size(entries: list[dict], count: int) -> list[dict]:
    """``count`` tumour cases spread evenly over the tumour sizes, smallest first (sizes from the label files)."""
    sized = sorted((int((volume.array_of(volume.read_image(entry["label"])) > 0).sum()), index)
                   for index, entry in enumerate(entries) if entry.get("tumour") and entry.get("label"))
    if not sized:
        raise ValueError("no case of this split has a tumour label")
    picks = np.unique(np.round(np.linspace(0, len(sized) - 1, min(count, len(sized)))).astype(int))
    return [entries[sized[pick][1]] for pick in picks]


def axial_crop(arrays: dict[str, np.ndarray], tumour: np.ndarray) -> dict[str, np.ndarray]:
    """Each (z, y, x) array of the canonical canvas on the axial slice through the tumour's centre, cropped to the
    tumour's extent on it plus ``MARGIN``; the tumour's own slice under the key ``tumour``."""
    z = int(np.round(np.argwhere(tumour).mean(axis=0)[0]))
    rows, columns = np.nonzero(tumour[z])
    top, left = max(0, rows.min() - MARGIN), max(0, columns.min() - MARGIN)
    bottom, right = rows.max() + MARGIN + 1, columns.max() + MARGIN + 1
    return {name: array[z, top:bottom, left:right] for name, array in {**arrays, "tumour": tumour}.items()}


def canonical(array: np.ndarray, canvas) -> np.ndarray:
    """An array of the model canvas on LPS axes (anterior at the top, the patient's right on the left)."""
    return volume.array_of(volume.to_canonical(volume.image_like(array.astype(np.float32), canvas)))


def case_panels(entry: dict, models: dict[str, CBVModel]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The cropped panels of one case (its FLAIR, or the first input without one; ``true CBV``; each model;
    ``tumour``) and each model's tumour-ROI SSIM there."""
    first = next(iter(models.values()))
    case = read_entry(entry, first.contrasts, first.spacing)
    predictions = {name: model.synthesise_canvas(case) for name, model in models.items()}
    ssim = {name: cbv_metrics(cbv, case.cbv, case.brain.mask, case.tumour)["ssim_tumour"]
            for name, cbv in predictions.items()}
    shown = "flair" if "flair" in first.contrasts else first.contrasts[0]  # the input the tumour shows best on
    arrays = {shown.upper(): case.brain.image[first.contrasts.index(shown)], "true CBV": case.cbv, **predictions}
    tumour = canonical(case.tumour, case.brain.canvas) > 0.5
    return axial_crop({name: canonical(array, case.brain.canvas) for name, array in arrays.items()}, tumour), ssim


def draw(rows: list[tuple[str, dict[str, np.ndarray], dict[str, float]]], path: Path) -> None:
    names = [name for name in rows[0][1] if name != "tumour"]
    figure, axes = plt.subplots(len(rows), len(names), figsize=(1.9 * len(names), 2.0 * len(rows)), squeeze=False)
    for row, (case, panels, ssim) in enumerate(rows):
        top = float(np.percentile(panels["true CBV"], 99.5))
        for column, name in enumerate(names):
            axis = axes[row, column]
            is_input = column == 0
            axis.imshow(panels[name], cmap="gray" if is_input else "inferno", vmin=None if is_input else 0.0,
                        vmax=None if is_input else top)
            figures.outline(axis, panels["tumour"].astype(int), "dashed")
            label = name if name not in ssim else f"{name}\nSSIM {ssim[name]:.2f}"
            axis.set_title(f"{case}: {label}" if column == 0 else label, fontsize=7)
            axis.set_axis_off()
    figure.tight_layout()
    with volume.atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datalist", type=Path, required=True)
    add_named_weights_option(parser, "--model", "HierSynth models to score, each NAME=weights.safetensors")
    parser.add_argument("--split", default="test")
    parser.add_argument("--cases", type=int, default=4, help="how many tumour cases, spread over tumour size")
    parser.add_argument("--case", action="append", default=[], help="a case by its datalist name (repeat)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    add_mirror_option(parser)
    args = parser.parse_args()
    if args.mirror == "both":
        parser.error("--mirror: on or off for a figure")
    models = load_models(parser, args.model, args.device)
    if len({(tuple(model.contrasts), model.spacing) for model in models.values()}) > 1:
        parser.error("--model: every model must read the same contrasts at the same spacing")
    models = with_mirroring(models, args.mirror)
    entries = [entry for entry in read_datalist(args.datalist)[args.split] if entry.get("cbv")]
    try:
        chosen = ([entry for entry in entries if case_name(entry) in args.case] if args.case
                  else cases_by_tumour_size(entries, args.cases))
    except ValueError as error:
        parser.error(str(error))
    if not chosen:
        parser.error(f"--case: none of {', '.join(args.case)} is in the {args.split} split")
    rows = [(case_name(entry), *case_panels(entry, models)) for entry in chosen]
    draw(rows, args.out)
    print(f"wrote {args.out}: {len(rows)} cases, {len(models)} models")


if __name__ == "__main__":
    main()
