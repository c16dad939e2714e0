"""CrossStitchContour backend end to end on tiny pelvis phantoms: training (resume, DDP), `synthlab contour`,
`evaluate contour`, `train register`/`register` in 2D, and the bad inputs the issue lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import TINY, make_image, quiet, run_benchmark_script, synthlab, synthlab_here
from scipy import ndimage

from synthlab import volume
from synthlab.crossstitch.data import match_organs, require_ct
from synthlab.crossstitch.fit import FitOptions, fit
from synthlab.crossstitch.geometry import displacement_transform
from synthlab.crossstitch.setup import SetupCorrection, estimate_setup
from synthlab.datalist import read_datalist
from synthlab.errors import InputError
from synthlab.labels import PELVIS_SEGMENTS, LabelMap, Segment, read_labels, write_labels
from synthlab.metrics import surface_distances
from synthlab.registry import Registry, entry_for

BRAINWEB = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")


def contour(registry: Path, pair: dict, tmp_path: Path, *extra, **overrides) -> tuple:
    inputs = {**pair, **overrides}
    result = synthlab_here("contour", "--fixed", inputs["fixed"], "--moving", inputs["moving"],
                           "--moving-labels", inputs["moving_labels"], "--out-labels",
                           tmp_path / "today.seg.nrrd", *extra, env={"SYNTHLAB_MODELS": str(registry)})
    return result, tmp_path / "today.seg.nrrd"


def test_training_resumes_from_its_last_checkpoint_even_in_a_moved_folder(tmp_path, pelvis_data):
    cache = tmp_path / "cache"
    first = fit(pelvis_data, tmp_path / "run", FitOptions(steps=2, cache=cache, **TINY), quiet)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    splits = read_datalist(pelvis_data)
    kept = {path: path.stat().st_mtime_ns for path in cache.glob("*.pickle")}
    assert len(kept) == len(splits["training"]) + len(splits["validation"])  # every pair prepared is kept
    tmp_path = (tmp_path / "run").rename(tmp_path / "moved")
    second = fit(pelvis_data, tmp_path, FitOptions(steps=4, cache=cache, **TINY), quiet)
    assert {path: path.stat().st_mtime_ns for path in cache.glob("*.pickle")} == kept  # served, not written again
    card = json.loads(Path(second["card"]).read_text())
    assert card["training"]["steps"] == 4  # continued from step 2, not restarted
    checkpoints = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and not any("-v" in name for name in checkpoints), checkpoints
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 4  # the next resume starts where this run stopped
    assert card["organs"] == [s.name for s in PELVIS_SEGMENTS] and first["model_id"] == second["model_id"]


def test_joint_training_starts_from_single_task_models(tmp_path, pelvis_data):
    segmentation = fit(pelvis_data, tmp_path / "seg", FitOptions(configuration="segmentation-only", steps=1, **TINY),
                       quiet)
    messages = []
    joint = fit(pelvis_data, tmp_path / "joint", FitOptions(steps=1, start_from=(Path(segmentation["weights"]),),
                                                            **TINY), lambda fraction, message: messages.append(message))
    assert any("segmentation branch from" in message for message in messages)
    assert json.loads(Path(joint["card"]).read_text())["training"]["started_from"] == [segmentation["weights"]]
    with pytest.raises(InputError, match="--start-from.*no segmentation branch"):
        fit(pelvis_data, tmp_path / "reg", FitOptions(configuration="registration-only", steps=1,
                                                      start_from=(Path(segmentation["weights"]),), **TINY), quiet)


def test_training_runs_under_ddp_with_two_cpu_processes(tmp_path, pelvis_data):
    result = synthlab("train", "crossstitch", "--datalist", pelvis_data, "--out", tmp_path, "--steps", 2,
                      "--spacing", 8, "--patch", 16, "--batch-size", 1, "--devices", 2, "--accelerator", "cpu",
                      "--field-of-view-cuts", 0.5, "--progress", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "distributed_backend=gloo" in result.stderr or "GLOBAL_RANK: 1" in result.stderr + result.stdout
    card = json.loads((tmp_path / "contour-crossstitch-3d.json").read_text())
    assert card["training"]["steps"] == 2 and card["training"]["field_of_view_cuts"] == 0.5
    assert (tmp_path / "contour-crossstitch-3d.safetensors").stat().st_size > 0


def test_contour_writes_named_contours_and_an_itk_field_on_the_daily_grid(contour_registry, pair, tmp_path):
    result, out = contour(contour_registry, pair, tmp_path, "--out-field", tmp_path / "field.nrrd", "--out-warped",
                          tmp_path / "warped.nrrd", "--out-segmentation", tmp_path / "own.seg.nrrd",
                          "--reference-labels", pair["fixed_labels"], "--out-metrics", tmp_path / "metrics.json")
    assert result.returncode == 0, result.stderr[-2000:]
    daily = volume.read_image(pair["fixed"])
    today, planning = read_labels(out), read_labels(pair["moving_labels"])
    assert volume.same_grid(today.image, daily)
    assert [(s.name, s.color) for s in today.segments] == [(s.name, s.color) for s in planning.segments]
    field = volume.read_image(tmp_path / "field.nrrd", check_content=False)
    assert volume.same_grid(field, daily) and field.GetNumberOfComponentsPerPixel() == 3
    # The field is a resampling transform (daily -> planning): warping the planning labels through it
    # with SimpleITK gives today's contours.
    by_itk = sitk.Resample(planning.image, daily, displacement_transform(field), sitk.sitkNearestNeighbor, 0)
    agreement = (volume.array_of(by_itk) == volume.array_of(today.image))[volume.array_of(today.image) > 0]
    assert agreement.mean() > 0.9
    assert volume.same_grid(volume.read_image(tmp_path / "warped.nrrd"), daily)
    assert [s.name for s in read_labels(tmp_path / "own.seg.nrrd").segments] == [s.name for s in planning.segments]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["organs"]) == {s.name for s in planning.segments}
    assert all(0 <= m["dice"] <= 1 and m["msd_mm"] >= 0 for m in metrics["organs"].values())
    assert 0 <= metrics["folding_fraction"] <= 1
    assert "prostate: Dice" in result.stdout


def test_contour_accepts_a_planning_ct_on_another_grid(contour_registry, pair, tmp_path):
    """Planning CT and contours resampled to other spacing and axis order still propagate onto today's grid."""
    moving = volume.read_image(pair["moving"])
    labels = read_labels(pair["moving_labels"])
    other = sitk.Image([int(s * 0.8) for s in moving.GetSize()], sitk.sitkInt16)
    other.SetSpacing([s * 1.25 for s in moving.GetSpacing()])
    other.SetOrigin(moving.GetOrigin())
    flipped = sitk.Flip(volume.resample(moving, other), (True, False, False))
    flipped_labels = sitk.Flip(volume.resample(labels.image, other, is_label=True), (True, False, False))
    volume.write_image(flipped, tmp_path / "planning.nrrd")
    write_labels(LabelMap(flipped_labels, labels.segments), tmp_path / "planning.seg.nrrd")
    result, out = contour(contour_registry, pair, tmp_path, moving=tmp_path / "planning.nrrd",
                          moving_labels=tmp_path / "planning.seg.nrrd")
    assert result.returncode == 0, result.stderr[-2000:]
    assert volume.same_grid(read_labels(out).image, volume.read_image(pair["fixed"]))
    assert set(read_labels(out).present_values()) == {1, 2, 3, 4}


