"""Registration core: cross-stitch units, network configurations, field conventions, losses, instance
optimisation alone (no network) on ITK's real BrainWeb slices with a known shift."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import rotation_direction
from monai.networks.blocks import DVF2DDF, Warp

from synthlab import volume
from synthlab.crossstitch import geometry, losses
from synthlab.crossstitch.commands import run_register
from synthlab.crossstitch.data import PERCENTILE_RANGE, PairArrays
from synthlab.crossstitch.inference import (
    LoadedModel,
    fuse_with_segmentation,
    near_expected_organs,
    register_images,
)
from synthlab.crossstitch.instance import SegmentationGuide, refine_field
from synthlab.crossstitch.networks import CONFIGURATIONS, CrossStitchUnit, JointNetwork, start_branches_from
from synthlab.crossstitch.training import PatchDataset, RegistrationModule
from synthlab.errors import InputError
from synthlab.labels import PELVIS_SEGMENTS, LabelMap, parse_organ_weights

BRAINWEB = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")


def test_cross_stitch_unit_mixes_each_channel_with_its_own_matrix():
    unit = CrossStitchUnit(channels=2)
    with torch.no_grad():
        unit.alpha.copy_(torch.tensor([[[1.0, 0.2], [0.0, 0.5]], [[0.0, 0.3], [1.0, 0.7]]]))
    a, b = torch.ones(1, 2, 3, 3), 2 * torch.ones(1, 2, 3, 3)
    mixed_a, mixed_b = unit(a, b)
    assert torch.allclose(mixed_a[0, :, 0, 0], torch.tensor([1.0, 0.2 + 0.5 * 2]))
    assert torch.allclose(mixed_b[0, :, 0, 0], torch.tensor([0.0 + 2.0, 0.3 + 0.7 * 2]))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_every_configuration_predicts_three_scales_at_input_size(configuration, dims):
    network = JointNetwork(configuration, dims, organs=4, filters=(4, 8, 8))
    shape = (1, 1) + (16,) * dims
    output = network(torch.rand(shape), torch.rand(shape), torch.rand((1, 4) + shape[2:]))
    assert ("ddf" in output) == (configuration != "segmentation-only")
    assert ("seg" in output) == (configuration != "registration-only")
    for name, channels in (("ddf", dims), ("seg", 5)):
        for scale in output.get(name, []):
            assert scale.shape == (1, channels) + shape[2:]
    assert len(next(iter(output.values()))) == 3


def _segmentation_gradient_reaches_registration(configuration: str) -> bool:
    network = JointNetwork(configuration, 2, organs=1, filters=(4, 8, 8))
    shape = (1, 1, 16, 16)
    output = network(torch.rand(shape), torch.rand(shape), torch.rand(shape))
    output["seg"][-1].sum().backward()
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in network.registration.parameters())


def test_cross_stitch_links_the_branches_and_loss_joined_does_not():
    assert _segmentation_gradient_reaches_registration("crossstitch")
    assert not _segmentation_gradient_reaches_registration("loss-joined")


def test_a_joint_network_starts_from_single_task_networks():
    torch.manual_seed(0)
    single = {name: JointNetwork(name, 2, organs=2, filters=(4, 8, 8)) for name in ("registration-only",
                                                                                     "segmentation-only")}
    joint = JointNetwork("crossstitch", 2, organs=2, filters=(4, 8, 8))
    for network in single.values():
        start_branches_from(joint, network.state_dict(), keep=1.0)
    fixed, moving, labels = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), torch.rand(1, 2, 16, 16)
    with torch.no_grad():
        output = joint(fixed, moving, labels)
        alone = {name: network(fixed, moving, labels) for name, network in single.items()}
    # with identity units, each branch gives exactly what its single-task network gave
    assert torch.allclose(output["seg"][-1], alone["segmentation-only"]["seg"][-1], atol=1e-6)
    assert torch.allclose(output["ddf"][-1], alone["registration-only"]["ddf"][-1], atol=1e-6)
    start_branches_from(joint, single["segmentation-only"].state_dict())
    assert torch.allclose(joint.stitch_up[0].alpha[0, 0], torch.tensor(0.9))  # near identity, still linked
    assert torch.allclose(joint.stitch_up[0].alpha[0, 1], torch.tensor(0.1))
    with pytest.raises(ValueError, match="no registration branch"):
        start_branches_from(single["segmentation-only"], single["registration-only"].state_dict())
    trained = JointNetwork("crossstitch", 2, organs=2, filters=(4, 8, 8))
    trained.stitch_up[0].alpha.data.uniform_(-1, 1)
    start_branches_from(joint, trained.state_dict())  # a joint model goes on with its own units
    assert torch.equal(joint.stitch_up[0].alpha, trained.stitch_up[0].alpha)


@pytest.mark.parametrize("configuration", ["crossstitch", "loss-joined"])
def test_the_cross_stitch_units_step_at_their_own_rate(configuration):
    module = RegistrationModule(configuration, 2, organs=("a", "b"), filters=(4, 8, 8), learning_rate=1e-3,
                                stitch_rate_scale=20)
    optimiser = module.configure_optimizers()
    rates = [group["lr"] for group in optimiser.param_groups]
    units = {id(p) for name, p in module.named_parameters() if "stitch" in name}
    assert sum(len(group["params"]) for group in optimiser.param_groups) == len(list(module.parameters()))
    if configuration == "loss-joined":  # no units: one group at the common rate
        assert not units and rates == [1e-3]
        return
    assert rates == pytest.approx([1e-3, 2e-2])
    assert {id(p) for p in optimiser.param_groups[1]["params"]} == units


def test_untrained_registration_starts_near_identity():
    network = JointNetwork("registration-only", 3, organs=0, label_inputs=False, filters=(4, 8, 8))
    ddf = network(torch.rand(1, 1, 16, 16, 16), torch.rand(1, 1, 16, 16, 16))["ddf"][-1]
    assert ddf.abs().max() < 1e-2


def test_diffeomorphic_integration_keeps_a_strong_compression_free_of_folds():
    size = 32
    y, x = torch.meshgrid(torch.arange(size) - size / 2, torch.arange(size) - size / 2, indexing="ij")
    bump = torch.exp(-(x ** 2 + y ** 2) / (2 * 6.0 ** 2))
    velocity = torch.stack([-2.0 * y * bump, torch.zeros_like(y)])[None]  # as a displacement it folds
    integrated = DVF2DDF(num_steps=7)(velocity)
    grid = geometry.model_grid(sitk.Image(size, size, sitk.sitkFloat32), (1.0, 1.0))
    assert geometry.folding_fraction(grid.field_to_mm(velocity[0].numpy())) > 0.01
    assert geometry.folding_fraction(grid.field_to_mm(integrated[0].numpy())) < 0.005


@pytest.mark.parametrize("direction", [(-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0), rotation_direction(25)],
                         ids=["RAS-stored", "oblique"])
def test_folding_is_measured_in_physical_space_whatever_the_grid_direction(direction):
    _, y, x = np.mgrid[:16, :18, :20].astype(float)
    along_first_axis = np.zeros((16, 18, 20, 3))
    along_first_axis[..., 0] = -1.5 * x * 2.0  # mm: the first voxel axis squeezed past zero, folds everywhere
    along_first_axis[..., 1] = 0.2 * y  # mm: a gentle stretch along the second: no folds on its own
    matrix = np.array(direction).reshape(3, 3)
    for stretch_only in (False, True):
        vectors = along_first_axis.copy()
        if stretch_only:
            vectors[..., 0] = 0
        field = sitk.GetImageFromArray(vectors @ matrix.T, isVector=True)  # the same motion in LPS mm
        field.SetSpacing((2.0, 1.0, 3.0))
        field.SetDirection(direction)
        assert geometry.folding_fraction(field) == (0.0 if stretch_only else pytest.approx(1.0, abs=0.15))


def test_field_in_voxels_becomes_the_itk_physical_field():
    """MONAI's Warp with a voxel field equals SimpleITK's resampling through the field we export."""
    image = sitk.GaussianSource(sitk.sitkFloat32, (24, 20, 16), sigma=(5, 4, 3), mean=(12, 9, 7), scale=100)
    image.SetSpacing((2.0, 1.5, 3.0))
    grid = geometry.model_grid(image, (2.0, 1.5, 3.0))
    ddf = np.zeros((3,) + grid.shape, np.float32)
    ddf[0], ddf[1], ddf[2] = 1.0, -2.0, 1.5  # voxels along z, y, x
    field = grid.field_to_mm(ddf)
    assert np.allclose(field.GetPixel(0, 0, 0), (1.5 * 2.0, -2.0 * 1.5, 1.0 * 3.0))
    moved = volume.array_of(geometry.warp_image(sitk.Cast(image, sitk.sitkFloat32), image, field, 0.0))
    warped = Warp(mode="bilinear", padding_mode="zeros")(torch.from_numpy(volume.array_of(image))[None, None],
                                                        torch.from_numpy(ddf)[None])[0, 0].numpy()
    inner = (slice(2, -2),) * 3
    assert np.allclose(moved[inner], warped[inner], atol=0.05 * volume.array_of(image).max())


def test_field_is_physically_the_same_for_a_permuted_and_flipped_fixed_grid():
    image = sitk.GaussianSource(sitk.sitkFloat32, (20, 24, 16), sigma=(5, 5, 4), mean=(10, 12, 8))
    grid = geometry.model_grid(image, (1.0, 1.0, 1.0))
    ddf = np.random.default_rng(0).normal(0, 1, (3,) + grid.shape).astype(np.float32)
    field = grid.field_to_mm(ddf)
    flipped = sitk.Flip(sitk.PermuteAxes(image, (2, 0, 1)), (True, False, True))
    on_flipped = geometry.field_on_fixed_grid(field, flipped)
    back = volume.array_of(volume.resample(on_flipped, image), np.float64)
    assert np.allclose(back, sitk.GetArrayFromImage(field), atol=1e-6)


def test_model_grid_is_a_multiple_of_four_and_covers_the_region():
    image = sitk.Image(37, 41, 23, sitk.sitkFloat32)
    image.SetSpacing((1.2, 1.2, 2.5))
    grid = geometry.model_grid(image, (3.0, 3.0, 3.0))
    assert all(side % 4 == 0 for side in grid.shape)
    low, high = volume.physical_bounds(image)
    grid_low, grid_high = volume.physical_bounds(grid.reference)
    assert (grid_low <= low + 1e-6).all() and (grid_high >= high - 1e-6).all()
    with pytest.raises(InputError, match="3D"):
        geometry.model_grid(image, (3.0, 3.0))


def test_a_cut_field_of_view_blanks_the_fixed_scan_beyond_a_box_and_leaves_the_rest_whole():
    rng = np.random.default_rng(0)
    shape = (20, 24, 24)
    organs = (rng.random((2, *shape)) > 0.5).astype(np.float32)
    pair = PairArrays(None, rng.uniform(0.4, 1, shape).astype(np.float32),
                      rng.uniform(0.4, 1, shape).astype(np.float32), organs, organs.copy())
    kept_slices = []
    cuts = PatchDataset([pair], shape, augment=True, samples_per_epoch=20, field_of_view_cuts=1.0)
    for item in (cuts[index] for index in range(len(cuts))):
        scanned = item["field_of_view"][0].bool()
        along = [scanned.any(dim=tuple(a for a in range(3) if a != axis)) for axis in range(3)]
        assert torch.equal(scanned, along[0][:, None, None] & along[1][None, :, None] & along[2][None, None, :])
        assert all(int(kept.sum()) == int(kept.nonzero().max() - kept.nonzero().min()) + 1 for kept in along)
        rows = along[0]
        assert (item["fixed"][0][~scanned] == 0).all() and (item["fixed"][0][scanned] > 0).all()
        assert (item["moving"] > 0).all()  # the planning scan is whole
        assert item["fixed_organs"].sum() == organs.sum()  # its contours keep the full truth
        kept_slices.append(int(rows.sum()))
    assert min(kept_slices) >= 0.4 * shape[0] - 1 and max(kept_slices) <= 0.85 * shape[0] + 1
    assert len(set(kept_slices)) > 2  # a random cut each time
    uncut = PatchDataset([pair], shape, augment=True, field_of_view_cuts=0.0)[0]
    assert "field_of_view" not in uncut and not PatchDataset([pair], shape, False, field_of_view_cuts=1.0
                                                              ).field_of_view_cuts


@pytest.mark.parametrize("kind", losses.PHOTOMETRIC_LOSSES)
def test_photometric_loss_counts_only_the_scanned_voxels(kind):
    torch.manual_seed(0)
    fixed = torch.rand(1, 1, 24, 24, 24)
    warped = fixed.clone()
    warped[..., 12:] = torch.rand(1, 1, 24, 24, 12)  # differs beyond the cut only
    scanned = torch.zeros_like(fixed)
    scanned[..., :12] = 1
    loss = losses.PhotometricLoss(kind)
    assert loss(warped, fixed, torch.ones_like(fixed)) == pytest.approx(float(loss(warped, fixed)))
    assert loss(warped, fixed, scanned) < loss(warped, fixed) - 0.05
    far_from_the_cut = torch.zeros_like(fixed)
    far_from_the_cut[..., :7] = 1  # beyond NCC's 9-voxel window of the cut
    assert loss(warped, fixed, far_from_the_cut) == pytest.approx(float(loss(fixed, fixed, far_from_the_cut)))


def test_edge_aware_smoothness_lets_the_field_bend_at_image_edges():
    fixed = torch.zeros(1, 1, 32, 32)
    fixed[..., 16:] = 1.0  # an edge between columns 15 and 16
    at_edge, in_flat = torch.zeros(1, 2, 32, 32), torch.zeros(1, 2, 32, 32)
    at_edge[:, :, :, 16:] = 1.0
    in_flat[:, :, :, 8:] = 1.0
    assert losses.edge_aware_smoothness(at_edge, fixed) < 0.1 * losses.edge_aware_smoothness(in_flat, fixed)


def test_segmentation_guided_instance_optimisation_moves_the_contour_onto_the_models_segmentation():
    """Identical images give the photometric loss nothing to do; the model's own segmentation of the fixed
    image, 4 voxels to the right of the moving contour, pulls the contour over."""
    torch.manual_seed(0)
    image = torch.rand(1, 1, 64, 64)
    moving_organ, segmented = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    moving_organ[..., 24:40, 20:36] = 1.0
    segmented[..., 24:40, 24:40] = 1.0
    warp = Warp(mode="bilinear", padding_mode="border")

    def dice_after(guide):
        field = refine_field(torch.zeros(1, 2, 64, 64), image, image.clone(), "ncc", 30, guide=guide)
        warped = warp(moving_organ, field) > 0.5
        return float(2 * (warped & (segmented > 0)).sum() / (warped.sum() + segmented.sum()))

    unguided = dice_after(None)
    guided = dice_after(SegmentationGuide(moving_organ, segmented))
    assert unguided < 0.8 < guided


def test_segmentation_loss_teaches_a_small_organ_beside_a_large_one():
    """A per-voxel linear model trained on the segmentation loss finds a 2-voxel-wide organ next to a large one."""
    torch.manual_seed(0)
    labels = torch.zeros(2, 1, 32, 32, dtype=torch.long)
    labels[:, :, 4:28, 4:20] = 1
    labels[0, :, 10:20, 22:24] = 2  # the small organ is in one patch only, as a seminal vesicle often is
    image = labels.float() + 0.1 * torch.randn(labels.shape)
    model = torch.nn.Conv2d(1, 3, kernel_size=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    loss_of = losses.segmentation_loss()
    for _ in range(150):
        optimiser.zero_grad()
        loss_of(model(image), labels).backward()
        optimiser.step()
    predicted = model(image).argmax(1, keepdim=True)
    small, found = labels == 2, predicted == 2
    assert 2 * (small & found).sum() / (small.sum() + found.sum()) > 0.9


def test_learned_task_weights_down_weight_the_noisier_task():
    weights = losses.TaskWeights(2, learned=True)
    optimiser = torch.optim.SGD(weights.parameters(), lr=0.1)
    for _ in range(200):
        optimiser.zero_grad()
        weights([torch.tensor(2.0), torch.tensor(0.2)]).backward()
        optimiser.step()
    assert weights.log_variances[0] > weights.log_variances[1]
    assert torch.allclose(weights.log_variances.exp(), torch.tensor([2.0, 0.2]), rtol=0.1)


def _untrained_model(dims: int) -> LoadedModel:
    card = {"task": "register", "configuration": "registration-only", "spatial_dims": dims, "organs": [],
            "spacing": [1.0] * dims, "intensity": {"kind": "percentile", "percentiles": list(PERCENTILE_RANGE)},
            "photometric": "ncc", "id": "untrained", "filters": [4, 8, 8]}
    torch.manual_seed(0)
    network = JointNetwork("registration-only", dims, organs=0, label_inputs=False, filters=(4, 8, 8))
    return LoadedModel.from_weights(network.state_dict(), card, torch.device("cpu"))


@pytest.mark.skipif(not BRAINWEB.is_dir(), reason="Debian insighttoolkit5-examples is not installed")
def test_register_with_no_model_registered_recovers_the_known_brainweb_shift(tmp_path, monkeypatch):
    """ITK's BrainWeb slice shifted by (13, 17) mm, no register model registered: instance optimisation
    alone from zero displacement; the field inside the head must be (13, 17)."""
    (tmp_path / "Models.json").write_text(json.dumps({"models": []}))
    monkeypatch.setenv("SYNTHLAB_MODELS", str(tmp_path / "Models.json"))
    fixed_path = BRAINWEB / "BrainProtonDensitySliceBorder20.png"
    moving_path = BRAINWEB / "BrainProtonDensitySliceShifted13x17y.png"
    events = []
    result = run_register(fixed_path, moving_path, tmp_path / "warped.png", tmp_path / "field.nrrd", None, "cpu",
                          None, None, lambda fraction, message, **_: events.append(message))
    assert result["model"] == "optimisation-only"
    assert any("instance optimisation alone" in message for message in events)
    fixed = volume.read_image(fixed_path, dimension=2)
    head = volume.array_of(fixed) > 30
    field = sitk.GetArrayFromImage(volume.read_image(tmp_path / "field.nrrd", dimension=2, check_content=False))
    assert np.median(np.linalg.norm(field[head] - np.array([13.0, 17.0]), axis=1)) < 1.0
    warped = volume.array_of(volume.read_image(tmp_path / "warped.png", dimension=2))
    moving = volume.array_of(volume.read_image(moving_path, dimension=2))
    before = np.abs(moving.astype(float) - volume.array_of(fixed))[head].mean()
    assert np.abs(warped.astype(float) - volume.array_of(fixed))[head].mean() < 0.5 * before


def test_a_3d_model_refuses_a_2d_image():
    image = sitk.GaussianSource(sitk.sitkFloat32, (32, 32), sigma=(6, 6), mean=(16, 16))
    with pytest.raises(InputError, match="2D image but model 'untrained' registers 3D"):
        register_images(_untrained_model(3), image, image)


def test_own_segmentation_keeps_only_the_pieces_near_where_each_organ_is_expected_or_else_the_closest():
    prostate, rectum, bladder = PELVIS_SEGMENTS[0], PELVIS_SEGMENTS[2], PELVIS_SEGMENTS[3]
    shape = (20, 40, 40)  # 2 mm voxels

    def labels(boxes: dict[int, list[tuple[slice, ...]]], segments, spacing=(2.0, 2.0, 2.0)) -> LabelMap:
        values = np.zeros(shape, np.uint16)
        for value, regions in boxes.items():
            for region in regions:
                values[region] = value
        image = sitk.GetImageFromArray(values)
        image.SetSpacing(spacing)
        return LabelMap(image, list(segments))

    organ = (slice(8, 12), slice(10, 16), slice(10, 16))
    expected = labels({1: [organ], 4: [(slice(8, 12), slice(24, 30), slice(24, 30))]}, (prostate, bladder))
    near = (slice(8, 12), slice(18, 20), slice(10, 16))  # a separate piece, 3 voxels (6 mm) from the expected prostate
    far = (slice(0, 2), slice(34, 38), slice(30, 34))  # the edge of the field, far from it
    rectum_far = (slice(16, 18), slice(2, 6), slice(34, 38))
    own = labels({1: [organ, near, far], 3: [rectum_far], 4: [(slice(8, 12), slice(25, 30), slice(25, 30))]},
                 (prostate, rectum, bladder))
    kept = volume.array_of(near_expected_organs(own, expected).image)
    before = volume.array_of(own.image)
    assert (kept[organ] == 1).all() and (kept[near] == 1).all()
    assert (kept[far] == 0).all()  # the far prostate piece is dropped
    assert (kept == 3).sum() == (before == 3).sum() > 0  # no expected rectum: nothing to compare with, kept as is
    assert (kept == 4).sum() == (before == 4).sum()
    too_strict = volume.array_of(near_expected_organs(own, expected, margin_mm=4.0).image)
    assert not (too_strict[near] == 1).any() and (too_strict[organ] == 1).all()
    moved = labels({1: [near, far]}, (prostate,))  # no piece within 4 mm: the closest one is kept, not none
    closest = volume.array_of(near_expected_organs(moved, expected, margin_mm=4.0).image)
    assert (closest[near] == 1).all() and not (closest[far] == 1).any()
    # distances are in mm along each axis: with 5 mm columns a piece 3 columns away is 15 mm away
    beside = (slice(8, 12), slice(10, 16), slice(18, 20))
    wide_columns = (5.0, 2.0, 2.0)
    wide = near_expected_organs(labels({1: [organ, beside]}, (prostate,), wide_columns),
                                labels({1: [organ]}, (prostate,), wide_columns), margin_mm=10.0)
    assert (volume.array_of(wide.image)[beside] == 0).all()


def test_fused_contour_weighs_the_warped_contour_against_the_models_segmentation_near_the_organ_only():
    organs = ["prostate", "seminal vesicles", "rectum", "bladder"]
    values, matched = [1, 4], {"prostate": 1, "bladder": 4}  # planning values; no seminal vesicles segment
    shape, spacing = (10, 30, 30), (2.0, 2.0, 2.0)
    warped = np.zeros((2, *shape), np.float32)
    warped[0][4:6, 5:15, 5:15] = 1  # the warped prostate
    warped[1][4:6, 20:25, 20:25] = 1  # the warped bladder
    probabilities = np.zeros((5, *shape), np.float32)
    probabilities[1][4:6, 5:15, 9:19] = 1  # the network sees the prostate 4 voxels further along x
    probabilities[1][4:6, 0:3, 27:30] = 1  # and a far piece, more than 20 mm from the warped prostate
    probabilities[4][4:6, 0:5, 0:5] = 1  # a bladder elsewhere, but the bladder is not weighed in
    reference = sitk.GetImageFromArray(np.zeros(shape, np.uint16))
    reference.SetSpacing(spacing)

    def contours(weight: float) -> np.ndarray:
        fused = fuse_with_segmentation(warped, values, probabilities, organs, matched,
                                       {"prostate": weight, "seminal vesicles": weight})
        np.testing.assert_array_equal(fused[1], warped[1])
        return volume.array_of(geometry.labels_from_masks(fused, values, reference))

    both, warped_only, seen_only = np.s_[4:6, 5:15, 9:15], np.s_[4:6, 5:15, 5:9], np.s_[4:6, 5:15, 15:19]
    np.testing.assert_array_equal(contours(0.0), volume.array_of(geometry.labels_from_masks(warped, values,
                                                                                              reference)))
    for weight, kept, dropped in ((0.4, warped_only, seen_only), (0.6, seen_only, warped_only)):
        labels = contours(weight)
        assert (labels[both] == 1).all() and (labels[kept] == 1).all() and (labels[dropped] == 0).all(), weight
    segments = [PELVIS_SEGMENTS[0], PELVIS_SEGMENTS[3]]
    near_warped = near_expected_organs(LabelMap(volume.image_like(contours(1.0), reference), segments),
                                       LabelMap(geometry.labels_from_masks(warped, values, reference), segments))
    kept = volume.array_of(near_warped.image)
    assert (kept[4:6, 0:3, 27:30] == 0).all() and (kept[seen_only] == 1).all()  # as inference keeps it


def test_segmentation_weights_come_from_the_card_unless_asked_and_must_name_known_organs_between_0_and_1():
    model = _untrained_model(3)
    model.card.update(organs=["prostate", "bladder"], inference={"segmentation_weights": {"bladder": 0.7}})
    assert model.segmentation_weights(None) == {"bladder": 0.7}
    assert model.segmentation_weights(parse_organ_weights("0.5", model.card["organs"])) == {
        "prostate": 0.5, "bladder": 0.5}
    assert model.segmentation_weights(parse_organ_weights("prostate=0.2,bladder=0", model.card["organs"])) == {
        "prostate": 0.2}  # a weight of 0 leaves that organ's warped contour as it is
    assert model.segmentation_weights(parse_organ_weights("none", model.card["organs"])) == {}
    for text, message in (("kidney=0.5", "unknown organ kidney"), ("bladder=1.5", "bladder: 1.5 is not between"),
                          ("lots", "give one number"), ("bladder=", "give one number")):
        with pytest.raises(InputError, match=message):
            model.segmentation_weights(parse_organ_weights(text, model.card["organs"]))
