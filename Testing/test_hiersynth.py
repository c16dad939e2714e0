"""HierSynth: the networks, PaC, the metrics, training of every variant, ``synthlab cbv`` and its refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import quiet, run_benchmark_script, synthlab, synthlab_env, synthlab_here
from safetensors.torch import load_file

from synthlab.brain import BrainArrays
from synthlab.datalist import read_datalist
from synthlab.errors import InputError
from synthlab.hiersynth.commands import high_rcbv_counts, tumour_rcbv_metrics
from synthlab.hiersynth.data import CBV_SCALE, CBVCase, SliceDataset, read_case, read_entry, slice_stack
from synthlab.hiersynth.evaluation import cbv_metrics
from synthlab.hiersynth.fit import CBVFitOptions, fit_hiersynth, stage_budget, start_from
from synthlab.hiersynth.inference import CBVModel
from synthlab.hiersynth.losses import PerfusionContrast, info_nce
from synthlab.hiersynth.networks import GlobalSynthesis, HierSynth, ModulatedConv2d, MonolithicUNet
from synthlab.hiersynth.training import CBVSynthModule
from synthlab.hiersynth.variants import VARIANTS
from synthlab.registry import REGISTRY_ENV, Registry, entry_for


def test_modulated_convolution_gives_each_sample_its_own_style_and_unit_scale():
    torch.manual_seed(0)
    convolution = ModulatedConv2d(8, 16, style_size=4)
    x = torch.randn(1, 8, 12, 12).repeat(2, 1, 1, 1)
    styles = torch.randn(2, 4)
    with torch.no_grad():
        out = convolution(x, styles)
        scaled = convolution(x, styles * 10)
    assert out.shape == (2, 16, 12, 12)
    assert not torch.allclose(out[0], out[1])  # same input, two styles
    one_by_one = torch.cat([convolution(x[i:i + 1], styles[i:i + 1]) for i in range(2)])
    assert torch.allclose(out, one_by_one, atol=1e-5)  # the grouped convolution keeps samples apart
    assert 0.5 < float(out.std()) < 2.0  # demodulation keeps activations near unit scale
    assert 0.5 < float(scaled.std()) < 2.0  # ... whatever the style's magnitude


def test_hierarchical_output_is_the_global_base_plus_the_local_residual():
    torch.manual_seed(0)
    network = HierSynth(6).eval()
    x = torch.randn(2, 6, 32, 32)
    base, residual, output = network(x)
    assert base.shape == residual.shape == output.shape == (2, 1, 32, 32)
    assert torch.allclose(output, base + residual)
    assert torch.allclose(base, network.gsm(x))
    assert torch.equal(network(x)[2], output)  # no noise at inference: deterministic
    assert GlobalSynthesis(6)(torch.randn(1, 6, 30, 30)).shape == (1, 1, 30, 30)  # any slice size


def test_a_new_lsm_keeps_the_gsm_output_and_learns_a_residual():
    torch.manual_seed(0)
    module = CBVSynthModule("gsm-lsm", "local", in_channels=3)
    image, cbv = torch.randn(2, 3, 32, 32), torch.rand(2, 1, 32, 32)
    base, residual, output = module.generate(image)
    assert torch.equal(residual, torch.zeros_like(residual)) and torch.equal(output, base)
    first_layer = module.network.lsm.unet.conv_0.conv_0.conv.weight.detach().clone()
    optimiser = torch.optim.Adam(module.trained_parameters(), lr=1e-2)
    for _ in range(3):
        optimiser.zero_grad()
        torch.nn.functional.l1_loss(module.generate(image)[2], cbv).backward()
        optimiser.step()
    assert float(module.generate(image)[1].abs().mean()) > 1e-3
    assert not torch.equal(module.network.lsm.unet.conv_0.conv_0.conv.weight, first_layer)  # not only the last layer
    # The local stage takes the trained GSM from the global stage's weights, not that stage's untrained LSM.
    global_stage = CBVSynthModule("gsm-lsm", "global", in_channels=3)
    weights = {key: value + 0.5 for key, value in global_stage.network.state_dict().items()}
    local_stage = CBVSynthModule("gsm-lsm", "local", in_channels=3)
    start_from(local_stage, weights)
    assert torch.equal(local_stage.network.gsm.encoder[0][0].weight, weights["gsm.encoder.0.0.weight"])
    assert torch.equal(local_stage.generate(image)[1], torch.zeros(2, 1, 32, 32))


def test_info_nce_rewards_matching_embeddings_and_ignores_same_level_keys():
    torch.manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    levels = torch.tensor([0, 0, 1, 1, 2, 2])
    negatives = levels != levels[:, None]
    matched = info_nce(keys, keys, negatives, 0.1)
    shuffled = info_nce(keys[torch.tensor([1, 0, 3, 2, 5, 4])], keys, negatives, 0.1)
    assert float(matched) < float(shuffled)
    changed = keys.clone()
    changed[1] = torch.nn.functional.normalize(torch.randn(8), dim=0)  # key 1 is the same level as query 0
    only_query_0 = info_nce(keys[:1], changed, negatives[:1], 0.1)
    assert torch.allclose(only_query_0, info_nce(keys[:1], keys, negatives[:1], 0.1))


def test_pac_samples_inside_the_brain_and_trains_the_predicted_residual():
    torch.manual_seed(0)
    pac = PerfusionContrast(locations=8)
    cbv = torch.rand(2, 1, 32, 32)
    cbv[:, :, 10:14, 10:14] = 5.0  # a high-perfusion spot
    brain = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    brain[:, :, 4:28, 4:28] = True
    centres = pac.sample_locations(cbv, brain)
    assert len(centres) == 16 and bool(brain[centres[:, 0], 0, centres[:, 1], centres[:, 2]].all())
    levels = pac.perfusion_level(cbv, brain, centres)
    assert levels.max() > levels.min()  # the spot and the rest are different perfusion levels
    predicted = torch.randn(2, 1, 32, 32, requires_grad=True)
    loss = pac(predicted, torch.randn(2, 1, 32, 32), cbv, brain)
    loss.backward()
    assert torch.isfinite(loss) and predicted.grad.abs().sum() > 0


def test_slice_stacks_hold_the_neighbours_of_every_contrast_clamped_at_the_ends():
    image = np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(2, 4, 3, 3)
    stack = slice_stack(image, 0, 1)
    assert stack.shape == (6, 3, 3)
    assert np.array_equal(stack[0], image[0, 0]) and np.array_equal(stack[1], image[0, 0])  # clamped
    assert np.array_equal(stack[2], image[0, 1]) and np.array_equal(stack[4], image[1, 0])


def test_metrics_reward_the_truth_and_score_the_tumour_roi_only_when_there_is_one():
    rng = np.random.default_rng(0)
    truth = rng.gamma(2.0, 1.0, (24, 24, 24)).astype(np.float32)
    brain = np.zeros(truth.shape, bool)
    brain[3:21, 3:21, 3:21] = True
    tumour = np.zeros_like(brain)
    tumour[10:14, 10:14, 10:14] = True
    perfect = cbv_metrics(truth, truth, brain, tumour)
    assert perfect["mae"] == 0 and perfect["ssim_brain"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["ssim_tumour"] == pytest.approx(1.0, abs=1e-4)
    blurred = truth.copy()
    blurred[brain] = truth[brain].mean()
    worse = cbv_metrics(blurred, truth, brain, tumour)
    assert worse["ssim_brain"] < 0.5 and worse["psnr"] < perfect["psnr"] and worse["mae"] > 0
    assert "ssim_tumour" not in cbv_metrics(truth, truth, brain, None)


def test_every_variant_shares_the_budget():
    assert stage_budget(CBVFitOptions(variant="hiersynth", steps=100)) == {"global": 50, "local": 50}
    assert stage_budget(CBVFitOptions(variant="unet", steps=100)) == {"single": 100}
    assert stage_budget(CBVFitOptions(variant="gsm-lsm", steps=100, joint_steps=5)) == {"global": 50, "local": 50,
                                                                                         "joint": 5}
    with pytest.raises(InputError, match="--joint-steps"):
        stage_budget(CBVFitOptions(variant="pix2pix", steps=100, joint_steps=5))


def test_the_tumour_share_draws_slices_that_show_the_tumour():
    depth = 20
    mask = np.ones((depth, 16, 16), bool)
    tumour = np.zeros_like(mask)
    tumour[8:11, 4:10, 4:10] = True  # 3 of 20 slices show tumour
    cbv = np.broadcast_to(np.arange(depth, dtype=np.float32)[:, None, None], mask.shape).copy()  # CBV = slice index
    case = CBVCase(BrainArrays(np.zeros((1, depth, 16, 16), np.float32), mask, sitk.Image(16, 16, depth, sitk.sitkUInt8)),
                   cbv, tumour)

    def drawn_slices(share: float) -> np.ndarray:
        dataset = SliceDataset([case], neighbours=0, samples=400, seed=1, tumour_share=share)
        return np.array([round(float(dataset[i]["cbv"].max()) * CBV_SCALE) for i in range(len(dataset))])

    assert set(drawn_slices(1.0)) == {8, 9, 10}
    assert 0.4 < np.isin(drawn_slices(0.5), [8, 9, 10]).mean() < 0.7  # half, plus the uniform draws that hit them
    assert np.isin(drawn_slices(0.0), [8, 9, 10]).mean() < 0.3
    unlabelled = SliceDataset([CBVCase(case.brain, cbv, None)], 0, 200, 1, tumour_share=1.0)
    assert len({float(unlabelled[i]["cbv"].max()) for i in range(200)}) > 3  # no labels: the share is ignored


def test_the_local_stage_trains_the_lsm_with_pac_and_leaves_the_gsm_alone():
    module = CBVSynthModule("hiersynth", "local", in_channels=3)
    trained = {id(p) for p in module.trained_parameters()}
    assert not trained & {id(p) for p in module.network.gsm.parameters()}
    assert {id(p) for p in module.network.lsm.parameters()} <= trained
    assert {id(p) for p in module.pac.parameters()} <= trained
    assert CBVSynthModule("gsm-lsm", "local", in_channels=3).pac is None
    assert CBVSynthModule("unet", "single", in_channels=3).discriminator is None


@pytest.mark.parametrize("variant", ["unet", "pix2pix", "gsm", "gsm-lsm"])
def test_each_baseline_trains_and_exports_a_loadable_model(brain_data, tmp_path, variant):
    options = CBVFitOptions(variant=variant, steps=2, spacing=6.0, batch_size=2, accelerator="cpu", model_id=variant,
                            tumour_share=0.25, local_tumour_share=0.5)
    fit_hiersynth(brain_data / "datalist.json", tmp_path, options, quiet)
    card = json.loads((tmp_path / f"{variant}.json").read_text())
    assert card["variant"] == variant and card["training"]["steps"] == 2 and card["task"] == "cbv"
    assert card["training"]["tumour_share"] == 0.25 and card["training"]["local_tumour_share"] == 0.5
    stages = VARIANTS[variant].stages  # the first stage draws --tumour-share, the local one --local-tumour-share
    stage_share = {stage: json.loads((tmp_path / stage / f"{stage}.json").read_text())["training"]["tumour_share"]
                   for stage in stages}
    assert stage_share == ({"global": 0.25, "local": 0.5} if variant == "gsm-lsm" else {stages[0]: 0.25})
    model = CBVModel.from_files(tmp_path / f"{variant}.safetensors", "cpu")
    assert isinstance(model.network, MonolithicUNet if variant in ("unet", "pix2pix") else HierSynth)


def test_a_run_is_not_resumed_with_another_tumour_share(brain_data, tmp_path):
    options = CBVFitOptions(variant="gsm", steps=1, spacing=6.0, batch_size=2, accelerator="cpu", model_id="gsm")
    fit_hiersynth(brain_data / "datalist.json", tmp_path, options, quiet)
    with pytest.raises(InputError, match="tumour_share 0.0 \\(now 0.5\\)"):
        fit_hiersynth(brain_data / "datalist.json", tmp_path, replace(options, steps=2, tumour_share=0.5), quiet)


def test_checkpoints_are_scored_on_the_first_validation_cases_asked_for(brain_data, tmp_path):
    splits = json.loads((brain_data / "datalist.json").read_text())
    datalist = brain_data / "three_validation_cases.json"  # beside the cases its relative paths name
    datalist.write_text(json.dumps({**splits, "validation": splits["training"][:3]}))
    for count in (2, 4):  # the split has 3: asking for more uses them all
        options = CBVFitOptions(variant="unet", steps=1, spacing=6.0, batch_size=2, accelerator="cpu",
                                model_id="unet", validation_cases=count)
        fit_hiersynth(datalist, tmp_path / str(count), options, quiet)
        metrics = json.loads((tmp_path / str(count) / "unet.json").read_text())["metrics"]
        assert metrics["validation_cases"] == min(count, 3) and metrics["validation_score"] is not None


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_rate_schedule_anneals_every_optimiser_over_the_stage(brain_data, tmp_path, schedule):
    options = CBVFitOptions(variant="pix2pix", steps=4, spacing=6.0, batch_size=2, accelerator="cpu",
                            learning_rate=1e-3, rate_schedule=schedule, model_id="pix2pix")
    fit_hiersynth(brain_data / "datalist.json", tmp_path, options, quiet)
    saved = torch.load(tmp_path / "single" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    rates = [group["lr"] for state in saved["optimizer_states"] for group in state["param_groups"]]
    assert len(rates) == 2  # generator and discriminator
    assert rates == pytest.approx([0.0, 0.0] if schedule == "cosine" else [1e-3, 1e-3], abs=1e-9)
    assert json.loads((tmp_path / "pix2pix.json").read_text())["training"]["rate_schedule"] == schedule


def test_hiersynth_trains_both_stages_and_resumes(brain_data, cbv_registry, tmp_path):
    trained = Path(cbv_registry).parent
    card = json.loads((trained / "tiny-cbv.json").read_text())
    assert card["training"]["stages"] == {"global": 2, "local": 2} and card["inputs"] == ["t1", "t2", "flair", "adc"]
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    last_step = torch.load(out / "global" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    more = synthlab_here("train", "hiersynth", "--datalist", brain_data / "datalist.json", "--out", out,
                         "--steps", "6", "--spacing", "6", "--batch-size", "4", "--accelerator", "cpu",
                         "--model-id", "tiny-cbv", "--cache", tmp_path / "cache", "--progress", "json")
    assert more.returncode == 0, more.stderr[-2000:]
    splits = read_datalist(brain_data / "datalist.json")
    kept = len(splits["training"]) + min(4, len(splits["validation"]))  # the default --validation-cases
    assert len(list((tmp_path / "cache").glob("*.pickle"))) == kept  # every case prepared is kept
    messages = [json.loads(line)["message"] for line in more.stdout.splitlines()]
    assert any("global stage of hiersynth (resuming" in m for m in messages)
    resumed = torch.load(out / "global" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert resumed > last_step  # trained on from the copied run (its export stays its best validation)
    card = json.loads((out / "tiny-cbv.json").read_text())
    assert card["training"]["stages"] == {"global": 3, "local": 3}


def test_training_under_ddp_with_two_processes(brain_data, tmp_path):
    result = synthlab("train", "hiersynth", "--datalist", brain_data / "datalist.json", "--out", tmp_path,
                      "--steps", "2", "--spacing", "6", "--batch-size", "2", "--devices", "2", "--accelerator", "cpu",
                      "--workers", "1", "--progress", "json", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    messages = [json.loads(line)["message"] for line in result.stdout.splitlines()]
    assert messages.count("training the global stage of hiersynth") == 2  # two ranks
    assert load_file(str(tmp_path / "hiersynth.safetensors"))


def test_cbv_of_a_mirrored_brain_is_the_mirrored_cbv(brain_data, cbv_registry, monkeypatch):
    """The default mirror average runs the 2.5D network on the left–right mirror image too: what it synthesises
    for a mirrored brain is exactly its synthesis for the brain, mirrored; one pass is not."""
    monkeypatch.setenv(REGISTRY_ENV, str(cbv_registry))
    model = CBVModel.registered(device="cpu")
    entry = next(e for e in read_datalist(brain_data / "datalist.json")["training"] if e["tumour"])
    case = read_entry(entry, model.contrasts, model.spacing)
    mirrored = CBVCase(BrainArrays(case.brain.image[..., ::-1].copy(), case.brain.mask[..., ::-1].copy(),
                                   case.brain.canvas))
    synthesised = model.synthesise_canvas(case)
    assert np.allclose(model.synthesise_canvas(mirrored), synthesised[..., ::-1], atol=1e-6)
    one_pass = replace(model, mirror=False)
    assert not np.allclose(one_pass.synthesise_canvas(mirrored), one_pass.synthesise_canvas(case)[..., ::-1],
                           atol=1e-6)
    assert not np.allclose(one_pass.synthesise_canvas(case), synthesised, atol=1e-6)


@pytest.fixture
def cbv_case(brain_data) -> dict:
    entry = next(e for e in json.loads((brain_data / "datalist.json").read_text())["training"] if e["tumour"])
    return {key: brain_data / entry[key] for key in ("t1", "t2", "flair", "adc", "mask", "label", "cbv")}


def test_cbv_command_writes_cbv_and_rcbv_on_the_input_grid(cbv_case, cbv_registry, tmp_path):
    out, rcbv = tmp_path / "cbv.nrrd", tmp_path / "rcbv.nrrd"
    inputs = [item for key in ("t1", "t2", "flair", "adc", "mask") for item in (f"--{key}", cbv_case[key])]
    result = synthlab_here("cbv", *inputs, "--tumour", cbv_case["label"], "--out", out, "--rcbv", rcbv,
                           "--progress", "json", env=synthlab_env(cbv_registry))
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout.splitlines()[-1])["result"]
    t1 = sitk.ReadImage(str(cbv_case["t1"]))
    cbv, relative = sitk.ReadImage(str(out)), sitk.ReadImage(str(rcbv))
    assert cbv.GetSize() == t1.GetSize() and cbv.GetOrigin() == t1.GetOrigin()
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(cbv_case["mask"]))) > 0
    values, ratio = sitk.GetArrayFromImage(cbv), sitk.GetArrayFromImage(relative)
    inside = mask & (np.abs(values) > 1e-3)
    assert np.allclose(ratio[inside], values[inside] / done["white_matter_cbv"], rtol=1e-4)
    assert done["warning"] == "synthetic CBV, not for diagnosis" and done["tumour_rcbv"] is not None
    assert "Tumour mean rCBV" in result.stderr


def test_cbv_command_reports_the_cards_measured_tumour_rcbv_bias(cbv_case, cbv_registry, tmp_path):
    """A card that records how far the model's tumour rCBV ran from the truth has that said beside the figure;
    a card without it (the fixture's) adds nothing."""
    model = Registry(cbv_registry).resolve("cbv", None)
    weights = shutil.copy(Registry(cbv_registry).root / model.weights, tmp_path / "biased.safetensors")
    card = json.loads((Registry(cbv_registry).root / model.card).read_text())
    card["metrics"]["tumour_rcbv_bias"] = {"mean_error": -0.43, "measured_on": "39 held-out phantom tumours"}
    (tmp_path / "biased.json").write_text(json.dumps(card))
    registry = Registry(tmp_path / "Models.json")
    registry.add(entry_for(registry, "biased", Path(weights), tmp_path / "biased.json", default=True))
    inputs = [item for key in ("t1", "t2", "flair", "adc", "mask") for item in (f"--{key}", cbv_case[key])]
    run = synthlab_here("cbv", *inputs, "--tumour", cbv_case["label"], "--out", tmp_path / "cbv.nrrd",
                        "--progress", "json", env=synthlab_env(registry.path))
    assert run.returncode == 0, run.stderr
    done = json.loads(run.stdout.splitlines()[-1])["result"]
    assert done["tumour_rcbv_bias"] == -0.43 and done["tumour_rcbv_bias_measured_on"] == "39 held-out phantom tumours"
    assert "On 39 held-out phantom tumours this model read tumour rCBV 0.43 below the true value" in run.stderr
    plain = CBVModel.from_files(Registry(cbv_registry).root / model.weights, "cpu")
    assert plain.tumour_rcbv_bias is None


@pytest.mark.parametrize(("case", "words"), [
    ("no adc", "--adc: missing"),
    ("constant", "--t2"),
    ("2D", "expected a 3D image"),
    ("far", "--flair"),
])
def test_bad_cbv_inputs_get_one_line_and_no_output(cbv_case, cbv_registry, tmp_path, case, words):
    inputs = {key: cbv_case[key] for key in ("t1", "t2", "flair", "adc", "mask")}
    if case == "no adc":
        del inputs["adc"]
    elif case == "constant":
        inputs["t2"] = tmp_path / "constant.nii.gz"
        sitk.WriteImage(sitk.ReadImage(str(cbv_case["t2"])) * 0 + 3, str(inputs["t2"]))
    elif case == "2D":
        inputs["t1"] = tmp_path / "slice.nii.gz"
        sitk.WriteImage(sitk.ReadImage(str(cbv_case["t1"]))[:, :, 40], str(inputs["t1"]))
    elif case == "far":
        moved = sitk.ReadImage(str(cbv_case["flair"]))
        moved.SetOrigin([value + 1000 for value in moved.GetOrigin()])
        inputs["flair"] = tmp_path / "moved.nii.gz"
        sitk.WriteImage(moved, str(inputs["flair"]))
    arguments = [item for key, path in inputs.items() for item in (f"--{key}", path)]
    result = synthlab_here("cbv", *arguments, "--out", tmp_path / "cbv.nrrd", "--rcbv",
                           tmp_path / "rcbv.nrrd", env=synthlab_env(cbv_registry))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert not (tmp_path / "cbv.nrrd").exists() and not (tmp_path / "rcbv.nrrd").exists()


def test_evaluate_cbv_reports_every_metric(brain_data, cbv_registry, tmp_path):
    report = tmp_path / "report.json"
    result = synthlab_here("evaluate", "cbv", "--datalist", brain_data / "datalist.json", "--split",
                           "training", "--report", report, env=synthlab_env(cbv_registry))
    assert result.returncode == 0, result.stderr
    summary = json.loads(report.read_text())["summary"]["tiny-cbv"]
    assert {"psnr", "mae", "ssim_brain", "ssim_tumour", "tumour_rcbv_abs_error", "seconds"} <= set(summary)
    assert summary["tumour_cases"] >= 1 and -1 <= summary["ssim_brain"] <= 1
    assert summary["rcbv_cases"] == summary["tumour_cases"]
    assert 0 <= summary["high_rcbv_found"] <= summary["high_rcbv_tumours"] <= summary["rcbv_cases"]
    one_pass = tmp_path / "one_pass.json"
    result = synthlab_here("evaluate", "cbv", "--datalist", brain_data / "datalist.json", "--split",
                           "training", "--report", one_pass, "--no-mirror", env=synthlab_env(cbv_registry))
    assert result.returncode == 0, result.stderr
    scored = json.loads(one_pass.read_text())
    assert scored["mirror"] is False and json.loads(report.read_text())["mirror"] is True
    assert scored["summary"]["tiny-cbv"]["ssim_brain"] != summary["ssim_brain"]


def test_demo_synthesises_cbv_beside_the_truth(cbv_registry, tmp_path):
    result = synthlab_here("demo", "--out", tmp_path / "demo", "--progress", "none",
                           env=synthlab_env(cbv_registry))
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())["CBV synthesis"]
    assert metrics["model"] == "tiny-cbv" and -1 <= metrics["ssim_brain"] <= 1 and metrics["mae"] > 0
    assert metrics["warning"] == "synthetic CBV, not for diagnosis"
    assert metrics["tumour_rcbv_true"] > 0 and metrics["tumour_rcbv_synthetic"] is not None
    folder = tmp_path / "demo" / "CBV_synthesis"
    synthetic, truth = (sitk.ReadImage(str(folder / f"{name}.nrrd")) for name in ("synthetic_cbv", "true_cbv"))
    difference = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "difference.nrrd")))
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "brain_mask.nrrd"))) > 0
    expected = sitk.GetArrayFromImage(synthetic) - sitk.GetArrayFromImage(truth)
    assert np.allclose(difference[brain], expected[brain], atol=1e-4)