def test_organ_map_lets_users_name_their_segments(contour_registry, pair, tmp_path):
    labels = read_labels(pair["moving_labels"])
    renamed = [Segment(s.value, {"bladder": "Blase", "prostate": "CTV"}.get(s.name, s.name), s.color)
               for s in labels.segments]
    write_labels(LabelMap(labels.image, renamed), tmp_path / "renamed.seg.nrrd")
    result, out = contour(contour_registry, pair, tmp_path, "--organ-map", "Blase=bladder,CTV=prostate",
                          moving_labels=tmp_path / "renamed.seg.nrrd")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {s.name for s in read_labels(out).segments} == {"Blase", "CTV", "rectum", "seminal vesicles"}


def _ct_offset(path: Path, tmp_path: Path) -> Path:
    """The CT as an MR-like, all-positive image (HU + 1024, as unsigned storage without rescaling)."""
    return volume.write_image(volume.read_image(path) + 1024, tmp_path / "offset.nrrd")


@pytest.mark.parametrize("case,message", [
    ("unknown organs", "--moving-labels: no segment the model knows"),
    ("empty segment", "--moving-labels: segment 'rectum' is empty"),
    ("2D daily", "--fixed: is a 2D image but model 'tiny-contour' registers 3D images"),
    ("not CT", "--fixed: does not look like CT in Hounsfield units"),
    ("overwrite input", "--out-labels:"),
])
def test_bad_inputs_end_in_one_line_and_write_nothing(contour_registry, pair, tmp_path, case, message):
    labels = read_labels(pair["moving_labels"])
    overrides, extra = {}, []
    if case == "unknown organs":
        write_labels(LabelMap(labels.image, [Segment(s.value, f"structure {s.value}") for s in labels.segments]),
                     tmp_path / "bad.seg.nrrd")
        overrides["moving_labels"] = tmp_path / "bad.seg.nrrd"
    elif case == "empty segment":
        without_rectum = sitk.ChangeLabel(labels.image, {3: 0})
        write_labels(LabelMap(without_rectum, labels.segments), tmp_path / "bad.seg.nrrd")
        overrides["moving_labels"] = tmp_path / "bad.seg.nrrd"
    elif case == "2D daily":
        daily = volume.read_image(pair["fixed"])
        overrides["fixed"] = volume.write_image(daily[:, :, daily.GetSize()[2] // 2], tmp_path / "slice.nrrd")
    elif case == "not CT":
        overrides["fixed"] = _ct_offset(pair["fixed"], tmp_path)
    before = set(tmp_path.iterdir())
    if case == "overwrite input":
        result = synthlab_here("contour", "--fixed", pair["fixed"], "--moving", pair["moving"],
                               "--moving-labels", pair["moving_labels"], "--out-labels",
                               pair["moving_labels"], env={"SYNTHLAB_MODELS": str(contour_registry)})
    else:
        result, _ = contour(contour_registry, pair, tmp_path, *extra, **overrides)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert set(tmp_path.iterdir()) == before
    assert read_labels(pair["moving_labels"]).present_values() == [1, 2, 3, 4]


def test_organ_matching_knows_common_names_and_refuses_unknown_ones():
    image = sitk.GetImageFromArray(np.array([[[1, 2, 3, 4]]], np.uint8))
    labels = LabelMap(image, [Segment(1, "Prostate_gland"), Segment(2, "SV"), Segment(3, "Rectum Wall"),
                              Segment(4, "Urinary Bladder")])
    organs = [s.name for s in PELVIS_SEGMENTS]
    assert match_organs(labels, organs) == {"prostate": 1, "seminal vesicles": 2, "rectum": 3, "bladder": 4}
    with pytest.raises(InputError, match="'femur' is not an organ"):
        match_organs(labels, organs, {"SV": "femur"})


def test_require_ct_accepts_hounsfield_units_and_refuses_mr_like_values(pair):
    ct = volume.read_image(pair["fixed"])
    require_ct(ct, "--fixed")
    with pytest.raises(InputError, match="does not look like CT"):
        require_ct(ct + 1024, "--fixed")


def test_evaluate_contour_reports_each_organ(contour_registry, pelvis_data, tmp_path):
    result = synthlab_here("evaluate", "contour", "--datalist", pelvis_data, "--report",
                           tmp_path / "report.json", "--progress", "none",
                           env={"SYNTHLAB_MODELS": str(contour_registry)})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["pairs"] == len(report["pairs"]) >= 1
    assert set(report["summary"]["organs"]) == {s.name for s in PELVIS_SEGMENTS}
    assert {"dice", "msd_mm", "hd95_mm"} <= set(report["summary"]["organs"]["prostate"])
    assert all(pair["setup_correction"] is None for pair in report["pairs"])  # the tiny model's card asks for none
    corrected = synthlab_here("evaluate", "contour", "--datalist", pelvis_data, "--report", tmp_path / "setup.json",
                              "--setup-correction", "--progress", "none", env={"SYNTHLAB_MODELS": str(contour_registry)})
    assert corrected.returncode == 0, corrected.stderr[-2000:]
    pairs = json.loads((tmp_path / "setup.json").read_text())["pairs"]
    assert all(len(pair["setup_correction"]["translation_mm"]) == 3 for pair in pairs)


def test_contour_benchmark_keeps_each_pair_for_paired_comparisons_and_the_seed_figure(contour_registry, pelvis_data,
                                                                                      tmp_path):
    weights = next(contour_registry.parent.glob("*.safetensors"))
    every_pair = tmp_path / "pairs.json"  # the tiny phantom has one pair a split
    every_pair.write_text(json.dumps({"test": [pair for pairs in read_datalist(pelvis_data).values() for pair in pairs]}))
    report_path = tmp_path / "report.json"
    run = run_benchmark_script("contour_benchmark.py", "--datalist", every_pair, "--model", weights, "--no-baselines",
                               "--pairs", 2, "--report", report_path)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(report_path.read_text())
    network, own = (name for name in report["cases"])
    rows = report["cases"][network]
    assert [row["case"] for row in rows] == [row["case"] for row in report["cases"][own]] and len(rows) == 2
    assert np.isclose(np.mean([row["prostate msd_mm"] for row in rows]),
                      report["methods"][network]["organs"]["prostate"]["msd_mm"]["mean"], atol=1e-4)
    assert "folding_fraction" in rows[0] and "folding_fraction" not in report["cases"][own][0]
    assert "bladder own_segmentation_distance_mm" not in rows[0]  # the tiny card weighs in no segmentation
    strict_path = tmp_path / "strict.json"
    strict = run_benchmark_script("contour_benchmark.py", "--datalist", every_pair, "--model", weights,
                                  "--no-baselines", "--pairs", 2, "--segmentation-weight", "0.5",
                                  "--disagreement-limit-mm", 0, "--report", strict_path)
    assert strict.returncode == 0, strict.stderr[-2000:]
    strict_rows = json.loads(strict_path.read_text())["cases"][network]
    assert all(row["bladder own_segmentation_distance_mm"] > 0 for row in strict_rows)
    assert [row["bladder msd_mm"] for row in strict_rows] == [row["bladder msd_mm"] for row in rows]  # set aside
    for weight in ("spleen=0.5", "bladder=2"):
        refused = run_benchmark_script("contour_benchmark.py", "--datalist", every_pair, "--model", weights,
                                       "--no-baselines", "--segmentation-weight", weight, "--report", tmp_path / "r.json")
        assert refused.returncode == 2 and "Traceback" not in refused.stderr and "--segmentation-weight" in refused.stderr
        assert not (tmp_path / "r.json").exists()
    compared = run_benchmark_script("paired_reports.py", "--metric", "prostate msd_mm", f"{report_path}:{network}",
                                    f"{report_path}:{own}")
    assert compared.returncode == 0, compared.stderr
    (line,) = compared.stdout.splitlines()
    assert line.startswith("prostate msd_mm: A ") and "of 2" in line
    missing = run_benchmark_script("paired_reports.py", "--metric", "spleen msd_mm", f"{report_path}:{network}",
                                   f"{report_path}:{own}")
    assert missing.returncode != 0 and "no case of both reports has the metric 'spleen msd_mm'" in missing.stderr
    figure = run_benchmark_script("seed_spread_figure.py", "--out", tmp_path / "s.png",
                                  f"propagated={report_path}:{network}", f"own={report_path}:{own}")
    assert figure.returncode == 0, figure.stderr
    assert sitk.ReadImage(str(tmp_path / "s.png")).GetSize()[0] > 300
    unnamed = run_benchmark_script("seed_spread_figure.py", "--out", tmp_path / "u.png", f"{report_path}:{network}")
    assert unnamed.returncode != 0 and "give GROUP=REPORT.json:METHOD" in unnamed.stderr
    assert not (tmp_path / "u.png").exists()


def test_changed_ct_copies_pairs_with_another_scanners_look_and_keeps_contours_on_the_new_grid(pelvis_data, tmp_path,
                                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "changed"
    run = run_benchmark_script("changed_ct.py", "--datalist", pelvis_data, "--out", "changed", "--offset", 40,
                               "--noise-hu", 20, "--slice-mm", 6, "--which", "both")
    assert run.returncode == 0, run.stderr[-2000:]
    (original,), (changed,) = read_datalist(pelvis_data)["test"], read_datalist(out / "datalist.json")["test"]
    before, after = sitk.ReadImage(original["fixed"]), sitk.ReadImage(changed["fixed"])
    assert after.GetSpacing()[2] == 6.0 and after.GetSpacing()[:2] == before.GetSpacing()[:2]
    assert abs(after.GetSize()[2] * 6.0 - before.GetSize()[2] * before.GetSpacing()[2]) <= 6.0
    labels = read_labels(changed["fixed_labels"])
    assert labels.image.GetSize() == after.GetSize()
    assert [s.name for s in labels.segments] == [s.name for s in read_labels(original["fixed_labels"]).segments]
    planning_before, planning_after = (sitk.GetArrayFromImage(sitk.ReadImage(entry["moving"])).astype(float)
                                       for entry in (original, changed))
    difference = planning_after - planning_before  # same grid: the planning CT keeps its slices
    soft_tissue = planning_before > -200  # away from the air floor
    assert abs(np.mean(difference[soft_tissue]) - 40) < 3 and 15 < np.std(difference[soft_tissue]) < 25
    again = run_benchmark_script("changed_ct.py", "--datalist", pelvis_data, "--out", out, "--noise-hu", 20)
    assert again.returncode == 2 and "exists" in again.stderr  # nothing overwritten
    empty = run_benchmark_script("changed_ct.py", "--datalist", pelvis_data, "--split", "nothing", "--out",
                                 tmp_path / "none")
    assert empty.returncode == 2 and "no pairs in split 'nothing'" in empty.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"test": [{**original, "moving": str(tmp_path / "gone.nii.gz")}]}))
    unreadable = run_benchmark_script("changed_ct.py", "--datalist", broken, "--out", tmp_path / "b")
    assert unreadable.returncode == 2 and "1 file(s) not found, the first" in unreadable.stderr
    assert "gone.nii.gz" in unreadable.stderr and not (tmp_path / "b").exists()
    turned = run_benchmark_script("changed_ct.py", "--datalist", pelvis_data, "--out", tmp_path / "ras",
                                  "--orientation", "ras")
    assert turned.returncode == 0, turned.stderr[-2000:]
    (reoriented,) = read_datalist(tmp_path / "ras" / "datalist.json")["test"]
    for key, read in (("fixed", sitk.ReadImage), ("fixed_labels", lambda path: read_labels(path).image)):
        image, source = read(reoriented[key]), read(original[key])
        assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == "RAS"
        back = sitk.DICOMOrient(image, "LPS")  # the same voxels where they were
        assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(source))
    wrong = run_benchmark_script("changed_ct.py", "--datalist", pelvis_data, "--out", tmp_path / "w",
                                 "--orientation", "RAA")
    assert wrong.returncode == 2 and "not three axis letters" in wrong.stderr


