"""The model registry: ``Resources/Models.json`` lists every model with the SHA-256 of its files.

Each model is a safetensors weights file (no pickle, so loading runs no code)
and a JSON *card* beside it (task, inputs in order, spacing, patch size,
normalisation, label names, training data, metrics, version). Loading checks
every file's SHA-256 against the registry and refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import load_file, save_file

from synthlab.device import resolve_device
from synthlab.errors import InputError
from synthlab.volume import atomic_output

REGISTRY_ENV = "SYNTHLAB_MODELS"


def default_registry_path() -> Path:
    """``$SYNTHLAB_MODELS``, else ``Resources/Models.json`` beside the package (repository or extension)."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    return Path(__file__).resolve().parent.parent / "Resources" / "Models.json"


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelEntry:
    """One registered model. ``weights`` and ``card`` are paths relative to the registry file."""

    id: str
    task: str
    version: str
    inputs: list[str]
    weights: str
    card: str
    sha256: dict[str, str]
    licence: str = "BSD-3-Clause"
    training_data: str = ""
    metrics: dict = field(default_factory=dict)
    default: bool = False


class Registry:
    """The models listed in one ``Models.json``."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_registry_path()
        self.entries: list[ModelEntry] = []
        if self.path.is_file():
            try:
                document = json.loads(self.path.read_text())
                self.entries = [ModelEntry(**entry) for entry in document.get("models", [])]
            except (json.JSONDecodeError, TypeError) as error:
                raise InputError(str(self.path), f"model registry is not valid: {error}") from None

    @property
    def root(self) -> Path:
        return self.path.parent

    def for_task(self, task: str) -> list[ModelEntry]:
        return [entry for entry in self.entries if entry.task == task]

    def get(self, model_id: str) -> ModelEntry:
        for entry in self.entries:
            if entry.id == model_id:
                return entry
        known = ", ".join(e.id for e in self.entries) or "none registered"
        raise InputError("--model", f"unknown model '{model_id}' (known: {known})")

    def resolve(self, task: str, model_id: str | None = None) -> ModelEntry:
        """The named model (checked to be for ``task``), else the task's default model."""
        if model_id:
            entry = self.get(model_id)
            if entry.task != task:
                raise InputError("--model", f"model '{model_id}' is a {entry.task} model, not a {task} model")
            return entry
        candidates = self.for_task(task)
        if not candidates:
            raise InputError("--model", f"no {task} model is registered in {self.path}; train one with "
                                        f"'synthlab train' and register it")
        return next((e for e in candidates if e.default), candidates[-1])

    def add(self, entry: ModelEntry) -> None:
        """Add an entry, or replace the one with its id in place, and save the registry atomically."""
        index = next((i for i, e in enumerate(self.entries) if e.id == entry.id), len(self.entries))
        self.entries[index:index + 1] = [entry]
        if entry.default:
            for other in self.entries:
                if other.task == entry.task and other.id != entry.id:
                    other.default = False
        document = {"models": [asdict(e) for e in self.entries]}
        with atomic_output(self.path) as temporary:
            temporary.write_text(json.dumps(document, indent=2) + "\n")

    def verified_path(self, entry: ModelEntry, kind: str) -> Path:
        """Path of the entry's ``weights`` or ``card`` file after checking it exists and its SHA-256."""
        path = self.root / getattr(entry, kind)
        if not path.is_file():
            raise InputError("--model", f"model '{entry.id}': {kind} file missing ({path})")
        actual = sha256_of(path)
        if actual != entry.sha256.get(kind):
            raise InputError("--model", f"model '{entry.id}': {kind} file {path.name} fails its SHA-256 check "
                                        f"(expected {entry.sha256.get(kind, '?')[:12]}…, got {actual[:12]}…); "
                                        f"the file is corrupt or was replaced")
        return path

    def load(self, entry: ModelEntry, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
        """Verified weights (a state dict on ``device``) and card of a registered model."""
        card = json.loads(self.verified_path(entry, "card").read_text())
        weights = load_file(str(self.verified_path(entry, "weights")), device=str(device))
        return weights, card


def save_model(state_dict: dict[str, torch.Tensor], card: dict, directory: str | os.PathLike,
               model_id: str) -> tuple[Path, Path]:
    """Write ``<model_id>.safetensors`` and ``<model_id>.json`` (the card) atomically."""
    directory = Path(directory)
    weights_path = directory / f"{model_id}.safetensors"
    card_path = directory / f"{model_id}.json"
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state_dict.items()}
    with atomic_output(weights_path) as temporary:
        save_file(tensors, str(temporary), metadata={"model_id": model_id})
    with atomic_output(card_path) as temporary:
        temporary.write_text(json.dumps({"id": model_id, **card}, indent=2) + "\n")
    return weights_path, card_path


def entry_for(registry: Registry, model_id: str, weights_path: Path, card_path: Path, **fields) -> ModelEntry:
    """A registry entry for saved files, with paths relative to the registry and their SHA-256."""
    card = json.loads(card_path.read_text())
    return ModelEntry(
        id=model_id, task=card["task"], version=card.get("version", "0"), inputs=list(card.get("inputs", [])),
        weights=os.path.relpath(weights_path, registry.root), card=os.path.relpath(card_path, registry.root),
        sha256={"weights": sha256_of(weights_path), "card": sha256_of(card_path)},
        training_data=card.get("training_data", ""), metrics=card.get("metrics", {}), **fields)


@dataclass
class InferenceModel:
    """A network ready for inference and the card that says how to feed it. Subclasses build the network in
    ``from_weights``; loading from exported files or from the registry is shared. With ``mirror`` (the default)
    the prediction is averaged with the prediction on the left–right mirror image, mirrored back: a test-time
    augmentation that costs a second pass."""

    model_id: str
    card: dict
    network: torch.nn.Module
    device: torch.device
    mirror: bool = True
    task: ClassVar[str] = ""

    def predict(self, run: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """``run(inputs)``, mirror-averaged when ``mirror`` is on. The last axis of inputs and outputs is
        left–right, as on every canvas (z, y, x)."""
        output = run(inputs)
        if not self.mirror:
            return output
        return (output + run(inputs.flip(-1)).flip(-1)) / 2

    @classmethod
    def from_weights(cls, weights: dict[str, torch.Tensor], card: dict, device: torch.device):
        raise NotImplementedError

    @classmethod
    def from_files(cls, weights_path: str | os.PathLike, device: str = "auto", mirror: bool = True):
        """An exported model (``<id>.safetensors`` with ``<id>.json`` beside it), e.g. before registering it."""
        weights_path = Path(weights_path)
        card = json.loads(weights_path.with_suffix(".json").read_text())
        return replace(cls.from_weights(load_file(str(weights_path)), card, resolve_device(device)), mirror=mirror)

    @classmethod
    def registered(cls, model_id: str | None = None, device: str = "auto", task: str | None = None,
                   mirror: bool = True):
        """The registered model (default: the task's default), its files checked against their SHA-256."""
        registry = Registry()
        entry = registry.resolve(task or cls.task, model_id)
        weights, card = registry.load(entry)
        return replace(cls.from_weights(weights, {**card, "id": entry.id}, resolve_device(device)), mirror=mirror)