@pytest.mark.parametrize(("arguments", "message"), [
    (["--contrasts", "t1,dwi"], "--contrasts: 't1,dwi': any of t1, t2, flair, adc"),
    (["--contrasts", "t1,t1"], "--contrasts: 't1,t1'"),
    (["--global-fraction", "1.5"], "--global-fraction: must be between 0 and 1"),
    (["--local-tumour-share", "-0.1"], "--local-tumour-share: must be between 0 and 1"),
    (["--tumour-share", "1.5"], "--tumour-share: must be between 0 and 1"),
    (["--steps", "0"], "--steps: must be at least 1"),
    (["--validation-cases", "0"], "--validation-cases: must be at least 1"),
    (["--variant", "unet", "--joint-steps", "3"], "--joint-steps: only for two-stage variants"),
])
def test_bad_training_options_get_one_line(brain_data, tmp_path, arguments, message):
    result = synthlab_here("train", "hiersynth", "--datalist", brain_data / "datalist.json", "--out",
                           tmp_path / "run", *arguments)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_paired_reports_compares_two_models_case_by_case(tmp_path):
    rows = [{"case": f"case_{i}", "ssim_brain": 0.7 + 0.01 * i, "psnr": 23.0, "ssim_tumour": 0.5} for i in range(4)]
    steps = (0.01, 0.02, 0.03, -0.02)
    better = [{**row, "ssim_brain": row["ssim_brain"] + step} for row, step in zip(rows, steps, strict=True)]
    (tmp_path / "a.json").write_text(json.dumps({"cases": {"old": rows}}))
    (tmp_path / "b.json").write_text(json.dumps({"cases": {"new": better, "other": rows[::-1]}}))

    def compare(b: str) -> subprocess.CompletedProcess:
        return run_benchmark_script("paired_reports.py", f"{tmp_path / 'a.json'}:old", f"{tmp_path / 'b.json'}:{b}")

    brain = next(line for line in compare("new").stdout.splitlines() if line.startswith("ssim_brain"))
    assert "B − A +0.0100 ± 0.0108" in brain and "B higher on 3 of 4" in brain  # mean 0.01, SD 0.0216 over 4
    mismatched = compare("other")
    assert mismatched.returncode != 0 and "same cases in the same order" in mismatched.stderr