def test_changed_ct_darkens_the_body_centre_like_a_cone_beam_ct_and_fills_the_bladder_with_contrast(pelvis_data,
                                                                                                   tmp_path):
    run = run_benchmark_script("changed_ct.py", "--datalist", pelvis_data, "--out", tmp_path / "cbct",
                               "--cupping-hu", 80, "--bladder-contrast-hu", 300)
    assert run.returncode == 0, run.stderr[-2000:]
    (original,), (changed,) = read_datalist(pelvis_data)["test"], read_datalist(tmp_path / "cbct" / "datalist.json")["test"]
    assert changed["moving"] == original["moving"]  # --which daily: the planning CT is the same file
    before, after = (sitk.GetArrayFromImage(sitk.ReadImage(entry["fixed"])).astype(float) for entry in (original,
                                                                                                        changed))
    labels = read_labels(original["fixed_labels"])
    bladder = sitk.GetArrayFromImage(labels.image) == next(s.value for s in labels.segments if s.name == "bladder")
    inside_bladder = ndimage.binary_erosion(bladder, iterations=4)
    assert np.mean((after - before)[inside_bladder]) > 150  # contrast, less the cupping at the centre
    body, in_plane = before > -500, np.ones((1, 3, 3), bool)  # cupping is per axial slice
    edge = body & ~ndimage.binary_erosion(body, in_plane, iterations=2, border_value=0)
    centre_of_body = ndimage.binary_erosion(body, in_plane, iterations=12) & ~ndimage.binary_dilation(bladder,
                                                                                                      iterations=3)
    assert abs(np.mean((after - before)[edge])) < 20  # no cupping at the skin
    assert np.mean((after - before)[centre_of_body]) < -30  # darker deep inside
    no_bladder = tmp_path / "no_bladder.seg.nrrd"
    write_labels(LabelMap(labels.image, [s for s in labels.segments if s.name != "bladder"]), no_bladder)
    unnamed = tmp_path / "unnamed.json"
    unnamed.write_text(json.dumps({"test": [{**original, "fixed_labels": str(no_bladder)}]}))
    refused = run_benchmark_script("changed_ct.py", "--datalist", unnamed, "--out", tmp_path / "n",
                                   "--bladder-contrast-hu", 300)
    assert refused.returncode == 2 and "no segment named bladder" in refused.stderr
    assert not (tmp_path / "n").exists()


