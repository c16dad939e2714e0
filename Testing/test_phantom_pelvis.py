"""Pelvis phantom: HU, organ volumes and positions, motion between fractions, rigid bones, the command."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from synthlab import cli, datalist, labels, volume
from synthlab.phantoms import pelvis
from synthlab.phantoms.pelvis import BLADDER, PROSTATE, RECTUM, SEMINAL_VESICLES
from synthlab.phantoms.shapes import rotation_matrix


@pytest.fixture(scope="module")
def patients() -> list[pelvis.PelvisPatient]:
    return [pelvis.generate_patient(seed, fractions=4, size="small") for seed in (11, 12)]


@pytest.fixture(scope="module")
def full_patient() -> pelvis.PelvisPatient:
    return pelvis.generate_patient(13, fractions=1, size="full")


def _inner_mean(ct: sitk.Image, mask: np.ndarray) -> float:
    """Mean HU away from the organ's edge (partial volume), eroded in-plane."""
    inner = ndimage.binary_erosion(mask, structure=np.ones((1, 5, 5)))
    assert inner.sum() >= 20
    return float(volume.array_of(ct)[inner].mean())


def _centroid_mm(labels_map: labels.LabelMap, value: int) -> np.ndarray:
    index = np.argwhere(volume.array_of(labels_map.image) == value).mean(axis=0)[::-1]
    return np.array(labels_map.image.TransformContinuousIndexToPhysicalPoint(index.tolist()))


def test_organs_have_soft_tissue_hounsfield_units(patients):
    for patient in patients:
        for ct, contours in patient.scans:
            values = volume.array_of(contours.image)
            assert 15 < _inner_mean(ct, values == PROSTATE) < 65
            assert -10 < _inner_mean(ct, values == BLADDER) < 30  # urine
            assert np.percentile(volume.array_of(ct), 99.9) > 700  # cortical bone


def test_body_fat_muscle_air_and_pixel_sizes_of_a_full_scan(full_patient):
    ct, _ = full_patient.scans[0]
    values = volume.array_of(ct)
    assert abs(float(values[:, :3, :3].mean()) + 1000) < 30  # air in the corner
    histogram, edges = np.histogram(values, bins=np.arange(-200, 120, 10))
    peaks = edges[np.argsort(histogram)[-6:]]
    assert any(-130 <= p <= -70 for p in peaks) and any(20 <= p <= 70 for p in peaks)  # fat and muscle
    spacing = ct.GetSpacing()
    assert 1.0 <= spacing[0] == spacing[1] <= 1.5 and spacing[2] in (2.0, 2.5, 3.0)


def test_prostate_volume_is_clinical_and_kept_between_fractions(patients):
    for patient in patients:
        volumes = [contours.volume_ml("prostate") for _, contours in patient.scans]
        assert all(20 <= v <= 60 for v in volumes)
        assert max(volumes) / min(volumes) < 1.1  # it moves and tilts but is not inflated


def test_bladder_filling_varies_at_least_one_and_a_half_times(patients):
    for patient in patients:
        volumes = [contours.volume_ml("bladder") for _, contours in patient.scans]
        assert max(volumes) / min(volumes) >= 1.5


def test_seminal_vesicles_lie_posterior_superior_to_the_prostate(patients):
    for patient in patients:
        for _, contours in patient.scans:
            offset = _centroid_mm(contours, SEMINAL_VESICLES) - _centroid_mm(contours, PROSTATE)
            assert offset[1] > 5 and offset[2] > 5  # LPS: +y posterior, +z superior
            rectum = _centroid_mm(contours, RECTUM) - _centroid_mm(contours, PROSTATE)
            assert rectum[1] > 10


def _to_patient_frame(patient: pelvis.PelvisPatient, index: int, point: np.ndarray) -> np.ndarray:
    scan = patient.parameters["scans"][index]
    rotation = rotation_matrix(scan["setup_rotation_deg"])
    return rotation.T @ (point - np.asarray(scan["setup_translation"]))