def test_paired_reports_summarises_several_seeds(tmp_path):
    rows = [{"case": f"case_{i}", "ssim_brain": 0.7, "psnr": 23.0, "ssim_tumour": 0.5} for i in range(3)]
    seed_steps = {"s0": (0.03, 0.03, 0.03), "s1": (-0.01, -0.01, 0.02)}
    report = {"base": rows, **{seed: [{**row, "ssim_tumour": 0.5 + step} for row, step in zip(rows, steps, strict=True)]
                               for seed, steps in seed_steps.items()}}
    (tmp_path / "r.json").write_text(json.dumps({"cases": report}))
    path = tmp_path / "r.json"

    def compare(*models: str) -> subprocess.CompletedProcess:
        return run_benchmark_script("paired_reports.py", *(f"{path}:{model}" for model in models))

    lines = compare("base", "s0", "base", "s1").stdout.splitlines()
    summary = next(line for line in lines if line.startswith("ssim_tumour [over 2 pairs]"))
    # per-seed means +0.03 and 0.0; per case averaged over seeds: 0.01, 0.01, 0.025
    assert "per-pair B − A +0.0150" in summary and "B higher in 1 of 2" in summary
    assert "+0.0150 ± 0.0050" in summary.split("averaged over the pairs:")[1]
    odd = compare("base", "s0", "base")
    assert odd.returncode == 2 and "in pairs" in odd.stderr
    report["shuffled"] = rows[::-1]
    path.write_text(json.dumps({"cases": report}))
    mismatched = compare("base", "s0", "shuffled", "shuffled")
    assert mismatched.returncode != 0 and "pairs do not hold the same cases" in mismatched.stderr