def test_changed_ct_moves_the_daily_ct_and_its_contours_as_a_patient_lying_further_off_or_cuts_them_short(
        pelvis_data, tmp_path):
    run = run_benchmark_script("changed_ct.py", "--datalist", pelvis_data, "--out", tmp_path / "moved",
                               "--setup-shift-mm", "12,-8,5", "--setup-rotation-deg", "0,0,3")
    assert run.returncode == 0, run.stderr[-2000:]
    (original,), (changed,) = read_datalist(pelvis_data)["test"], read_datalist(tmp_path / "moved" / "datalist.json")["test"]
    ct_before, ct_after = sitk.ReadImage(original["fixed"]), sitk.ReadImage(changed["fixed"])
    assert np.array_equal(sitk.GetArrayFromImage(ct_after), sitk.GetArrayFromImage(ct_before))  # not resampled
    centre = np.mean(volume.physical_bounds(ct_before), axis=0)
    patient = sitk.Euler3DTransform(centre.tolist(), 0.0, 0.0, np.radians(3.0), [12.0, -8.0, 5.0])
    for key, read in (("fixed", sitk.ReadImage), ("fixed_labels", lambda path: read_labels(path).image)):
        before, after = read(original[key]), read(changed[key])
        corner = before.TransformIndexToPhysicalPoint([3, 5, 2])
        assert np.allclose(after.TransformIndexToPhysicalPoint([3, 5, 2]), patient.TransformPoint(corner), atol=1e-4)
    assert changed["moving"] == original["moving"] and changed["moving_labels"] == original["moving_labels"]
    short = run_benchmark_script("changed_ct.py", "--datalist", pelvis_data, "--out", tmp_path / "fov",
                                 "--field-of-view-mm", "120,90,60")
    assert short.returncode == 0, short.stderr[-2000:]
    (cut,) = read_datalist(tmp_path / "fov" / "datalist.json")["test"]
    cut_ct, cut_labels = sitk.ReadImage(cut["fixed"]), read_labels(cut["fixed_labels"])
    assert np.allclose(np.array(cut_ct.GetSize()) * cut_ct.GetSpacing(), (120, 90, 60), atol=2 * max(cut_ct.GetSpacing()))
    assert volume.same_grid(cut_labels.image, cut_ct) and cut_labels.present_values()  # the organs are inside
    voxel = [s // 2 for s in cut_ct.GetSize()]
    assert cut_ct[voxel] == ct_before[ct_before.TransformPhysicalPointToIndex(cut_ct.TransformIndexToPhysicalPoint(voxel))]
    wrong = run_benchmark_script("changed_ct.py", "--datalist", pelvis_data, "--out", tmp_path / "w",
                                 "--setup-shift-mm", "12,-8")
    assert wrong.returncode == 2 and "give three numbers" in wrong.stderr and not (tmp_path / "w").exists()

def test_surface_distance_of_nested_spheres_is_their_radius_difference_in_mm():
    z, y, x = np.mgrid[:40, :60, :60]
    spacing = (2.0, 1.0, 1.0)
    radius = np.sqrt(((z - 20) * 2.0) ** 2 + (y - 30.0) ** 2 + (x - 30.0) ** 2)
    distances = surface_distances(radius <= 20, radius <= 16, spacing)
    assert distances["msd_mm"] == pytest.approx(4.0, abs=0.8)
    assert distances["hd95_mm"] == pytest.approx(4.0, abs=1.2)


@pytest.mark.skipif(not BRAINWEB.is_dir(), reason="Debian insighttoolkit5-examples is not installed")
def test_train_register_and_register_in_2d_on_brainweb(tmp_path):
    fixed = BRAINWEB / "BrainProtonDensitySliceBorder20.png"
    pairs = [{"fixed": str(fixed), "moving": str(BRAINWEB / name)} for name in
             ("BrainProtonDensitySliceShifted13x17y.png", "BrainProtonDensitySliceRotated10.png")]
    (tmp_path / "pairs.json").write_text(json.dumps({"training": pairs, "validation": pairs[:1]}))
    result = synthlab_here("train", "register", "--datalist", tmp_path / "pairs.json", "--out",
                           tmp_path / "model", "--steps", 2, "--spacing", 2, "--patch", 32, "--batch-size",
                           1, "--accelerator", "cpu", "--progress", "none")
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads((tmp_path / "model" / "register-registration-only-2d.json").read_text())
    assert card["spatial_dims"] == 2 and card["intensity"]["kind"] == "percentile" and card["organs"] == []
    registry = Registry(tmp_path / "Models.json")
    weights = tmp_path / "model" / "register-registration-only-2d.safetensors"
    registry.add(entry_for(registry, "brain-2d", weights, weights.with_suffix(".json"), default=True))
    result = synthlab_here("register", "--fixed", fixed, "--moving", pairs[0]["moving"], "--out-warped",
                           tmp_path / "warped.png", "--out-field", tmp_path / "field.nrrd", "--iterations", 60,
                           env={"SYNTHLAB_MODELS": str(registry.path)})
    assert result.returncode == 0, result.stderr[-2000:]
    field = sitk.GetArrayFromImage(volume.read_image(tmp_path / "field.nrrd", dimension=2, check_content=False))
    head = volume.array_of(volume.read_image(fixed, dimension=2)) > 30
    assert np.median(np.linalg.norm(field[head] - [13.0, 17.0], axis=1)) < 1.5


def test_demo_propagates_contours_with_the_registered_model(contour_registry, tmp_path):
    result = synthlab_here("demo", "--out", tmp_path / "demo", "--progress", "none",
                           env={"SYNTHLAB_MODELS": str(contour_registry)})
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())["contour propagation"]
    assert metrics["model"] == "tiny-contour"
    assert metrics["guided_organs"] == [] and metrics["segmentation_weights"] == {}  # its card asks for neither
    assert set(metrics["propagated"]["organs"]) == {s.name for s in PELVIS_SEGMENTS}
    assert set(metrics["without_propagation"]) == {s.name for s in PELVIS_SEGMENTS}
    assert (tmp_path / "demo" / "contour_propagation" / "daily_contours.seg.nrrd").is_file()