def test_organs_move_several_mm_and_the_seminal_vesicles_more(patients):
    motions = {PROSTATE: [], SEMINAL_VESICLES: []}
    for patient in patients:
        reference = {v: _to_patient_frame(patient, 0, _centroid_mm(patient.scans[0][1], v)) for v in motions}
        for index, (_, contours) in enumerate(patient.scans[1:], start=1):
            for value in motions:
                moved = _to_patient_frame(patient, index, _centroid_mm(contours, value)) - reference[value]
                motions[value].append(np.linalg.norm(moved))
    assert 1.0 < np.mean(motions[PROSTATE]) < 12.0
    assert np.mean(motions[SEMINAL_VESICLES]) > np.mean(motions[PROSTATE])


def test_bones_move_rigidly_with_the_couch_set_up(full_patient):
    """Planning CT moved by the recorded set-up change overlays the daily CT's bones."""
    (planning, _), (daily, _) = full_patient.scans
    first, second = full_patient.parameters["scans"][:2]
    rotations = [rotation_matrix(s["setup_rotation_deg"]) for s in (first, second)]
    # daily room -> patient -> planning room: x_p = R0 R1ᵀ (x_d − t1) + t0
    matrix = rotations[0] @ rotations[1].T
    transform = sitk.AffineTransform(matrix.ravel().tolist(),
                                     (np.asarray(first["setup_translation"])
                                      - matrix @ np.asarray(second["setup_translation"])).tolist())
    moved = sitk.Resample(planning, daily, transform, sitk.sitkLinear, -1000.0)
    inside = volume.array_of(sitk.Resample(sitk.Image(planning.GetSize(), sitk.sitkUInt8) + 1, daily, transform,
                                           sitk.sitkNearestNeighbor, 0)) > 0
    bone_moved = (volume.array_of(moved) > 400) & inside
    bone_daily = (volume.array_of(daily) > 400) & inside
    dice = 2 * (bone_moved & bone_daily).sum() / (bone_moved.sum() + bone_daily.sum())
    assert dice > 0.9
    unmoved = (volume.array_of(planning) > 400) & inside
    assert 2 * (unmoved & bone_daily).sum() / (unmoved.sum() + bone_daily.sum()) < dice


def test_contours_are_one_label_a_voxel_with_names_and_all_organs(patients, tmp_path):
    ct, contours = patients[0].scans[1]
    path = labels.write_labels(contours, tmp_path / "contours.seg.nrrd")
    back = labels.read_labels(path)  # refuses overlapping (multi-layer) segmentations
    assert [s.name for s in back.segments] == ["prostate", "seminal vesicles", "rectum", "bladder"]
    assert back.present_values() == [1, 2, 3, 4]
    assert volume.same_grid(back.image, ct)


def test_same_seed_same_patient(patients):
    again = pelvis.generate_patient(11, fractions=4, size="small")
    assert again.parameters == patients[0].parameters
    assert np.array_equal(volume.array_of(again.scans[2][0]), volume.array_of(patients[0].scans[2][0]))
    assert again.parameters != patients[1].parameters


def test_phantom_pelvis_command_pairs_daily_with_planning_split_by_patient(tmp_path):
    out = tmp_path / "pelvis"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["phantom", "pelvis", "--out", str(out), "--patients", "3", "--fractions", "2", "--size", "small",
                  "--preview", "--progress", "none"])
    assert exit_info.value.code == 0
    splits = datalist.read_datalist(out / "datalist.json")
    patients_in = {name: {entry["patient"] for entry in splits[name]} for name in datalist.SPLITS}
    assert all(len(patients_in[name]) == 1 for name in datalist.SPLITS)
    assert len(set.union(*patients_in.values())) == 3  # no patient in two splits
    entry = splits["training"][0]
    assert entry["moving"].endswith("planning_ct.nii.gz") and entry["fixed"].endswith("fraction_01_ct.nii.gz")
    fixed, moving = sitk.ReadImage(entry["fixed"]), sitk.ReadImage(entry["moving"])
    assert fixed.GetPixelID() == sitk.sitkInt16 and volume.same_grid(fixed, moving)
    assert labels.read_labels(entry["fixed_labels"]).present_values() == [1, 2, 3, 4]
    assert (out / "preview.png").stat().st_size > 10_000