def test_high_rcbv_counts_compare_each_tumour_with_the_high_grade_cut(tmp_path):
    rows = [{"case": "healthy", "ssim_brain": 0.8},
            {"case": "high, found", "tumour_rcbv": 1.9, "true_tumour_rcbv": 2.4},
            {"case": "high, missed", "tumour_rcbv": 1.2, "true_tumour_rcbv": 1.8},
            {"case": "low, called high", "tumour_rcbv": 1.8, "true_tumour_rcbv": 1.1},
            {"case": "low", "tumour_rcbv": 1.1, "true_tumour_rcbv": 1.3}]
    assert high_rcbv_counts(rows) == {"high_rcbv_tumours": 2, "high_rcbv_found": 1, "high_rcbv_false": 1}
    (tmp_path / "r.json").write_text(json.dumps({"cases": {"m": rows}}))
    run = run_benchmark_script("high_rcbv.py", f"{tmp_path / 'r.json'}:m")
    assert run.returncode == 0, run.stderr
    assert "mean tumour rCBV 1.50 (true 1.65, 4 tumours); above 1.75: 1 of the 2 truly above, and 1 truly below" in (
        run.stdout)


def test_cbv_figure_shows_each_model_beside_the_truth_in_the_tumour(brain_data, cbv_registry, tmp_path):
    weights = cbv_registry.parent / "tiny-cbv.safetensors"

    def figure(*arguments: str) -> subprocess.CompletedProcess:
        return run_benchmark_script("cbv_figure.py", "--datalist", brain_data / "datalist.json", "--split", "training",
                                    "--model", f"a={weights}", "--model", f"b={weights}", "--out", tmp_path / "f.png",
                                    *arguments)

    drawn = figure("--cases", "2")
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    width, height = sitk.ReadImage(str(tmp_path / "f.png")).GetSize()
    assert "2 cases, 2 models" in drawn.stdout and width > 1.5 * height  # 2 rows of FLAIR, truth and 2 models
    unknown = figure("--case", "nowhere/case_999")
    assert unknown.returncode == 2 and "none of nowhere/case_999" in unknown.stderr
    both = figure("--mirror", "both")
    assert both.returncode == 2 and "--mirror: on or off for a figure" in both.stderr
    healthy = tmp_path / "healthy.json"  # a split with no tumour case to draw
    healthy.write_text(json.dumps({"training": [e for e in read_datalist(brain_data / "datalist.json")["training"]
                                                if not e["tumour"]]}))
    no_tumour = run_benchmark_script("cbv_figure.py", "--datalist", healthy, "--split", "training", "--model",
                                     f"a={weights}", "--out", tmp_path / "g.png")
    assert no_tumour.returncode == 2 and "no case of this split has a tumour label" in no_tumour.stderr
    assert not (tmp_path / "g.png").exists()


def test_the_tumour_rcbv_error_is_the_panel_figure_from_synthetic_minus_true_cbv(cbv_case, cbv_registry):
    """rCBV is a ratio to normal white matter: a map off by a global scale has no error, one that doubles the
    tumour has the true rCBV as its error."""
    model = CBVModel.from_files(cbv_registry.parent / "tiny-cbv.safetensors", "cpu")
    case = read_case({key: str(cbv_case[key]) for key in ("t1", "t2", "flair", "adc", "cbv", "label")},
                     model.contrasts, model.spacing, str(cbv_case["mask"]))
    scaled = tumour_rcbv_metrics(3 * case.cbv, case, model)
    assert scaled["true_tumour_rcbv"] > 0 and abs(scaled["tumour_rcbv_error"]) < 1e-5
    doubled = tumour_rcbv_metrics(np.where(case.tumour, 2 * case.cbv, case.cbv), case, model)
    assert doubled["tumour_rcbv_error"] == pytest.approx(doubled["true_tumour_rcbv"], rel=1e-4)
    assert tumour_rcbv_metrics(case.cbv, replace(case, tumour=None), model) == {}