@pytest.mark.parametrize(("guidance", "guided"), [([], ""), (["--guided"], "prostate, seminal vesicles, rectum, bladder"),
                                                (["--guided", "--guide-organs", "rectum,bladder"], "rectum, bladder")])
def test_contour_in_a_sliding_window_with_instance_optimisation(contour_registry, pair, tmp_path, guidance, guided):
    result, out = contour(contour_registry, pair, tmp_path, "--window", 8, "--iterations", 2, "--progress", "json",
                          *guidance)
    assert ("guided by the model's segmentation" in result.stdout) == bool(guided)
    assert f"segmentation for {guided})" in result.stdout or not guided
    assert result.returncode == 0, result.stderr[-2000:]
    today = read_labels(out)
    assert volume.same_grid(today.image, volume.read_image(pair["fixed"]))
    assert set(today.present_values()) == {1, 2, 3, 4}


def test_contour_weighs_in_the_models_own_segmentation_only_for_the_organs_asked(contour_registry, pair, tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "fused").mkdir()
    plain, plain_out = contour(contour_registry, pair, tmp_path / "plain", "--iterations", 2, "--segmentation-weight",
                               "none", "--progress", "json")
    fused, fused_out = contour(contour_registry, pair, tmp_path / "fused", "--iterations", 2, "--segmentation-weight",
                               "bladder=0.9", "--progress", "json")
    assert plain.returncode == 0 and fused.returncode == 0, fused.stderr[-2000:]
    assert "weighing in the model's own segmentation for bladder" in fused.stdout
    assert json.loads(fused.stdout.splitlines()[-1])["result"]["segmentation_weights"] == {"bladder": 0.9}
    assert json.loads(plain.stdout.splitlines()[-1])["result"]["segmentation_weights"] == {}
    plain_values, fused_values = (volume.array_of(read_labels(path).image) for path in (plain_out, fused_out))
    bladder = next(s.value for s in read_labels(plain_out).segments if s.name == "bladder")
    others = (plain_values != bladder) & (fused_values != bladder)
    np.testing.assert_array_equal(plain_values[others], fused_values[others])
    assert (plain_values == bladder).sum() != (fused_values == bladder).sum()


