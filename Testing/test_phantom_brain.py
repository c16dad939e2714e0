"""Brain phantom: physics of the contrasts, tumour compartments, reproducibility and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from synthlab import cli, datalist, labels, volume
from synthlab.phantoms import anatomy, brain, tumour


@pytest.fixture(scope="module")
def cases() -> list[brain.BrainCase]:
    """Two tumour cases (one per anatomy) and one healthy case, small size."""
    return [brain.generate_case(1, with_tumour=True, anatomy_name="mni152"),
            brain.generate_case(2, with_tumour=True, anatomy_name="colin27"),
            brain.generate_case(3, with_tumour=False)]


def _mean(case: brain.BrainCase, modality: str, region: np.ndarray) -> float:
    assert region.sum() >= 10, "region too small to measure"
    return float(volume.array_of(case.images[modality])[region].mean())


def _pure(case: brain.BrainCase) -> dict[str, np.ndarray]:
    """Voxels made (almost) of one healthy tissue."""
    f = case.fractions
    return {"wm": f["wm"] > 0.9, "gm": f["gm"] > 0.8, "csf": f["csf"] > 0.9}


@pytest.mark.parametrize("name", anatomy.ANATOMIES)
def test_template_tissue_fractions_are_partial_volumes_of_a_brain(name):
    fractions = anatomy.tissue_fractions(name)
    gm, wm, csf = (volume.array_of(image) for image in (fractions.gm, fractions.wm, fractions.csf))
    total = gm + wm + csf
    assert total.min() >= -1e-5 and total.max() <= 1 + 1e-5
    assert 1100 < total.sum() / 1000 < 2100  # intracranial volume in ml at 1 mm
    assert 0.4 < gm.sum() / (gm.sum() + wm.sum()) < 0.7


def test_t1_weighted_white_matter_brighter_than_grey_brighter_than_csf(cases):
    for case in cases:
        pure = _pure(case)
        assert _mean(case, "t1", pure["wm"]) > _mean(case, "t1", pure["gm"]) > _mean(case, "t1", pure["csf"])


def test_csf_brightest_on_t2_weighted_and_adc(cases):
    for case in cases:
        pure = _pure(case)
        for modality in ("t2", "adc"):
            csf = _mean(case, modality, pure["csf"])
            assert csf > _mean(case, modality, pure["gm"]) > _mean(case, modality, pure["wm"])


def test_flair_suppresses_csf(cases):
    for case in cases:
        pure = _pure(case)
        assert _mean(case, "flair", pure["csf"]) < 0.6 * _mean(case, "flair", pure["wm"])


def test_adc_values_are_physical(cases):
    for case in cases:
        pure = _pure(case)
        assert 550 < _mean(case, "adc", pure["wm"]) < 900  # 1e-6 mm²/s
        assert _mean(case, "adc", pure["csf"]) > 2000


def test_grey_matter_cbv_above_white_matter_and_csf_has_little(cases):
    for case in cases:
        pure = _pure(case)
        wm = _mean(case, "cbv", pure["wm"])
        assert 1.3 * wm < _mean(case, "cbv", pure["gm"])
        assert _mean(case, "cbv", pure["csf"]) < wm


def test_cbv_has_vascular_texture_not_flat_tissue_values(cases):
    case = cases[2]
    cbv = volume.array_of(case.images["cbv"])[_pure(case)["gm"]]
    assert cbv.std() / cbv.mean() > 0.12  # flat tissue values with DSC noise give about 0.03
    assert np.percentile(cbv, 99) > 2 * np.median(cbv)  # vessels


def test_tumour_compartments_have_their_signatures(cases):
    cores = 0
    for case in cases[:2]:
        values = volume.array_of(case.labels.image)
        wm = _pure(case)["wm"] & (values == 0)
        assert _mean(case, "cbv", values == 3) >= 2 * _mean(case, "cbv", wm)  # rim
        assert _mean(case, "flair", values == 2) > _mean(case, "flair", wm)  # oedema
        assert _mean(case, "adc", values == 2) > _mean(case, "adc", wm)
        if (values == 1).sum() >= 10:
            cores += 1
            assert _mean(case, "adc", values == 1) > _mean(case, "adc", wm)
            assert _mean(case, "cbv", values == 1) < 0.5 * _mean(case, "cbv", values == 3)
    assert cores >= 1


def test_tumour_labels_name_the_subregions_and_healthy_cases_have_none(cases):
    assert cases[0].has_tumour and cases[1].has_tumour and not cases[2].has_tumour
    assert [s.name for s in cases[0].labels.segments] == ["necrotic core", "oedema", "enhancing rim"]
    assert set(cases[0].labels.present_values()) >= {2, 3}


def test_tumour_tissue_is_pushed_outwards_without_folding():
    spec = tumour.TumourSpec((0.0, 0.0, 0.0), radius_mm=10.0, core_ratio=0.5, oedema_ratio=1.5,
                             irregularity=0.2, push=0.5)
    radii = np.linspace(0, 60, 121, dtype=np.float32)
    points = np.zeros((3, 1, 1, radii.size), np.float32)
    points[0, 0, 0] = radii
    source = tumour.displaced_points(points, spec)[0, 0, 0]
    assert np.all(source <= radii + 1e-4)  # tissue comes from nearer the tumour: it was pushed out
    assert np.all(np.diff(source) > 0)  # monotonic: no tissue folds
    assert radii[-1] - source[-1] < 0.01 and radii[20] - source[20] > 2.0


def test_brain_mask_covers_the_images_and_everything_shares_one_grid(cases):
    case = cases[0]
    mask = volume.array_of(case.mask) > 0
    assert 1000 < mask.sum() * 8 / 1000 < 2400  # ml at 2 mm
    for image in (*case.images.values(), case.labels.image):
        assert volume.same_grid(image, case.mask)
    assert np.all(volume.array_of(case.images["t1"])[~mask] == 0)  # skull-stripped
    assert np.all((volume.array_of(case.labels.image) > 0) <= mask)


def test_same_seed_same_case_other_seed_other_subject(cases):
    again = brain.generate_case(3, with_tumour=False)
    assert np.array_equal(volume.array_of(again.images["flair"]), volume.array_of(cases[2].images["flair"]))
    assert again.parameters == cases[2].parameters
    other = brain.generate_case(4, with_tumour=False, anatomy_name=cases[2].parameters["anatomy"])
    assert other.parameters["scale"] != cases[2].parameters["scale"]
    assert other.parameters["protocol"] != cases[2].parameters["protocol"]


def test_phantom_brain_command_writes_cases_datalist_and_preview(tmp_path, capsys):
    out = tmp_path / "brain"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["phantom", "brain", "--out", str(out), "--cases", "3", "--seed", "7", "--preview",
                  "--progress", "none"])
    assert exit_info.value.code == 0
    splits = datalist.read_datalist(out / "datalist.json")
    assert [len(splits[name]) for name in datalist.SPLITS] == [1, 1, 1]
    entry = splits["training"][0]
    images = {key: sitk.ReadImage(entry[key]) for key in (*brain.MODALITIES, "mask")}
    assert all(volume.same_grid(image, images["mask"]) for image in images.values())
    assert images["t1"].GetSpacing() == (2.0, 2.0, 2.0) and images["t1"].GetSize() == (96, 96, 96)
    tumour_labels = labels.read_labels(entry["label"])
    assert [s.name for s in tumour_labels.segments][:3] == ["necrotic core", "oedema", "enhancing rim"]
    parameters = json.loads((out / entry["case"] / "parameters.json").read_text())
    assert parameters["anatomy"] in anatomy.ANATOMIES and "protocol" in parameters
    assert (out / "preview.png").stat().st_size > 10_000


def test_phantom_brain_refuses_to_overwrite_a_dataset(tmp_path, capsys):
    (tmp_path / "datalist.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["phantom", "brain", "--out", str(tmp_path), "--cases", "1", "--progress", "none"])
    assert exit_info.value.code == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert (tmp_path / "datalist.json").read_text() == "{}"


def test_cases_made_by_two_processes_equal_those_made_one_after_another(tmp_path):
    quiet = lambda *_: None  # noqa: E731
    alone = brain.generate_dataset(tmp_path / "alone", 2, 7, "small", quiet)
    pooled = brain.generate_dataset(tmp_path / "pooled", 2, 7, "small", quiet, workers=2)
    assert json.loads(pooled.read_text()) == json.loads(alone.read_text())
    for case in ("case_000", "case_001"):
        for name in ("flair", "cbv", "mask"):
            one, other = (sitk.ReadImage(str(folder.parent / case / f"{name}.nii.gz")) for folder in (alone, pooled))
            assert np.array_equal(volume.array_of(one), volume.array_of(other)), f"{case} {name} differs"
        assert ((alone.parent / case / "parameters.json").read_text()
                == (pooled.parent / case / "parameters.json").read_text())


def test_phantom_brain_refuses_a_negative_worker_count_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["phantom", "brain", "--out", str(tmp_path / "brain"), "--workers", "-1", "--progress", "none"])
    assert exit_info.value.code == 2
    assert "--workers: must be 0 or more (got -1)" in capsys.readouterr().err
    assert not (tmp_path / "brain").exists()
