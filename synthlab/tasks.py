"""The tasks a SynthLab server runs for remote clients: their input files, outputs and options.

Both sides read this table: the server to check a request before it queues a job
(an unknown input, a missing one, a file type or option it does not take), the
client to know which outputs it may ask for. A task's name is its ``synthlab``
sub-command; inputs, outputs and options are that command's option names with
``_`` for ``-``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synthlab.volume import IMAGE_2D_SUFFIXES, VOLUME_SUFFIXES, suffix_of

LABEL_SUFFIXES = (".seg.nrrd", ".nrrd")  # a label volume needs its names: .seg.nrrd, or NRRD with segment fields
JSON_SUFFIXES = (".json",)


@dataclass(frozen=True)
class FileSlot:
    """One input or output file of a task and the formats it may take (first: the default)."""

    suffixes: tuple[str, ...]
    required: bool = False
    is_image: bool = True  # read with SimpleITK to validate an upload

    def accepts(self, filename: str) -> str | None:
        """The matching suffix of ``filename`` (``.seg.nrrd`` before ``.nrrd``), or None."""
        name = filename.lower()
        if ".seg.nrrd" in self.suffixes and name.endswith(".seg.nrrd"):
            return ".seg.nrrd"
        suffix = suffix_of(name)
        return suffix if suffix in self.suffixes else None


@dataclass(frozen=True)
class TaskSpec:
    """A remote task: ``model_task`` is the registry task whose models it runs."""

    name: str
    model_task: str
    inputs: dict[str, FileSlot]
    outputs: dict[str, FileSlot]
    options: dict[str, type] = field(default_factory=dict)

    def describe(self) -> dict:
        """The task as ``GET /info/`` shows it."""
        def slots(table: dict[str, FileSlot]) -> dict:
            return {name: {"required": slot.required, "formats": list(slot.suffixes)} for name, slot in table.items()}
        return {"model_task": self.model_task, "inputs": slots(self.inputs), "outputs": slots(self.outputs),
                "options": {name: kind.__name__ for name, kind in self.options.items()}}


VOLUME = FileSlot(VOLUME_SUFFIXES)
REQUIRED_VOLUME = FileSlot(VOLUME_SUFFIXES, required=True)
IMAGE_2D_OR_3D = FileSlot(VOLUME_SUFFIXES + IMAGE_2D_SUFFIXES, required=True)

TASKS: dict[str, TaskSpec] = {
    spec.name: spec for spec in (
        TaskSpec(
            "contour", "contour",
            inputs={"fixed": REQUIRED_VOLUME, "moving": REQUIRED_VOLUME,
                    "moving_labels": FileSlot(LABEL_SUFFIXES, required=True),
                    "reference_labels": FileSlot(LABEL_SUFFIXES)},
            outputs={"out_labels": FileSlot(LABEL_SUFFIXES, required=True), "out_field": VOLUME,
                     "out_warped": VOLUME, "out_segmentation": FileSlot(LABEL_SUFFIXES),
                     "out_metrics": FileSlot(JSON_SUFFIXES, is_image=False)},
            options={"model": str, "organ_map": str, "iterations": int, "window": int, "guide_organs": str,
                     "segmentation_weight": str, "setup_correction": bool}),
        TaskSpec(
            "tumour", "tumour",
            inputs={"flair": REQUIRED_VOLUME, "t1": VOLUME, "t2": VOLUME, "mask": VOLUME},
            outputs={"out": FileSlot(LABEL_SUFFIXES, required=True), "probability": VOLUME},
            options={"model": str, "min_component_ml": float}),
        TaskSpec(
            "cbv", "cbv",
            inputs={"t1": VOLUME, "t2": VOLUME, "flair": VOLUME, "adc": VOLUME, "mask": VOLUME,
                    "tumour": FileSlot(LABEL_SUFFIXES)},
            outputs={"out": FileSlot(VOLUME_SUFFIXES, required=True), "rcbv": VOLUME},
            options={"model": str}),
        TaskSpec(
            "register", "register",
            inputs={"fixed": IMAGE_2D_OR_3D, "moving": IMAGE_2D_OR_3D},
            outputs={"out_warped": FileSlot(VOLUME_SUFFIXES + IMAGE_2D_SUFFIXES, required=True), "out_field": VOLUME},
            options={"model": str, "iterations": int, "window": int}),
    )
}