def test_an_organ_whose_own_segmentation_strays_from_its_warped_contour_keeps_the_warped_contour(
        contour_registry, strict_contour_registry, pair, tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "strict").mkdir()
    plain, plain_out = contour(contour_registry, pair, tmp_path / "plain", "--iterations", 2,
                               "--segmentation-weight", "none", "--progress", "json")
    strict, strict_out = contour(strict_contour_registry, pair, tmp_path / "strict", "--iterations", 2,
                                 "--segmentation-weight", "bladder=0.9", "--no-setup-correction", "--progress", "json")
    assert plain.returncode == 0 and strict.returncode == 0, strict.stderr[-2000:]
    assert "set aside the model's own segmentation for bladder (from the warped contour" in strict.stdout
    assert "kept the warped contour" in strict.stdout
    result = json.loads(strict.stdout.splitlines()[-1])["result"]
    assert result["segmentation_weights"] == {}  # asked for, but set aside
    assert list(result["segmentation_disagreement_mm"]) == list(result["segmentation_uncertain_band_mm"]) == [
        "bladder"]
    assert result["segmentation_disagreement_mm"]["bladder"] is None or result["segmentation_disagreement_mm"][
        "bladder"] > 0
    np.testing.assert_array_equal(volume.array_of(read_labels(plain_out).image),
                                  volume.array_of(read_labels(strict_out).image))  # the warped contours alone


def test_disagreement_is_the_mean_surface_distance_between_the_two_segments_and_sets_far_organs_aside():
    from synthlab.crossstitch.inference import SegmentationCheck, disagreement_mm, trusted_weights

    grid = np.zeros((30, 40, 40), np.uint16)
    own, warped = grid.copy(), grid.copy()
    own[10:20, 10:30, 10:30] = 4
    warped[10:20, 10:30, 13:33] = 4  # the same box 3 voxels along x
    image = sitk.GetImageFromArray(own)
    image.SetSpacing((2.0, 1.0, 1.0))  # x in 2 mm voxels: 6 mm apart along x
    bladder = [Segment(4, "bladder")]
    as_labels = [LabelMap(volume.image_like(values, image), bladder) for values in (own, warped)]
    distance = disagreement_mm(*as_labels, 4)
    assert 0.5 < distance < 6.0  # only the faces across x are apart, by 6 mm
    assert distance == pytest.approx(surface_distances(own == 4, warped == 4, (1.0, 1.0, 2.0))["msd_mm"])  # uncropped
    assert disagreement_mm(as_labels[0], LabelMap(volume.image_like(grid, image), bladder), 4) == float("inf")
    messages = []

    def record(fraction, message):
        messages.append(message)

    far = SegmentationCheck("from the warped contour", {"bladder": distance, "rectum": 0.4}, 1.0)
    unsure = SegmentationCheck("unsure band", {"bladder": 1.0, "rectum": 5.0}, 3.0)
    assert trusted_weights({"bladder": 0.7, "rectum": 0.5}, [far], record) == {"rectum": 0.5}
    assert "bladder (from the warped contour" in messages[0] and "rectum" not in messages[0]
    assert trusted_weights({"bladder": 0.7, "rectum": 0.5}, [far, unsure], record) == {}
    assert "rectum (unsure band 5.0 mm, over 3)" in messages[1]
    relaxed = SegmentationCheck("from the warped contour", far.values_mm, distance)
    assert trusted_weights({"bladder": 0.7}, [relaxed], record) == {"bladder": 0.7}
    assert len(messages) == 2  # nothing set aside, nothing said


def test_the_unsure_band_is_about_a_voxel_for_a_sharp_organ_and_wider_for_a_blurred_one():
    from synthlab.crossstitch.inference import uncertain_band_mm

    z, y, x = np.mgrid[:40, :40, :40]
    distance = np.sqrt((z - 20.0) ** 2 + (y - 20.0) ** 2 + (x - 20.0) ** 2)
    sharp = 1 / (1 + np.exp((distance - 12) / 0.3))  # a confident sphere of radius 12 voxels
    blurred = 1 / (1 + np.exp((distance - 12) / 3.0))  # the same sphere, unsure over several voxels
    assert uncertain_band_mm(sharp, 4.0) < 6.0  # about one 4 mm voxel
    assert uncertain_band_mm(blurred, 4.0) > 3 * uncertain_band_mm(sharp, 4.0)
    assert uncertain_band_mm(blurred, (2.0, 2.0, 2.0)) == pytest.approx(uncertain_band_mm(blurred, 4.0) / 2)
    assert uncertain_band_mm(np.zeros((10, 10, 10)), 4.0) == float("inf")


