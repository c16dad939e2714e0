"""SynthTumour: stage-1 shapes and intensities, carve mixing, brain masks, training and ``synthlab tumour``."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import SimpleITK as sitk
import torch
from conftest import TINY_TUMOUR, quiet, run_benchmark_script, synthlab, synthlab_env, synthlab_here
from safetensors.torch import load_file, save_file
from scipy import ndimage
from torch.utils.data import DataLoader

from synthlab.brain import BrainArrays, correct_bias, estimate_brain_mask, read_entry, zscore_inside
from synthlab.datalist import read_datalist
from synthlab.errors import InputError
from synthlab.labels import read_labels
from synthlab.metrics import dice
from synthlab.registry import REGISTRY_ENV, Registry, entry_for, sha256_of
from synthlab.synthtumour.edges import half_contrast_edges
from synthlab.synthtumour.fit import (
    CARVED_VALIDATION,
    HALF_CONTRAST_RULE,
    PSEUDO_LABEL_RULE,
    STAGE1_VALIDATION,
    TumourFitOptions,
    fit_synthtumour,
    pseudo_label,
)
from synthlab.synthtumour.inference import TumourModel
from synthlab.synthtumour.shapes import VOLUME_ML, NoisySphere, draw_tumour_shape
from synthlab.synthtumour.synthesis import SCALE_RANGES, SynthesiseTumourd, blurred_scaled, hard_scaled
from synthlab.synthtumour.training import (
    MixedTumours,
    SyntheticTumours,
    TumourSegModule,
    carve_mix,
    carved_pairs,
    carved_validation_cases,
    overlap_counts,
    pick_score,
    pooled_dice,
    validation_cases,
)

COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")


def ball(shape=(48, 48, 48), radius=18) -> np.ndarray:
    grid = np.indices(shape) - (np.array(shape) / 2)[:, None, None, None]
    return np.sqrt((grid ** 2).sum(0)) < radius


def test_noisy_sphere_is_irregular_reproducible_and_spacing_independent():
    sphere = NoisySphere(np.array([24.0, 24.0, 24.0]), 20.0, 0.4, 1.5, seed=3)
    fine = sphere.inside((48, 48, 48), (1.0, 1.0, 1.0))
    coarse = NoisySphere(np.array([12.0, 12.0, 12.0]), 20.0, 0.4, 1.5, seed=3).inside((24, 24, 24), (2.0, 2.0, 2.0))
    assert abs(fine.sum() - coarse.sum() * 8) / fine.sum() < 0.08  # same shape in mm at two spacings
    assert (sphere.inside((48, 48, 48), (1.0, 1.0, 1.0)) == fine).all()
    other = NoisySphere(np.array([24.0, 24.0, 24.0]), 20.0, 0.4, 1.5, seed=4).inside((48, 48, 48), (1.0,) * 3)
    assert (fine != other).sum() > 0.05 * fine.sum()
    # The outline is not a sphere: the surface distance from the centre varies by tens of percent.
    surface = np.argwhere(fine & ~np.pad(fine, 1)[2:, 1:-1, 1:-1])
    radii = np.linalg.norm(surface - 24, axis=1)
    assert radii.std() / radii.mean() > 0.1


def test_drawn_tumours_have_the_papers_volume_range_and_a_core_inside():
    brain = ball((80, 80, 80), 38)
    rng = np.random.default_rng(0)
    volumes = []
    for _ in range(6):
        shape = draw_tumour_shape(brain, (1.5, 1.5, 1.5), rng, with_core=True)
        volumes.append(shape.whole.sum() * 1.5 ** 3 / 1000)
        assert shape.core.any() and not (shape.core & ~shape.whole).any() and not (shape.whole & ~brain).any()
    assert VOLUME_ML[0] * 0.5 < min(volumes) and max(volumes) < VOLUME_ML[1] * 1.6
    assert max(volumes) - min(volumes) > 10


def test_intensity_models_scale_the_tumour_and_keep_the_rest():
    rng = np.random.default_rng(1)
    brain = ball()
    image = np.where(brain, 0.5 + 0.1 * rng.standard_normal(brain.shape), 0).astype(np.float32)[None]
    shape = draw_tumour_shape(brain, (2.0, 2.0, 2.0), rng, with_core=False)
    trained, label = blurred_scaled(image, ["flair"], shape, (2.0, 2.0, 2.0), np.random.default_rng(2))
    far = brain & (np.abs(trained[0] - image[0]) < 1e-6)
    assert far.sum() > 0.5 * brain.sum()  # most of the brain untouched
    inside = shape.whole & (ndimage_erode(shape.whole))
    ratio = trained[0][inside].mean() / image[0][inside].mean()
    assert SCALE_RANGES["flair"][0] * 0.9 < ratio < SCALE_RANGES["flair"][1] * 1.1
    assert trained[0][inside].std() < image[0][inside].std() * 0.9 * ratio  # blurred: less texture
    assert (label >= shape.whole).mean() > 0.99
    shifted, hard = hard_scaled(image, ["flair"], shape, np.random.default_rng(2))
    assert (hard == shape.whole).all() and (shifted[0][~shape.whole] == image[0][~shape.whole]).all()
    factor = shifted[0][shape.whole] / image[0][shape.whole]
    assert np.allclose(factor, factor[0], rtol=1e-4)  # one scale, texture kept


def ndimage_erode(mask):
    from scipy import ndimage

    return ndimage.binary_erosion(mask, iterations=2)


def test_the_transform_pastes_a_new_tumour_each_time_inside_the_brain():
    brain = ball()
    image = np.where(brain, 0.5, 0).astype(np.float32)[None]
    transform = SynthesiseTumourd(["flair"], [2.0] * 3)
    transform.set_random_state(5)
    first, second = (transform({"image": image, "mask": brain[None]}) for _ in range(2))
    assert first["label"].shape == (1, 48, 48, 48) and first["label"].sum() > 0
    assert not torch.equal(first["label"], second["label"])
    assert not (first["label"][0].numpy().astype(bool) & ~brain).any()


def test_carve_mix_puts_the_tumour_in_the_healthy_brain_at_its_scale():
    rng = np.random.default_rng(3)
    brain = ball()
    tumour_label = ball(radius=6)
    tumour_image = np.where(brain, 100 + 10 * rng.standard_normal(brain.shape), 0) + 80 * tumour_label
    healthy_image = np.where(brain, 0.5 + 0.05 * rng.standard_normal(brain.shape), 0)
    canvas = sitk.Image(48, 48, 48, sitk.sitkFloat32)
    tumour = BrainArrays(tumour_image[None].astype(np.float32), brain, canvas, tumour_label)
    healthy = BrainArrays(healthy_image[None].astype(np.float32), brain, canvas)
    mixed, label = carve_mix(tumour, healthy)
    assert (label == tumour_label).all()
    assert np.allclose(mixed[0][~label], healthy_image[~label], atol=1e-5)
    assert mixed[0][label].mean() > healthy_image[brain].mean() + 3 * healthy_image[brain].std()  # still bright
    assert mixed[0][label].mean() < 5  # on the healthy image's scale, not the tumour image's


def bright_tumour_case(seed: int, with_tumour: bool = True) -> BrainArrays:
    """A noisy ball brain on a 48³ canvas with (or without) a bright, labelled ball tumour of radius 8."""
    rng = np.random.default_rng(seed)
    brain, tumour_label = ball(), ball(radius=8)
    image = np.where(brain, 1 + 0.1 * rng.standard_normal(brain.shape), 0) + 2 * tumour_label * with_tumour
    return BrainArrays(image[None].astype(np.float32), brain, sitk.Image(48, 48, 48, sitk.sitkFloat32),
                       tumour_label if with_tumour else None)


def test_senior_augmentation_varies_the_patches_and_keeps_the_label_on_the_tumour():
    tumour = bright_tumour_case(4)

    def patches(augment: bool) -> list[dict]:
        dataset = MixedTumours([tumour], [], [32] * 3, samples=12, seed=1, augment=augment)
        return [dataset[index] for index in range(12)]

    plain, augmented = patches(False), patches(True)
    assert all(p["image"].shape == a["image"].shape == (1, 32, 32, 32) for p, a in zip(plain, augmented, strict=True))
    assert sum(not torch.equal(p["image"], a["image"]) for p, a in zip(plain, augmented, strict=True)) >= 6
    for patch in augmented:
        label = patch["label"][0] > 0
        assert set(torch.unique(patch["label"]).tolist()) <= {0.0, 1.0}  # still a hard label
        if label.sum() > 100:  # the label still sits on the bright tumour after the geometry changed
            assert float(patch["image"][0][label].mean()) > float(patch["image"][0][~label].mean()) + 1


def test_brain_mask_estimate_and_refusals(brain_data, tmp_path):
    case = json.loads((brain_data / "datalist.json").read_text())["training"][0]
    flair = sitk.ReadImage(str(brain_data / case["flair"]))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(brain_data / case["mask"]))) > 0
    estimate = sitk.GetArrayFromImage(estimate_brain_mask(flair)) > 0
    assert 2 * (estimate & truth).sum() / (estimate.sum() + truth.sum()) > 0.9
    with pytest.raises(InputError, match="brain mask"):
        estimate_brain_mask(sitk.ReadImage(str(COLIN27)))  # a head with skull and scalp
    with pytest.raises(InputError, match="no brain"):
        estimate_brain_mask(sitk.Image(40, 40, 40, sitk.sitkFloat32))


@pytest.fixture(scope="module")
def tumour_case(brain_data) -> dict:
    entry = json.loads((brain_data / "unlabelled.json").read_text())["training"][0]
    return {key: brain_data / entry[key] for key in ("flair", "t1", "t2", "mask")}


def test_senior_data_can_mix_in_stage1_tumours():
    tumour = bright_tumour_case(5)
    stage1 = SyntheticTumours([bright_tumour_case(6, with_tumour=False)], ("flair",), 6.0, [32] * 3, samples=40,
                              seed=2)

    def stage1_share(fraction: float) -> float:
        dataset = MixedTumours([tumour], [], [32] * 3, samples=40, seed=1, stage1=stage1, stage1_fraction=fraction)
        return float(np.mean([not np.array_equal(dataset.example(index)[2], tumour.label) for index in range(40)]))

    assert stage1_share(0.0) == 0.0
    assert 0.3 <= stage1_share(0.5) <= 0.7


def test_the_senior_takes_the_asked_share_of_real_images_and_carves_the_rest():
    tumour, healthy = bright_tumour_case(5), bright_tumour_case(6, with_tumour=False)

    def real_share(share: float) -> float:
        dataset = MixedTumours([tumour], [healthy], [32] * 3, samples=40, seed=1, real_share=share)
        return float(np.mean([np.array_equal(dataset.example(index)[0], tumour.image) for index in range(40)]))

    assert real_share(0.0) == 0.0 and real_share(1.0) == 1.0
    assert 0.3 <= real_share(0.5) <= 0.7
    no_healthy = MixedTumours([tumour], [], [32] * 3, samples=4, seed=1, real_share=0.0)
    assert np.array_equal(no_healthy.example(0)[0], tumour.image)  # nothing to carve into


def test_senior_data_with_no_tumour_in_any_pseudo_label_is_refused_in_one_line():
    unlabelled = bright_tumour_case(6)
    unlabelled.label = np.zeros_like(unlabelled.mask)  # the labeller found nothing in it
    with pytest.raises(InputError, match="no pseudo label holds a tumour in any of these images") as refused:
        MixedTumours([unlabelled], [], [32] * 3, samples=4, seed=1)
    assert refused.value.name == "--unlabelled" and "\n" not in str(refused.value)


def test_senior_data_can_hold_tumour_free_brains_with_empty_labels():
    tumour, healthy = bright_tumour_case(5), bright_tumour_case(6, with_tumour=False)

    def empty_share(fraction: float) -> float:
        dataset = MixedTumours([tumour], [healthy], [32] * 3, samples=40, seed=1, tumour_free_fraction=fraction)
        return float(np.mean([dataset[index]["label"].sum() == 0 for index in range(40)]))

    assert empty_share(0.0) == 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert 0.3 <= empty_share(0.5) <= 0.7
    assert not [warning for warning in caught if "foregrounds" in str(warning.message)]  # meant, so not warned
    empty = next(item for item in (MixedTumours([tumour], [healthy], [32] * 3, 40, 1, tumour_free_fraction=0.9)[i]
                                   for i in range(40)) if item["label"].sum() == 0)
    assert float(empty["image"].max()) < 6  # the healthy brain, z-scored: noise only (its tumour would be z ≈ 20)


def test_validation_has_each_brain_with_a_shifted_tumour_and_without_one():
    healthy = [bright_tumour_case(seed, with_tumour=False) for seed in (7, 8)]
    cases = validation_cases(healthy, ("flair",), 6.0)
    assert len(cases) == 4
    assert all(case["label"].sum() > 0 for case in cases[:2]) and all(case["label"].sum() == 0 for case in cases[2:])
    for with_tumour, without in zip(cases[:2], cases[2:], strict=True):
        inside = with_tumour["label"][0] > 0
        assert float(with_tumour["image"][0][inside].mean()) > float(without["image"][0][inside].mean()) + 0.5
        assert torch.equal(with_tumour["image"][0][~inside] != 0, without["image"][0][~inside] != 0)


def test_senior_validation_carves_each_held_out_tumour_into_a_brain_and_keeps_the_brains_without_one():
    tumours = [bright_tumour_case(seed) for seed in (3, 4, 5)]
    healthy = [bright_tumour_case(seed, with_tumour=False) for seed in (7, 8)]
    pairs = carved_pairs(tumours, healthy)
    assert [(id(tumour), id(brain)) for tumour, brain in pairs] == [(id(tumours[0]), id(healthy[0])),
                                                                    (id(tumours[1]), id(healthy[1])),
                                                                    (id(tumours[2]), id(healthy[0]))]  # brains in turn
    cases = carved_validation_cases(tumours, healthy)
    assert len(cases) == 3 + 2
    for index, case in enumerate(cases[:3]):
        tumour, brain = tumours[index], healthy[index % 2]
        label = case["label"][0] > 0
        assert torch.equal(label, torch.from_numpy(tumour.label & brain.mask))  # exactly the carved region
        as_it_was = torch.from_numpy(zscore_inside(brain.image, brain.mask))[0]
        assert float(case["image"][0][label].mean()) > float(as_it_was[label].mean()) + 1  # the bright tumour
        elsewhere = torch.from_numpy(brain.mask) & ~label  # the healthy brain, its z-score now counting the tumour
        assert np.corrcoef(case["image"][0][elsewhere], as_it_was[elsewhere])[0, 1] > 0.999
    for case, brain in zip(cases[3:], healthy, strict=True):
        assert case["label"].sum() == 0
        assert torch.equal(case["image"], torch.from_numpy(zscore_inside(brain.image, brain.mask)))


def test_pooled_validation_dice_counts_tumour_found_in_a_healthy_brain():
    tumour = torch.from_numpy(ball(radius=8))
    nothing = torch.zeros_like(tumour)
    perfect = overlap_counts(tumour, tumour)
    assert float(pooled_dice(perfect)) == pytest.approx(1.0)
    assert float(pooled_dice(perfect + overlap_counts(nothing, nothing))) == pytest.approx(1.0)
    false_tumour = overlap_counts(tumour, nothing)  # the same volume found in a tumour-free brain
    assert float(pooled_dice(perfect + false_tumour)) == pytest.approx(2 / 3)


def test_the_validation_score_is_the_dice_pooled_over_every_case():
    cases = validation_cases([bright_tumour_case(seed, with_tumour=False) for seed in (7, 8)], ("flair",), 6.0)
    module = TumourSegModule(1, (4, 8, 16))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    [logged] = trainer.validate(module, DataLoader(cases, batch_size=1), verbose=False)
    with torch.no_grad():
        counts = sum(overlap_counts(module(case["image"][None]).argmax(1) > 0, case["label"][None, 0] > 0)
                     for case in cases)
    assert counts[1] > 0  # the untrained network finds "tumour", some of it in the tumour-free brains
    assert logged["val_score"] == pytest.approx(float(pooled_dice(counts)), abs=1e-6)


def test_a_pseudo_label_drops_specks_and_fills_the_core_the_junior_left_out():
    probability = np.zeros((40, 40, 40), np.float32)
    shell = ball((40, 40, 40), 12) & ~ball((40, 40, 40), 6)
    shell[:20, 18:22, 18:22] = False  # the dark core opens to the outside through a channel: no 3D hole
    probability[shell] = 0.9
    probability[2:4, 2:4, 2:4] = 0.9  # 8 voxels of 1 mm: a speck inference would remove too
    probability[ball((40, 40, 40), 12) & ~shell] = 0.3
    label = pseudo_label(probability, spacing=1.0)
    assert not label[:5, :5, :5].any()
    core = ball((40, 40, 40), 6)
    assert label[core].mean() > 0.9 and label[shell].all()
    assert not label[~ball((40, 40, 40), 12)].any()


def test_a_pseudo_outline_moves_to_the_half_contrast_edge_by_at_most_one_voxel():
    truth = ball((40, 40, 40), 8)
    noise = np.random.default_rng(0).normal(0.0, 0.02, truth.shape)
    flair = ndimage.gaussian_filter(np.where(truth, 1.6, 0.8), 1.5) + noise  # a tumour whose border fades
    brain = np.ones(truth.shape, bool)
    for outline in (ndimage.binary_dilation(truth), ndimage.binary_erosion(truth)):  # a voxel out, a voxel in
        moved = half_contrast_edges(outline, flair, brain)
        assert dice(moved, truth) > dice(outline, truth) + 0.05
        assert not (moved & ~ndimage.binary_dilation(outline)).any()
        assert moved[ndimage.binary_erosion(outline)].all()
    outside = ndimage.binary_dilation(truth)
    assert np.array_equal(half_contrast_edges(outside, 2.4 - flair, brain), outside)  # not brighter: left alone


def test_training_runs_both_stages_and_resumes(brain_data, tumour_registry, tumour_cache, tmp_path):
    trained = Path(tumour_registry).parent
    assert (trained / "junior" / "junior.safetensors").is_file() and (trained / "senior" / "senior.safetensors").is_file()
    assert len(list((trained / "pseudo_labels").glob("*.npz"))) == 5
    card = json.loads((trained / "tiny-tumour.json").read_text())
    assert card["inputs"] == ["flair"] and card["stage"] == "senior" and "validation_dice" in card["metrics"]
    assert card["intensity"]["bias_correction"] == "N4"  # the default, so inference corrects the bias too
    assert card["pseudo_labels"] == PSEUDO_LABEL_RULE
    # The junior is chosen on the stage-1 validation, the senior on the held-out tumour image carved into brains.
    assert json.loads((trained / "junior" / "junior.json").read_text())["metrics"]["validation"] == STAGE1_VALIDATION
    assert card["metrics"]["validation"] == CARVED_VALIDATION
    assert len(list((trained / "pseudo_labels_validation").glob("*.npz"))) == 1
    assert TumourModel.from_files(trained / "tiny-tumour.safetensors", "cpu").bias_levels == 3
    out = tmp_path / "run"
    shutil.copytree(trained, out)  # the session's registry keeps its own files
    arguments = ["train", "synthtumour", "--healthy", brain_data / "healthy.json", "--unlabelled",
                 brain_data / "unlabelled.json", "--out", out, "--model-id", "tiny-tumour", "--spacing", "6",
                 "--patch", "16", "--cache", tumour_cache, "--filters", "4,8,16", "--progress", "json"]
    other = synthlab_here(*arguments[:-2], "--filters", "8,16,32", "--junior-steps", "5")
    assert other.returncode == 2 and "resume with the same settings" in other.stderr
    for other_preparation in (["--no-bias-correction"], ["--bias-fit-levels", "2"]):
        unprepared = synthlab_here(*arguments, *other_preparation)
        assert unprepared.returncode == 2 and "prepared with other intensity" in unprepared.stderr
    same = synthlab_here(*arguments, "--junior-steps", "3", "--senior-steps", "3")
    assert same.returncode == 0, same.stderr
    assert "junior already trained" in same.stdout and "senior already trained" in same.stdout
    longer = synthlab_here(*arguments, "--junior-steps", "5", "--senior-steps", "3")
    assert longer.returncode == 0, longer.stderr
    assert "resuming from" in longer.stdout
    assert json.loads((out / "junior" / "junior.json").read_text())["training"]["steps"] == 5
    # A different junior (here: its weights changed) labels the images again and the senior is retrained.
    labels_before = (out / "pseudo_labels" / "labeller.sha256").read_text()
    weights = load_file(str(out / "junior" / "junior.safetensors"))
    save_file({key: value + 0.01 for key, value in weights.items()}, str(out / "junior" / "junior.safetensors"))
    changed = synthlab_here(*arguments, "--junior-steps", "5", "--senior-steps", "3")
    assert changed.returncode == 0, changed.stderr
    assert "junior already trained" in changed.stdout and "senior already trained" not in changed.stdout
    assert "pseudo labels 1/5" in changed.stdout
    assert (out / "pseudo_labels" / "labeller.sha256").read_text() != labels_before
    # Labels made by an older rule (its marker held the junior's hash alone) are made again.
    marker = out / "pseudo_labels" / "labeller.sha256"
    marker.write_text(marker.read_text().split("\n")[0])
    relabelled = synthlab_here(*arguments, "--junior-steps", "5", "--senior-steps", "3")
    assert relabelled.returncode == 0, relabelled.stderr
    assert "pseudo labels 1/5" in relabelled.stdout and marker.read_text().endswith(PSEUDO_LABEL_RULE)

    def largest_change_from_junior() -> float:
        junior, senior = (load_file(str(out / stage / f"{stage}.safetensors")) for stage in ("junior", "senior"))
        return max(float((senior[key] - junior[key]).abs().max()) for key in junior)

    assert largest_change_from_junior() > 0.1  # by default the senior starts from scratch
    # Starting from the junior retrains the senior (not "already trained"), and one step moves it little.
    started = synthlab_here(*arguments, "--junior-steps", "5", "--senior-steps", "1", "--senior-from-junior")
    assert started.returncode == 0, started.stderr
    assert "senior already trained" not in started.stdout
    assert largest_change_from_junior() < 0.01
    card = json.loads((out / "senior" / "senior.json").read_text())
    assert card["training"]["started_from"] == str(out / "junior" / "junior.safetensors")
    assert card["training"]["augmented"] is False
    augmented = synthlab_here(*arguments, "--junior-steps", "5", "--senior-steps", "1",
                              "--senior-augmentation", "--senior-stage1", "0.5", "--senior-tumour-free", "0.25")
    assert augmented.returncode == 0, augmented.stderr
    assert "senior already trained" not in augmented.stdout  # another kind of senior: trained again
    training = json.loads((out / "senior" / "senior.json").read_text())["training"]
    assert training["augmented"] is True and training["stage1_fraction"] == 0.5
    assert training["tumour_free_fraction"] == 0.25
    # With --senior-ema the senior is trained again, and it exports the checkpoint's average over its steps.
    averaged = synthlab_here(*arguments, "--junior-steps", "5", "--senior-steps", "3", "--senior-ema", "0.5")
    assert averaged.returncode == 0, averaged.stderr
    assert "senior already trained" not in averaged.stdout
    assert json.loads((out / "senior" / "senior.json").read_text())["training"]["ema_decay"] == 0.5
    checkpoint = torch.load(out / "senior" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 3  # an average over the three steps
    exported = load_file(str(out / "senior" / "senior.safetensors"))
    for key, value in exported.items():
        assert torch.equal(value, checkpoint["state_dict"][f"network.{key}"])
    # Outlines moved to the half-contrast edge are another rule: the images are labelled again, the senior retrained.
    edged = synthlab_here(*arguments, "--junior-steps", "5", "--senior-steps", "1", "--pseudo-label-edges",
                          "half-contrast")
    assert edged.returncode == 0, edged.stderr
    assert "pseudo labels 1/5" in edged.stdout and "senior already trained" not in edged.stdout
    assert marker.read_text().endswith(HALF_CONTRAST_RULE)
    rule = json.loads((out / "tiny-tumour.json").read_text())["pseudo_labels"]
    assert rule == f"{PSEUDO_LABEL_RULE}, {HALF_CONTRAST_RULE}"


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_rate_schedule_anneals_each_stage_over_its_steps(brain_data, tumour_cache, tmp_path, schedule):
    def train(senior_steps: str):
        return synthlab_here("train", "synthtumour", "--healthy", brain_data / "healthy.json", "--unlabelled",
                             brain_data / "unlabelled.json", "--out", tmp_path, "--spacing", "6", "--patch", "16",
                             "--filters", "4,8,16", "--accelerator", "cpu", "--junior-steps", "2",
                             "--senior-steps", senior_steps, "--learning-rate", "0.002", "--rate-schedule", schedule,
                             "--cache", tumour_cache, "--progress", "none")

    result = train("3")
    assert result.returncode == 0, result.stderr
    for stage in ("junior", "senior"):
        saved = torch.load(tmp_path / stage / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert saved["global_step"] == (2 if stage == "junior" else 3)
        rate = saved["optimizer_states"][0]["param_groups"][0]["lr"]
        assert rate == pytest.approx(0.0 if schedule == "cosine" else 0.002, abs=1e-12)
        assert json.loads((tmp_path / stage / f"{stage}.json").read_text())["training"]["rate_schedule"] == schedule
    if schedule == "cosine":  # a cosine run cannot be resumed to train longer: its rate has already reached 0
        longer = train("5")
        assert longer.returncode == 2 and "cosine_steps 3 (now 5)" in longer.stderr, longer.stderr


def test_the_senior_is_chosen_only_among_validations_from_its_pick_step_on(brain_data, tumour_cache, tmp_path):
    options = TumourFitOptions(junior_steps=1, senior_steps=48, senior_pick_from=0.5, model_id="picked",
                               cache=tumour_cache, **TINY_TUMOUR)
    fit_synthtumour(brain_data / "healthy.json", brain_data / "unlabelled.json", tmp_path, options,
                    lambda fraction, message: None)
    card = json.loads((tmp_path / "picked.json").read_text())
    assert card["training"]["picked_from_step"] == 24
    with (tmp_path / "senior" / "lightning_logs" / "version_0" / "metrics.csv").open() as log:
        validations = [(int(row["step"]), float(row["val_score"])) for row in csv.DictReader(log) if row["val_score"]]
    assert sum(step < 24 for step, _ in validations) >= 1 and sum(step >= 24 for step, _ in validations) >= 2
    best = max(score for step, score in validations if step >= 24)
    assert card["metrics"]["validation_dice"] == pytest.approx(best)
    chosen = torch.load(tmp_path / "senior" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert chosen["global_step"] >= 24
    assert pick_score(torch.tensor(0.9), 19, 20) < pick_score(torch.tensor(0.0), 20, 20)  # a late 0 beats an early 0.9
    # The junior keeps every validation, and its checkpoint state keys on val_score as before (runs resume alike).
    assert json.loads((tmp_path / "junior" / "junior.json").read_text())["training"]["picked_from_step"] == 0
    states = torch.load(tmp_path / "junior" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert any("'monitor': 'val_score'" in key for key in states["callbacks"])
    assert not any("val_pick" in key for key in states["callbacks"])


def test_a_second_round_trains_a_new_senior_on_the_first_seniors_pseudo_labels(brain_data, tmp_path):
    options = TumourFitOptions(junior_steps=1, senior_steps=2, senior_rounds=2, model_id="two-rounds",
                               cache=tmp_path / "cache", **TINY_TUMOUR)
    messages = []
    fit_synthtumour(brain_data / "healthy.json", brain_data / "unlabelled.json", tmp_path, options,
                    lambda fraction, message: messages.append(message))
    junior, first, second = (tmp_path / stage / f"{stage}.safetensors" for stage in ("junior", "senior", "senior_round2"))
    for folder, labeller in (("pseudo_labels", junior), ("pseudo_labels_validation", junior),
                             ("pseudo_labels_round2", first), ("pseudo_labels_validation_round2", first)):
        assert (tmp_path / folder / "labeller.sha256").read_text().split("\n")[0] == sha256_of(labeller)
        assert list((tmp_path / folder).glob("case_*.npz"))
    card = json.loads((tmp_path / "two-rounds.json").read_text())
    assert card["training"]["senior_rounds"] == 2 and card["stage"] == "senior_round2"
    assert card["pseudo_labels_by"] == str(first) and card["junior_weights"] == str(junior)
    exported, last, earlier = (load_file(str(path)) for path in (tmp_path / "two-rounds.safetensors", second, first))
    assert all(torch.equal(exported[key], last[key]) for key in last)
    assert any(not torch.equal(last[key], earlier[key]) for key in last)
    read = [entry for name in ("healthy", "unlabelled") for split in ("training", "validation")
            for entry in read_datalist(brain_data / f"{name}.json")[split]]
    assert len(list((tmp_path / "cache").glob("*.pickle"))) == len(read)  # every image prepared is kept
    # Each round resumes on its own: a rerun trains nothing again.
    messages.clear()
    fit_synthtumour(brain_data / "healthy.json", brain_data / "unlabelled.json", tmp_path, options,
                    lambda fraction, message: messages.append(message))
    assert {"junior", "senior", "senior_round2"} <= {message.split(" already trained")[0] for message in messages}
    assert not any(message.startswith("training the") for message in messages)


def test_an_earlier_model_can_label_stage_2_in_place_of_a_junior(brain_data, tumour_registry, tumour_cache,
                                                                tmp_path):
    labeller = tumour_registry.parent / "tiny-tumour.safetensors"
    options = TumourFitOptions(junior_steps=1, senior_steps=1, model_id="relabelled", labeller=labeller,
                               cache=tumour_cache, **TINY_TUMOUR)
    fit_synthtumour(brain_data / "healthy.json", brain_data / "unlabelled.json", tmp_path, options, quiet)
    assert not (tmp_path / "junior").exists()
    for folder in ("pseudo_labels", "pseudo_labels_validation"):
        assert (tmp_path / folder / "labeller.sha256").read_text().split("\n")[0] == sha256_of(labeller)
    card = json.loads((tmp_path / "relabelled.json").read_text())
    assert card["pseudo_labels_by"] == str(labeller) and card["junior_weights"] is None
    assert card["training"]["steps"] == 1
    # --senior-from-junior starts the senior from the labeller, and its recipe says so.
    started = TumourFitOptions(**{**options.__dict__, "senior_from_junior": True})
    fit_synthtumour(brain_data / "healthy.json", brain_data / "unlabelled.json", tmp_path, started, quiet)
    assert json.loads((tmp_path / "senior" / "senior.json").read_text())["training"]["started_from"] == str(labeller)
    assert "from the --labeller model" in (tmp_path / "senior" / "source.sha256").read_text()


def test_a_labeller_that_prepares_images_otherwise_is_refused_in_one_line(brain_data, tumour_registry, tmp_path):
    labeller = tumour_registry.parent / "tiny-tumour.safetensors"
    other_spacing = {**TINY_TUMOUR, "spacing": TINY_TUMOUR["spacing"] + 1}
    with pytest.raises(InputError, match="--labeller: was trained on images prepared with other spacing"):
        fit_synthtumour(brain_data / "healthy.json", brain_data / "unlabelled.json", tmp_path / "run",
                        TumourFitOptions(labeller=labeller, **other_spacing), quiet)
    with pytest.raises(InputError, match="--labeller: .*give a tumour model's weights with its card"):
        fit_synthtumour(brain_data / "healthy.json", brain_data / "unlabelled.json", tmp_path / "run",
                        TumourFitOptions(labeller=tmp_path / "none.safetensors", **TINY_TUMOUR), quiet)
    assert not (tmp_path / "run").exists()


def test_without_held_out_tumour_images_the_senior_is_chosen_on_the_stage1_validation(brain_data, tumour_cache,
                                                                                      tmp_path):
    unlabelled = json.loads((brain_data / "unlabelled.json").read_text())
    datalist = brain_data / "unlabelled_without_validation.json"  # beside the cases its relative paths name
    datalist.write_text(json.dumps({**unlabelled, "validation": []}))
    messages = []
    options = TumourFitOptions(junior_steps=1, senior_steps=1, model_id="no-held-out", cache=tumour_cache,
                               **TINY_TUMOUR)
    fit_synthtumour(brain_data / "healthy.json", datalist, tmp_path, options, lambda f, message: messages.append(message))
    assert any("no held-out tumour images" in message for message in messages)
    assert json.loads((tmp_path / "no-held-out.json").read_text())["metrics"]["validation"] == STAGE1_VALIDATION
    assert not (tmp_path / "pseudo_labels_validation").exists()


def test_training_under_ddp_with_two_processes(brain_data, tumour_cache, tmp_path):
    result = synthlab("train", "synthtumour", "--healthy", brain_data / "healthy.json", "--unlabelled",
                      brain_data / "unlabelled.json", "--out", tmp_path, "--spacing", "6", "--patch", "16",
                      "--junior-steps", "2", "--senior-steps", "2", "--devices", "2", "--accelerator", "cpu",
                      "--workers", "1", "--senior-ema", "0.5", "--cache", tumour_cache, "--progress", "json",
                      timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    messages = [json.loads(line)["message"] for line in result.stdout.splitlines()]
    assert messages.count("training the junior") == 2 and messages.count("training the senior") == 2  # two ranks
    # The senior's moving average works across ranks: it counts both steps and is what was exported.
    checkpoint = torch.load(tmp_path / "senior" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 2
    exported = load_file(str(tmp_path / "synthtumour-senior.safetensors"))
    for key, value in exported.items():
        assert torch.equal(value, checkpoint["state_dict"][f"network.{key}"])


def test_tumour_command_writes_the_segment_and_reports_its_volume(tumour_case, tumour_registry, tmp_path):
    out, probability = tmp_path / "tumour.seg.nrrd", tmp_path / "probability.nii.gz"
    result = synthlab_here("tumour", "--flair", tumour_case["flair"], "--mask", tumour_case["mask"],
                           "--out", out, "--probability", probability, "--progress", "json",
                           env=synthlab_env(tumour_registry))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    done = events[-1]["result"]
    labels = read_labels(out)
    flair = sitk.ReadImage(str(tumour_case["flair"]))
    assert labels.image.GetSize() == flair.GetSize() and labels.image.GetOrigin() == flair.GetOrigin()
    assert labels.segments[0].name == "Tumour" and labels.segments[0].terminology["type"][2] == "Neoplasm"
    assert done["volume_ml"] == pytest.approx(labels.volume_ml("Tumour"), abs=0.01)
    assert sitk.ReadImage(str(probability)).GetSize() == flair.GetSize()
    assert any(0 < event["progress"] < 1 for event in events)
    one_pass = tmp_path / "one_pass.nii.gz"
    result = synthlab_here("tumour", "--flair", tumour_case["flair"], "--mask", tumour_case["mask"], "--out",
                           tmp_path / "one_pass.seg.nrrd", "--probability", one_pass, "--no-mirror",
                           env=synthlab_env(tumour_registry))
    assert result.returncode == 0, result.stderr
    averaged, single = (sitk.GetArrayFromImage(sitk.ReadImage(str(path))) for path in (probability, one_pass))
    assert not np.allclose(averaged, single, atol=1e-4)  # the default also ran the mirror image


def test_tumour_probability_of_a_mirrored_brain_is_the_mirrored_probability(brain_data, tumour_registry,
                                                                           monkeypatch):
    monkeypatch.setenv(REGISTRY_ENV, str(tumour_registry))
    model = TumourModel.registered(device="cpu")
    entry = next(e for e in read_datalist(brain_data / "unlabelled.json")["training"])
    case = model.read_entry(entry)
    mirrored = BrainArrays(case.image[..., ::-1].copy(), case.mask[..., ::-1].copy(), case.canvas)
    assert np.allclose(model.segment_canvas(mirrored), model.segment_canvas(case)[..., ::-1], atol=1e-6)


def test_a_model_that_finds_nothing_says_so(tumour_case, tumour_registry, tmp_path):
    """A healthy answer is an empty segmentation and the words 'No tumour found', not noise."""
    out_registry = Path(tumour_registry).parent
    weights = load_file(str(out_registry / "tiny-tumour.safetensors"))
    last_bias = next(key for key in reversed(list(weights)) if key.endswith("bias") and weights[key].numel() == 2)
    weights[last_bias] = torch.tensor([50.0, -50.0])  # the output layer always says background
    silent = tmp_path / "silent.safetensors"
    save_file(weights, str(silent))
    silent.with_suffix(".json").write_text((out_registry / "tiny-tumour.json").read_text())
    registry = Registry(tmp_path / "Models.json")
    registry.add(entry_for(registry, "silent", silent, silent.with_suffix(".json"), default=True))
    result = synthlab_here("tumour", "--flair", tumour_case["flair"], "--mask", tumour_case["mask"], "--out",
                           tmp_path / "none.seg.nrrd", env=synthlab_env(registry.path))
    assert result.returncode == 0, result.stderr
    assert "No tumour found" in result.stdout
    assert not sitk.GetArrayFromImage(read_labels(tmp_path / "none.seg.nrrd").image).any()


@pytest.mark.parametrize(("case", "words"), [
    ("missing", "--flair: file not found"),
    ("constant", "--flair"),
    ("2D", "expected a 3D image"),
    ("far mask", "--mask"),
    ("skull on", "brain mask"),
])
def test_bad_tumour_inputs_get_one_line(tumour_case, tumour_registry, tmp_path, case, words):
    flair, mask = tumour_case["flair"], tumour_case["mask"]
    if case == "missing":
        flair = tmp_path / "nope.nii.gz"
    elif case == "constant":
        image = sitk.ReadImage(str(flair)) * 0 + 7
        flair = tmp_path / "constant.nii.gz"
        sitk.WriteImage(image, str(flair))
    elif case == "2D":
        flair = tmp_path / "slice.nii.gz"
        sitk.WriteImage(sitk.ReadImage(str(tumour_case["flair"]))[:, :, 40], str(flair))
    elif case == "far mask":
        moved = sitk.ReadImage(str(mask))
        moved.SetOrigin([value + 1000 for value in moved.GetOrigin()])
        mask = tmp_path / "moved_mask.nii.gz"
        sitk.WriteImage(moved, str(mask))
    elif case == "skull on":
        flair, mask = COLIN27, None
    arguments = ["tumour", "--flair", flair, "--out", tmp_path / "out.seg.nrrd"] + (["--mask", mask] if mask else [])
    result = synthlab_here(*arguments, env=synthlab_env(tumour_registry))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert not (tmp_path / "out.seg.nrrd").exists()


def test_read_entry_puts_every_case_on_a_brain_centred_canvas(brain_data):
    entry = json.loads((brain_data / "datalist.json").read_text())["training"][0]
    entry = {key: str(brain_data / value) if isinstance(value, str) and "/" in value else value
             for key, value in entry.items()}
    case = read_entry(entry, ("flair", "t2"), TINY_TUMOUR["spacing"])
    assert case.image.shape == (2, 32, 32, 32) and case.mask.any()
    assert 0.5 < np.percentile(case.image[0][case.mask], 99) < 1.5
    centre = np.argwhere(case.mask).mean(0)
    assert np.all(np.abs(centre - 15.5) < 3)


def test_bias_correction_flattens_a_smooth_field_and_keeps_the_tissue_contrast():
    rng = np.random.default_rng(0)
    brain = ball((48, 48, 48), 21)
    tissue = np.where(ball((48, 48, 48), 12), 1.0, 0.6) * brain
    field = 1 + 0.2 * np.linspace(-1, 1, 48)[:, None, None] + 0.1 * np.linspace(-1, 1, 48)[None, :, None]
    image = (tissue * field + rng.normal(0, 0.01, tissue.shape)) * brain
    corrected = correct_bias(image.astype(np.float32), brain, 2.0)
    inner, shell = ball((48, 48, 48), 10), brain & ~ball((48, 48, 48), 14) & ball((48, 48, 48), 19)

    def spread(values, region):  # coefficient of variation inside one tissue
        return values[region].std() / values[region].mean()
    assert spread(corrected, shell) < 0.5 * spread(image, shell)
    assert spread(corrected, inner) < 0.5 * spread(image, inner)
    contrast = corrected[inner].mean() / corrected[shell].mean()
    assert abs(contrast - 1 / 0.6) < 0.15


def test_fewer_bias_fitting_levels_keep_more_of_a_large_faint_lesion():
    """A 24 mm-wide, 40 % brighter Gaussian lesion under a smooth coil field: three levels take most of its contrast
    into the field, two keep most of it, and both still flatten the field outside it."""
    rng = np.random.default_rng(0)
    shape = (96, 96, 96)
    brain = ball(shape, 42)
    distance2 = sum((axis - centre) ** 2 for axis, centre in zip(np.indices(shape), (48, 48, 30), strict=True))
    lesion = distance2 <= 12**2
    field = 1 + 0.2 * np.linspace(-1, 1, 96)[:, None, None] + 0.1 * np.linspace(-1, 1, 96)[None, :, None]
    image = (((1 + 0.4 * np.exp(-distance2 / (2 * 12**2))) * field + rng.normal(0, 0.02, shape)) * brain)
    rest = brain & (distance2 > 16**2)

    def contrast_and_spread(levels):
        corrected = correct_bias(image.astype(np.float32), brain, 2.0, levels)
        return corrected[lesion].mean() / corrected[rest].mean(), corrected[rest].std() / corrected[rest].mean()

    (contrast3, spread3), (contrast2, spread2) = contrast_and_spread(3), contrast_and_spread(2)
    assert contrast3 < 1.1 < 1.15 < contrast2
    original_spread = image[rest].std() / image[rest].mean()
    assert max(spread2, spread3) < 0.4 * original_spread


def test_bias_correction_in_reading_spares_adc(brain_data):
    entry = json.loads((brain_data / "datalist.json").read_text())["training"][0]
    entry = {key: str(brain_data / value) if isinstance(value, str) and "/" in value else value
             for key, value in entry.items()}
    plain = read_entry(entry, ("flair", "adc"), TINY_TUMOUR["spacing"])
    corrected = read_entry(entry, ("flair", "adc"), TINY_TUMOUR["spacing"], bias_levels=3)
    assert np.array_equal(plain.image[1], corrected.image[1])
    assert np.abs(plain.image[0] - corrected.image[0])[plain.mask].mean() > 1e-3


def test_evaluate_tumour_scores_the_model_and_the_baseline(brain_data, tumour_registry, tmp_path):
    report = tmp_path / "report.json"
    result = synthlab_here("evaluate", "tumour", "--datalist", brain_data / "datalist.json", "--report",
                           report, "--split", "validation", "--progress", "none",
                           env=synthlab_env(tumour_registry))
    assert result.returncode == 0, result.stderr
    content = json.loads(report.read_text())
    assert set(content["summary"]) == {"tiny-tumour", "intensity baseline"}
    assert content["cases"] and all(0 <= row["intensity baseline"]["dice"] <= 1 for row in content["cases"])
    assert 0.5 <= content["baseline_threshold"] <= 4.0 and content["threshold_chosen_on"] == "training"
    assert content["mirror"] is True  # scored as `synthlab tumour` runs by default


def test_intensity_baseline_finds_a_bright_lesion_and_its_threshold():
    from synthlab.synthtumour.evaluation import baseline_mask, choose_threshold

    rng = np.random.default_rng(0)
    brain, lesion = ball(), ball(radius=7)
    cases = []
    for _ in range(2):
        image = np.where(brain, 1 + 0.05 * rng.standard_normal(brain.shape), 0) + 0.6 * lesion
        cases.append(BrainArrays(image[None].astype(np.float32), brain, sitk.Image(8, 8, 8, sitk.sitkFloat32),
                                 lesion))
    threshold = choose_threshold(cases, 2.0)
    found = baseline_mask(cases[0], threshold, 2.0)
    assert 2 * (found & lesion).sum() / (found.sum() + lesion.sum()) > 0.9


def test_false_islands_are_the_components_that_miss_the_tumour():
    from synthlab.synthtumour.evaluation import false_islands

    brain, tumour = ball(), ball(radius=5)
    image = np.where(brain, 1.0, 0) + tumour
    case = BrainArrays(image[None].astype(np.float32), brain, sitk.Image(8, 8, 8, sitk.sitkFloat32), tumour)
    island = np.zeros_like(brain)
    island[7:9, 22:26, 22:26] = True  # 32 voxels at the brain's edge, away from the tumour
    assert island.any() and not tumour[island].any() and brain[island].all()
    found = false_islands(tumour | island, case, 2.0)
    assert found["false_islands_ml"] == pytest.approx(32 * 8 / 1000)
    assert found["false_island_depth_mm"] < 6 and found["false_island_flair_z"] < 0
    assert false_islands(tumour, case, 2.0)["false_islands_ml"] == 0


def test_demo_segments_the_tumour_with_the_registered_model(tumour_registry, tmp_path):
    result = synthlab_here("demo", "--out", tmp_path / "demo", "--progress", "none",
                           env=synthlab_env(tumour_registry))
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())["tumour segmentation"]
    assert metrics["model"] == "tiny-tumour" and metrics["true_volume_ml"] > 0 and 0 <= metrics["dice"] <= 1
    assert (tmp_path / "demo" / "tumour_segmentation" / "tumour_segmentation.seg.nrrd").is_file()
    assert (tmp_path / "demo" / "overview.png").stat().st_size > 10_000


@pytest.mark.parametrize(("arguments", "message"), [
    (["--channels", "t1,flair"], "--channels: 't1,flair': FLAIR first"),
    (["--channels", "flair,adc"], "--channels: 'flair,adc': FLAIR first"),
    (["--patch", "20"], "--patch: must be a multiple of 8"),
    (["--filters", "16"], "--filters: '16': give at least two positive counts"),
    (["--filters", "a,b"], "--filters: 'a,b': give at least two positive counts"),
    (["--junior-steps", "0"], "--junior-steps: must be at least 1"),
    (["--senior-stage1", "1"], "--senior-stage1: must be at least 0 and below 1"),
    (["--senior-tumour-free", "-0.1"], "--senior-tumour-free: must be at least 0 and below 1"),
    (["--senior-ema", "1"], "--senior-ema: must be at least 0 and below 1"),
    (["--senior-pick-from", "1.5"], "--senior-pick-from: must be at least 0 and below 1"),
    (["--senior-real-share", "1.5"], "--senior-real-share: must be 0 to 1 (got 1.5)"),
    (["--senior-rounds", "0"], "--senior-rounds: must be at least 1"),
    (["--bias-fit-levels", "0"], "--bias-fit-levels: must be 1 to 4 (got 0)"),
    (["--workers", "-1"], "--workers: must be 0 or more (got -1)"),
    (["--labeller", "none.safetensors"], "--labeller: none.safetensors: give a tumour model's weights with its card"),
])
def test_bad_training_options_get_one_line(brain_data, tmp_path, arguments, message):
    result = synthlab_here("train", "synthtumour", "--healthy", brain_data / "healthy.json", "--unlabelled",
                           brain_data / "unlabelled.json", "--out", tmp_path / "run", *arguments)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"synthlab: error: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("split", "message"), [
    ("nowhere", "--split: unknown split 'nowhere'"),
    ("test", "--datalist: has no labelled tumour cases in its test split"),  # its one test case is healthy
])
def test_evaluate_tumour_refuses_a_split_without_labelled_tumours(brain_data, tumour_registry, tmp_path, split,
                                                                  message):
    result = synthlab_here("evaluate", "tumour", "--datalist", brain_data / "datalist.json", "--report",
                           tmp_path / "report.json", "--split", split, env=synthlab_env(tumour_registry))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "report.json").exists()


def test_tumour_benchmark_refuses_two_seniors_with_one_row_name(tmp_path):
    """Two weights files with the same name would share one row, and one result would silently hide the other."""
    arguments = ["--datalist", tmp_path / "datalist.json", "--junior", tmp_path / "junior.safetensors",
                 "--senior", tmp_path / "a" / "junior.safetensors", tmp_path / "b" / "junior.safetensors"]
    result = run_benchmark_script("tumour_benchmark.py", *arguments)
    assert result.returncode == 2
    assert "NAME=weights.safetensors" in result.stderr.strip().splitlines()[-1]


def test_tumour_benchmark_without_a_junior_scores_the_senior_the_baseline_and_the_healthy_brains(
        brain_data, tumour_registry, tmp_path):
    splits = read_datalist(brain_data / "datalist.json")
    tumours = [e for entries in splits.values() for e in entries if e["tumour"]][:2]
    healthy = [e for entries in splits.values() for e in entries if not e["tumour"]][:1]
    datalist = brain_data / "benchmark_without_junior.json"  # beside the cases its relative paths name
    datalist.write_text(json.dumps({"training": [], "validation": tumours, "test": tumours + healthy}))
    weights = Path(tumour_registry).parent / "tiny-tumour.safetensors"
    ran = run_benchmark_script("tumour_benchmark.py", "--datalist", datalist, "--senior", weights, "--repeats", "0",
                               "--mirror", "off", "--report", tmp_path / "report.json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["summary"]) == {"senior", "intensity baseline"}  # no junior row when none is given
    assert report["test_cases"] == len(tumours) and len(report["cases"]) == len(tumours)
    assert all(0.0 <= case["senior"]["dice"] <= 1.0 for case in report["cases"])
    assert report["summary"]["senior"]["healthy_cases"] == len(healthy) > 0
    assert report["full_brain_1mm_seconds"] == []  # --repeats 0: no full-brain timing


def test_healthy_screen_reports_what_each_model_finds_in_every_healthy_brain(brain_data, tumour_registry, tmp_path):
    weights = Path(tumour_registry).parent / "tiny-tumour.safetensors"
    twice = run_benchmark_script("healthy_screen.py", "--datalist", brain_data / "healthy.json", "--model",
                                 f"a={weights}", f"a={weights}")
    assert twice.returncode == 2 and "given twice: a" in twice.stderr.strip().splitlines()[-1]
    no_healthy = run_benchmark_script("healthy_screen.py", "--datalist", brain_data / "unlabelled.json", "--model",
                                      f"a={weights}")
    assert no_healthy.returncode == 2 and "has no healthy brain" in no_healthy.stderr.strip().splitlines()[-1]
    coarser = tmp_path / "coarser.safetensors"  # the same weights, read at another spacing
    shutil.copy(weights, coarser)
    card = json.loads(weights.with_suffix(".json").read_text())
    coarser.with_suffix(".json").write_text(json.dumps({**card, "spacing": [card["spacing"][0] * 2] * 3}))
    mixed = run_benchmark_script("healthy_screen.py", "--datalist", brain_data / "healthy.json", "--model",
                                 f"a={weights}", f"b={coarser}")
    assert mixed.returncode == 2 and "share their image preparation" in mixed.stderr.strip().splitlines()[-1]
    ran = run_benchmark_script("healthy_screen.py", "--datalist", brain_data / "healthy.json", "--model",
                               f"a={weights}", f"b={weights}", "--mirror", "off", "--report", tmp_path / "screen.json")
    assert ran.returncode == 0, ran.stderr
    rows = json.loads((tmp_path / "screen.json").read_text())["models"]
    healthy = [e for split in read_datalist(brain_data / "healthy.json").values() for e in split]
    assert set(rows) == {"a", "b"} and rows["a"] == rows["b"]  # the same weights find the same
    volumes = [brain["found_ml"] for brain in rows["a"]["brains"]]
    assert rows["a"]["healthy_cases"] == len(volumes) == len(healthy) > 0 and min(volumes) >= 0
    assert rows["a"]["healthy_empty"] == volumes.count(0.0)


def test_carved_validation_benchmark_scores_each_model_on_one_label_sources_carved_tumours(brain_data,
                                                                                           tumour_registry, tmp_path):
    healthy = json.loads((brain_data / "healthy.json").read_text())
    with_brains = brain_data / "healthy_with_validation.json"  # beside the cases its relative paths name
    with_brains.write_text(json.dumps({**healthy, "validation": healthy["training"]}))
    weights = Path(tumour_registry).parent / "tiny-tumour.safetensors"
    arguments = ["--healthy", with_brains, "--unlabelled", brain_data / "unlabelled.json", "--model",
                 f"tiny={weights}", f"again={weights}"]
    unknown = run_benchmark_script("carved_validation.py", *arguments, "--label-source", "other")
    assert unknown.returncode == 2 and "is not one of the --model names" in unknown.stderr.strip().splitlines()[-1]
    no_brains = run_benchmark_script("carved_validation.py", *arguments[2:], "--healthy", brain_data / "healthy.json",
                                     "--label-source", "tiny")  # its validation split is empty
    assert no_brains.returncode == 2 and "need a validation split" in no_brains.stderr.strip().splitlines()[-1]
    ran = run_benchmark_script("carved_validation.py", *arguments, "--label-source", "tiny", "--report",
                               tmp_path / "carved.json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads((tmp_path / "carved.json").read_text())
    assert report["carved_cases"] == 1 and report["tumour_free_cases"] == 1  # one held-out tumour, one brain
    assert 0.0 <= report["scores"]["tiny"] <= 1.0 and report["scores"]["tiny"] == report["scores"]["again"]
    assert report["pseudo_label_edges"] == "model"  # the tiny run's card names the paper's rule
    moved = tmp_path / "moved.safetensors"  # a source whose card says its labels' outlines were moved
    shutil.copy(weights, moved)
    card = json.loads(weights.with_suffix(".json").read_text())
    moved.with_suffix(".json").write_text(json.dumps({**card, "pseudo_labels": f"{card['pseudo_labels']}, "
                                                                              f"{HALF_CONTRAST_RULE}"}))
    ran = run_benchmark_script("carved_validation.py", *arguments[:5], f"moved={moved}", "--label-source", "moved",
                               "--report", tmp_path / "moved.json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads((tmp_path / "moved.json").read_text())["pseudo_label_edges"] == "half-contrast"


def test_healthy_findings_count_the_false_tumour_and_the_empty_brains():
    from synthlab.synthtumour.evaluation import evaluate

    brain, lesion = ball(), ball(radius=7)
    speck = np.zeros_like(brain)
    speck[22:24, 22:24, 22:24] = True  # 8 voxels of 2 mm: 0.064 ml
    tumour, *healthy = [BrainArrays(brain[None].astype(np.float32), brain, sitk.Image(8, 8, 8, sitk.sitkFloat32),
                                    label) for label in (lesion, None, None, None)]
    messages = []
    result = evaluate({"quiet": lambda case: np.zeros_like(brain),
                       "speckled": lambda case: speck if case is healthy[0] else np.zeros_like(brain)},
                      [tumour], 2.0, lambda fraction, message: messages.append(message), healthy=healthy)
    summary = result["summary"]
    assert summary["quiet"]["healthy_empty"] == 3 and summary["quiet"]["healthy_found_ml_max"] == 0
    assert summary["speckled"]["healthy_empty"] == 2
    assert summary["speckled"]["healthy_found_ml_max"] == pytest.approx(0.064)
    assert summary["speckled"]["healthy_found_ml_mean"] == pytest.approx(0.064 / 3)
    assert messages[-1] == "healthy brain 3/3"


def test_evaluate_tumour_reports_what_the_model_finds_in_healthy_brains(brain_data, tumour_registry, tmp_path):
    datalist = json.loads((brain_data / "datalist.json").read_text())
    assert any(not e["tumour"] for e in datalist["training"]), "the training split should hold a healthy brain"
    report = tmp_path / "report.json"
    result = synthlab_here("evaluate", "tumour", "--datalist", brain_data / "datalist.json", "--report",
                           report, "--split", "training", "--progress", "none",
                           env=synthlab_env(tumour_registry))
    assert result.returncode == 0, result.stderr
    summary = json.loads(report.read_text())["summary"]
    healthy = sum(not e["tumour"] for e in datalist["training"])
    for name in ("tiny-tumour", "intensity baseline"):
        assert summary[name]["healthy_cases"] == healthy
        assert 0 <= summary[name]["healthy_empty"] <= healthy and summary[name]["healthy_found_ml_max"] >= 0


def test_pseudo_label_check_scores_each_label_against_its_cases_true_tumour(brain_data, tumour_registry, tmp_path):
    """The benchmark script matches each pseudo label to its case's true label: a pseudo label replaced by
    the truth scores 1, an empty one 0 and counts as under-labelled; a missing one is a one-line exit 2."""
    run = tmp_path / "run"
    shutil.copytree(Path(tumour_registry).parent, run)
    unlabelled = read_datalist(brain_data / "unlabelled.json")["training"]
    truths = {entry["flair"]: entry for entry in read_datalist(brain_data / "datalist.json")["training"]}
    first, second = (read_entry(truths[entry["flair"]], ("flair",), TINY_TUMOUR["spacing"], with_label=True).label
                     for entry in unlabelled[:2])
    np.savez_compressed(run / "pseudo_labels" / "case_0000.npz", label=first)
    np.savez_compressed(run / "pseudo_labels" / "case_0001.npz", label=np.zeros_like(second))
    arguments = ["--run", run, "--unlabelled", brain_data / "unlabelled.json", "--labelled", brain_data / "datalist.json"]
    result = run_benchmark_script("pseudo_label_quality.py", *arguments)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(unlabelled)} cases" in result.stdout
    case = [f"{Path(entry['flair']).parent.parent.name}/{Path(entry['flair']).parent.name}" for entry in unlabelled]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:4] for line in result.stdout.splitlines()
            if line.split(" | ")[0].strip("| ") in case}
    assert rows[case[0]] == ["1.000", "1.00", "1.000"] and rows[case[1]] == ["0.000", "0.00", "0.000"]
    # --labels scores another folder of the run (a later round's), here one whose first label is empty; a run
    # without a junior (labelled by --labeller) is told its spacing.
    shutil.copytree(run / "pseudo_labels", run / "pseudo_labels_round2")
    np.savez_compressed(run / "pseudo_labels_round2" / "case_0000.npz", label=np.zeros_like(first))
    shutil.rmtree(run / "junior")
    unspaced = run_benchmark_script("pseudo_label_quality.py", *arguments, "--labels", "pseudo_labels_round2")
    assert unspaced.returncode == 2 and "give --spacing" in unspaced.stderr.strip().splitlines()[-1]
    arguments += ["--spacing", str(TINY_TUMOUR["spacing"])]
    later = run_benchmark_script("pseudo_label_quality.py", *arguments, "--labels", "pseudo_labels_round2")
    assert later.returncode == 0 and "pseudo_labels_round2 against" in later.stdout, later.stderr[-2000:]
    assert f"| {case[0]} | 0.000 |" in later.stdout
    (run / "pseudo_labels" / "case_0001.npz").unlink()
    missing = run_benchmark_script("pseudo_label_quality.py", *arguments)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "case_0001.npz is missing" in missing.stderr.strip().splitlines()[-1]


def test_changed_mri_copies_cases_with_thicker_slices_another_orientation_bias_and_noise(brain_data, tmp_path):
    source = read_datalist(brain_data / "datalist.json")
    case = source["training"][0]
    thick = run_benchmark_script("changed_mri.py", "--datalist", brain_data / "datalist.json", "--split", "training",
                                 "--out", tmp_path / "thick", "--slice-mm", 5, "--orientation", "ras")
    assert thick.returncode == 0, thick.stderr[-2000:]
    changed = read_datalist(tmp_path / "thick" / "datalist.json")
    assert changed["validation"] == source["validation"]  # the other splits as they were
    copy = changed["training"][0]
    images = {key: sitk.ReadImage(str(copy[key])) for key in ("t1", "flair", "adc", "cbv", "mask", "label")}
    for image in images.values():  # one grid for the whole case
        assert image.GetSpacing()[2] == 5.0 and image.GetSize() == images["flair"].GetSize()
        assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == "RAS"
    before = sitk.GetArrayFromImage(sitk.ReadImage(str(case["label"])))
    after = sitk.GetArrayFromImage(images["label"])
    assert set(np.unique(after)) <= set(np.unique(before))  # labels by nearest neighbour, none invented
    noisy = run_benchmark_script("changed_mri.py", "--datalist", brain_data / "datalist.json", "--split", "training",
                                 "--out", tmp_path / "noisy", "--bias", 0.3, "--noise", 0.1)
    assert noisy.returncode == 0, noisy.stderr[-2000:]
    copy = read_datalist(tmp_path / "noisy" / "datalist.json")["training"][0]
    flair_before, flair_after, adc_before, adc_after, brain = (
        sitk.GetArrayFromImage(sitk.ReadImage(str(entry[key]))) for entry, key in
        [(case, "flair"), (copy, "flair"), (case, "adc"), (copy, "adc"), (case, "mask")])
    brain = brain > 0
    assert np.array_equal(adc_before, adc_after)  # a computed map keeps its values
    ratio = flair_after[brain] / np.maximum(flair_before[brain], 1e-6)
    assert np.std(flair_after[brain] - flair_before[brain]) > 0.05 * np.median(flair_before[brain])
    assert np.percentile(ratio, 90) - np.percentile(ratio, 10) > 0.2  # the bias field
    assert not np.any(flair_after[~brain])  # still zero outside the brain
    again = run_benchmark_script("changed_mri.py", "--datalist", brain_data / "datalist.json", "--out",
                                 tmp_path / "noisy", "--noise", 0.1)
    assert again.returncode == 2 and "exists" in again.stderr
    maskless = tmp_path / "maskless.json"
    maskless.write_text(json.dumps({"test": [{key: str(value) for key, value in case.items() if key != "mask"}]}))
    refused = run_benchmark_script("changed_mri.py", "--datalist", maskless, "--out", tmp_path / "m", "--noise", 0.1)
    assert refused.returncode == 2 and "every case needs its brain mask" in refused.stderr
    assert not (tmp_path / "m").exists()
    wrong = run_benchmark_script("changed_mri.py", "--datalist", brain_data / "datalist.json", "--out",
                                 tmp_path / "w", "--orientation", "RAA")
    assert wrong.returncode == 2 and "not three axis letters" in wrong.stderr and not (tmp_path / "w").exists()
