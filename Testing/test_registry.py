"""Models load only when every file matches the SHA-256 recorded in the registry."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from synthlab import registry
from synthlab.errors import InputError


@pytest.fixture
def saved_model(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3), torch.nn.ReLU(), torch.nn.Conv3d(4, 1, 1))
    card = {"task": "cbv", "version": "0.1", "inputs": ["t1", "t2"], "spacing": [2, 2, 2],
            "training_data": "test phantom"}
    weights, card_path = registry.save_model(model.state_dict(), card, tmp_path / "models", "tiny-cbv")
    models = registry.Registry(tmp_path / "Models.json")
    models.add(registry.entry_for(models, "tiny-cbv", weights, card_path, default=True))
    return model, registry.Registry(tmp_path / "Models.json")


def test_load_verified_weights_restore_the_model(saved_model):
    model, models = saved_model
    entry = models.resolve("cbv")
    assert entry.id == "tiny-cbv" and entry.inputs == ["t1", "t2"] and entry.weights == "models/tiny-cbv.safetensors"
    weights, card = models.load(entry)
    fresh = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3), torch.nn.ReLU(), torch.nn.Conv3d(4, 1, 1))
    fresh.load_state_dict(weights)
    x = torch.randn(1, 2, 5, 5, 5)
    torch.testing.assert_close(fresh(x), model(x))
    assert card["spacing"] == [2, 2, 2]


def test_tampered_weights_are_refused(saved_model):
    _, models = saved_model
    entry = models.resolve("cbv")
    path = models.root / entry.weights
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="fails its SHA-256 check"):
        models.load(entry)


def test_unknown_model_wrong_task_and_empty_registry(saved_model, tmp_path):
    _, models = saved_model
    with pytest.raises(InputError, match="unknown model 'nope' \\(known: tiny-cbv\\)"):
        models.resolve("cbv", "nope")
    with pytest.raises(InputError, match="is a cbv model, not a tumour model"):
        models.resolve("tumour", "tiny-cbv")
    with pytest.raises(InputError, match="no tumour model is registered"):
        registry.Registry(tmp_path / "empty.json").resolve("tumour")


def test_re_registering_replaces_the_entry_in_place_and_moves_the_default(saved_model):
    model, models = saved_model
    card = {"task": "cbv", "version": "0.2", "inputs": ["t1"]}
    other_weights, other_card = registry.save_model(model.state_dict(), card, models.root / "models", "other-cbv")
    models.add(registry.entry_for(models, "other-cbv", other_weights, other_card, default=True))
    tiny_weights, tiny_card = models.root / "models/tiny-cbv.safetensors", models.root / "models/tiny-cbv.json"
    models.add(registry.entry_for(models, "tiny-cbv", tiny_weights, tiny_card, default=True))
    reread = registry.Registry(models.path)
    assert [e.id for e in reread.entries] == ["tiny-cbv", "other-cbv"]
    assert reread.resolve("cbv").id == "tiny-cbv" and not reread.get("other-cbv").default


def test_shipped_registry_is_consistent():
    """Every model in Resources/Models.json exists and passes its hash check."""
    models = registry.Registry()
    assert models.path.is_file()
    for entry in models.entries:
        models.verified_path(entry, "weights")
        models.verified_path(entry, "card")


def test_the_mirror_average_makes_any_prediction_left_right_symmetric():
    def run(inputs: torch.Tensor) -> torch.Tensor:  # a running sum: not symmetric left to right
        return torch.cumsum(inputs, -1)

    model = registry.InferenceModel("m", {}, torch.nn.Identity(), torch.device("cpu"))
    inputs = torch.rand(2, 3, 5)
    assert model.mirror
    assert torch.allclose(model.predict(run, inputs.flip(-1)), model.predict(run, inputs).flip(-1))
    assert not torch.allclose(model.predict(run, inputs), run(inputs))
    assert torch.equal(replace(model, mirror=False).predict(run, inputs), run(inputs))