@pytest.mark.parametrize("arguments,message", [
    (["contour", "--out-metrics", "{tmp}/m.json"], "--out-metrics: needs --reference-labels"),
    (["contour", "--organ-map", "nonsense"], "--organ-map: use SEGMENT=ORGAN pairs"),
    (["contour", "--organ-map", "nope=prostate"], "--organ-map: no planning segment named 'nope'"),
    (["contour", "--organ-map", "bladder=femur"], "--organ-map: 'femur' is not an organ of this model"),
    (["contour", "--guided", "--iterations", "0"], "--guided/--guide-organs: guides instance optimisation: give"),
    (["contour", "--guide-organs", "rectum", "--iterations", "0"], "--guided/--guide-organs: guides instance"),
    (["contour", "--guide-organs", "rectum,kidney"], "--guide-organs: unknown organ kidney"),
    (["contour", "--segmentation-weight", "bladder=2"], "--segmentation-weight: bladder: 2.0 is not between 0 and 1"),
    (["evaluate", "--segmentation-weight", "kidney=0.5"], "--segmentation-weight: unknown organ kidney"),
    (["register", "--out-field", "{tmp}/field.png"], "--out-field: a displacement field needs"),
    (["register", "--model", "optimisation-only", "--moving", str(BRAINWEB / "BrainProtonDensitySlice.png")],
     "--moving: is 2D but --fixed is 3D"),
    (["evaluate", "--split", "nowhere"], "--split: the datalist has no 'nowhere' pairs"),
    (["train", "--steps", "0"], "--steps: must be at least 1 (got 0)"),
    (["train", "--devices", "0"], "--devices: must be at least 1 (got 0)"),
    (["train", "--stitch-rate-scale", "0"], "--stitch-rate-scale: must be above 0 (got 0)"),
    (["train", "--start-from", "{tmp}/nowhere.safetensors"], "--start-from: no model file"),
    (["train", "--field-of-view-cuts", "1.5"], "--field-of-view-cuts: must be between 0 and 1 (got 1.5)"),
    (["train register", "--datalist", "{tmp}/unpaired.json"], "--datalist: every training pair needs 'fixed'"),
])
def test_bad_options_end_in_one_line(contour_registry, pelvis_data, pair, tmp_path, arguments, message):
    (tmp_path / "unpaired.json").write_text(json.dumps({"training": [{"image": str(pair["fixed"])}]}))
    command, *options = [a.format(tmp=tmp_path) for a in arguments]
    common = {
        "contour": ["contour", "--fixed", pair["fixed"], "--moving", pair["moving"], "--moving-labels",
                    pair["moving_labels"], "--out-labels", tmp_path / "today.seg.nrrd"],
        "register": ["register", "--fixed", pair["fixed"], "--moving", pair["moving"], "--out-warped",
                     tmp_path / "warped.nrrd"],
        "evaluate": ["evaluate", "contour", "--datalist", pelvis_data, "--report", tmp_path / "report.json"],
        "train": ["train", "crossstitch", "--datalist", pelvis_data, "--out", tmp_path / "run"],
        "train register": ["train", "register", "--out", tmp_path / "run"],
    }[command]
    before = set(tmp_path.iterdir())
    result = synthlab_here(*common, *options, env={"SYNTHLAB_MODELS": str(contour_registry)})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert set(tmp_path.iterdir()) == before


def test_the_own_segmentation_weighs_less_near_the_daily_scans_border(contour_registry, pair):
    from synthlab.crossstitch.geometry import border_ramp
    from synthlab.crossstitch.inference import LoadedModel, propagate_contours

    registry = Registry(contour_registry)
    model = LoadedModel.from_weights(*registry.load(registry.get("tiny-contour")), torch.device("cpu"))
    fixed, moving, labels = (volume.read_image(pair["fixed"]), volume.read_image(pair["moving"]),
                             read_labels(pair["moving_labels"]))
    fade = 0.3 * min(np.array(fixed.GetSize()) * np.array(fixed.GetSpacing()))

    messages = []

    near_border = []

    def contours(weights: dict, fade_mm: float) -> np.ndarray:
        model.card["inference"] = {"segmentation_border_fade_mm": fade_mm}
        result = propagate_contours(model, fixed, moving, labels, iterations=0, segmentation_weights=weights,
                                    setup_correction=False, progress=lambda f, message: messages.append(message))
        near_border.append(result.inference_summary()["near_scan_border"])
        return volume.array_of(result.contours.image)

    fused, faded, warped = (contours({"bladder": 0.9}, 0.0), contours({"bladder": 0.9}, fade),
                            contours({}, fade))
    assert near_border == [[], ["bladder"], []]
    inside = volume.array_of(border_ramp(fixed, fade)) == 1.0
    assert inside.any() and not inside.all()
    np.testing.assert_array_equal(faded[inside], fused[inside])  # far from the border: weighed in fully
    changed = faded != fused
    assert changed.any()  # near the border: the warped contour counts for more
    assert (faded[changed] == warped[changed]).mean() > 0.5
    assert f"the daily CT ends within {fade:g} mm of the bladder" in "\n".join(messages)


def test_guidance_and_segmentation_weights_refuse_a_model_without_both_branches(contour_registry, pair):
    from synthlab.crossstitch.inference import LoadedModel, propagate_contours
    from synthlab.crossstitch.networks import JointNetwork

    registry = Registry(contour_registry)
    _, card = registry.load(registry.get("tiny-contour"))
    card["configuration"] = "registration-only"
    network = JointNetwork("registration-only", 3, len(card["organs"]), filters=tuple(card["filters"]))
    model = LoadedModel.from_weights(network.state_dict(), card, torch.device("cpu"))
    fixed, moving = volume.read_image(pair["fixed"]), volume.read_image(pair["moving"])
    with pytest.raises(InputError, match="--guided/--guide-organs: model .* is not a joint registration"):
        propagate_contours(model, fixed, moving, read_labels(pair["moving_labels"]), iterations=2,
                           guide_organs=["rectum"])
    with pytest.raises(InputError, match="--segmentation-weight: model .* is not a joint registration"):
        propagate_contours(model, fixed, moving, read_labels(pair["moving_labels"]), iterations=2,
                           segmentation_weights={"rectum": 0.5})


def test_the_shipped_contour_model_uses_its_cards_instance_optimisation_by_default():
    from synthlab.crossstitch.inference import load_model

    model = load_model("contour", device="cpu")
    assert model.card["inference"]["iterations"] > 0
    assert model.iterations(None) == model.card["inference"]["iterations"] and model.iterations(0) == 0
    assert model.guided_organs(None) == model.card["inference"]["guided_organs"]  # the card's choice by default
    assert model.guided_organs([]) == []  # --guide-organs none
    assert model.segmentation_weights(None) == model.card["inference"]["segmentation_weights"]
    assert model.segmentation_weights({}) == {}  # --segmentation-weight none
    assert model.setup_correction(None) is True and model.setup_correction(False) is False  # the card's, or asked
    assert model.segmentation_border_fade_mm() > 0  # its segmentation counts less at the daily scan's border


def _rigid(centre, degrees, shift_mm) -> sitk.Euler3DTransform:
    return sitk.Euler3DTransform(list(centre), *np.radians(degrees), list(shift_mm))


def test_setup_correction_finds_a_known_patient_shift_on_bone_and_puts_fields_back_on_the_daily_grid(pair):
    planning = volume.read_image(pair["fixed"])
    centre = np.mean(volume.physical_bounds(planning), axis=0)
    known = _rigid(centre, (3.0, -2.0, 4.0), (12.0, -9.0, 6.0))  # daily point -> planning point
    daily = SetupCorrection(sitk.Euler3DTransform(known.GetInverse())).moved(planning)  # the patient lay elsewhere
    assert np.array_equal(volume.array_of(daily), volume.array_of(planning))  # only the geometry changed
    found = estimate_setup(daily, planning)
    points = np.random.default_rng(0).uniform(-40, 40, (50, 3)) + centre
    errors = [np.linalg.norm(np.subtract(found.transform.TransformPoint(p.tolist()), known.TransformPoint(p.tolist())))
              for p in points]
    assert max(errors) < 0.5
    assert found.summary()["rotation_deg"] == pytest.approx([3.0, -2.0, 4.0], abs=0.2)
    assert estimate_setup(planning, planning).describe().startswith("0.0 mm")
    far = _rigid(centre, (0.0, 0.0, 0.0), (0.0, -90.0, 0.0))  # scans whose frames lie 9 cm apart
    found_far = estimate_setup(SetupCorrection(sitk.Euler3DTransform(far.GetInverse())).moved(planning), planning)
    assert np.allclose(found_far.transform.TransformPoint(centre.tolist()), far.TransformPoint(centre.tolist()),
                       atol=0.5)
    moved = found.moved(daily)  # the daily CT in the planning frame: back where the planning CT is
    assert np.allclose(moved.GetOrigin(), planning.GetOrigin(), atol=0.5)
    # a field made on the moved grid, back on the daily grid: each voxel's planning point minus its own place
    field = volume.image_like(np.full((*reversed(daily.GetSize()), 3), (1.0, -2.0, 0.5)), moved, is_vector=True)
    on_daily = found.field_on(field, daily)
    assert volume.same_grid(on_daily, daily)
    index = [5, 7, 3]
    x = np.array(daily.TransformIndexToPhysicalPoint(index))
    planning_point = np.add(moved.TransformIndexToPhysicalPoint(index), (1.0, -2.0, 0.5))
    assert np.allclose(x + on_daily[index], planning_point, atol=1e-3)
    labels = sitk.Cast(moved > 0, sitk.sitkUInt8)
    assert volume.same_grid(SetupCorrection.back_on(labels, daily), daily)


def test_setup_candidates_are_judged_over_the_whole_daily_ct_so_slipping_the_scans_apart_never_wins():
    from synthlab.crossstitch.setup import _mismatch, _registration

    bone = np.zeros((20, 40, 40), np.float32)
    bone[8:12, 10:14, 8:12] = bone[8:12, 10:14, 28:32] = 800.0  # two femoral heads
    daily = volume.image_like(bone, make_image((40, 40, 20), (4.0, 4.0, 4.0), (0.0, 0.0, 0.0)))
    planning = volume.image_like(bone * 1.1, daily)  # the same bone, scanned a little brighter
    identity, apart = sitk.Euler3DTransform(), sitk.Euler3DTransform()
    apart.SetTranslation((150.0, 0.0, 0.0))  # lays the planning scan's empty edge over the daily scan's edge
    method = _registration()
    method.SetInitialTransform(apart, inPlace=False)
    assert method.MetricEvaluate(daily, planning) < _mismatch(identity, daily, planning)  # where they overlap
    assert _mismatch(apart, daily, planning) > _mismatch(identity, daily, planning)  # over the whole daily CT


def test_contours_follow_a_patient_lying_further_off_only_with_setup_correction(contour_registry, pair, tmp_path):
    daily, truth = volume.read_image(pair["fixed"]), read_labels(pair["fixed_labels"])
    centre = np.mean(volume.physical_bounds(daily), axis=0)
    patient = SetupCorrection(_rigid(centre, (0, 0, 3.0), (15.0, 10.0, -9.0)))
    shifted = {**pair, "fixed": volume.write_image(patient.moved(daily), tmp_path / "shifted.nii.gz")}
    write_labels(LabelMap(patient.moved(truth.image), truth.segments), tmp_path / "truth.seg.nrrd")
    dice = {}
    for option in ("--no-setup-correction", "--setup-correction"):
        folder = tmp_path / option.strip("-")
        folder.mkdir()
        result, _ = contour(contour_registry, shifted, folder, option, "--reference-labels",
                            tmp_path / "truth.seg.nrrd", "--progress", "json")
        assert result.returncode == 0, result.stderr
        output = json.loads(result.stdout.splitlines()[-1])["result"]
        dice[option] = np.mean([m["dice"] for m in output["metrics"]["organs"].values()])
        correction = output["setup_correction"]
        assert (correction is None) == (option == "--no-setup-correction")
    assert np.linalg.norm(correction["translation_mm"]) > 10
    assert dice["--setup-correction"] > dice["--no-setup-correction"] + 0.2
