"""Each module's MRML-level logic (<Module>Lib) on slicer-core: input checks and loading results as nodes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image, synthlab_env
from test_labels import pelvis_labels

from synthlab import labels, mrml, volume
from synthlab.client import BackendError, JobResult, LocalBackend, RemoteBackend
from synthlab.synthtumour.inference import TUMOUR_COLOUR

ROOT = Path(__file__).resolve().parent.parent
for module in ("HierSynthSlicer", "CrossStitchContour", "SynthTumourSeg", "SynthLabCommon"):
    sys.path.insert(0, str(ROOT / module))

slicer = pytest.importorskip("slicer")

from CrossStitchContourLib.contour_task import default_organ_map, load_contours, start_contour  # noqa: E402
from HierSynthSlicerLib.cbv_task import SYNTHETIC_LABEL, load_cbv, required_contrasts, start_cbv  # noqa: E402
from SynthLabCommonLib.backend import (  # noqa: E402
    REMOTE,
    BackendChoice,
    current_backend,
    describe_server,
    load_choice,
    save_choice,
)
from SynthTumourSegLib.tumour_task import load_tumour, start_tumour  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    return mrml.headless_scene()


@pytest.fixture
def t1(scene, tmp_path):
    volume.write_image(make_image(), tmp_path / "t1.nrrd")
    return mrml.load_volume(scene, tmp_path / "t1.nrrd", "T1")


def test_cbv_refuses_missing_required_modalities(t1):
    with pytest.raises(ValueError, match="Select the T2 and ADC volumes first"):
        start_cbv(LocalBackend(), {"t1": t1, "t2": None, "adc": None}, ["t1", "t2", "adc"])


def test_cbv_required_contrasts_come_from_the_model_card(cbv_registry, monkeypatch):
    monkeypatch.setenv("SYNTHLAB_MODELS", str(cbv_registry))
    assert required_contrasts(LocalBackend()) == ["t1", "t2", "flair", "adc"]


def _loaded_cbv(scene, t1, folder, result: dict):
    """A CBV volume file and the backend's result about it, loaded as the panel loads them."""
    volume.write_image(make_image(seed=9), folder / "cbv.nrrd")
    return load_cbv(scene, JobResult({"out": folder / "cbv.nrrd"}, [{"stage": "done", "progress": 1.0,
                                                                      "result": result}]), t1)


def test_cbv_result_is_labelled_synthetic_with_a_perfusion_colour_map(scene, t1, tmp_path):
    nodes = _loaded_cbv(scene, t1, tmp_path, {"model": "demo"})
    node = nodes.volume
    assert SYNTHETIC_LABEL in node.GetName()
    assert node.GetAttribute("SynthLab.synthetic") == "true" and node.GetAttribute("SynthLab.model") == "demo"
    assert node.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeRainbow"
    assert nodes.summary.startswith("Tumour mean rCBV: -")


def test_cbv_panel_says_how_far_the_model_reads_tumour_rcbv_from_the_truth(scene, t1, tmp_path):
    nodes = _loaded_cbv(scene, t1, tmp_path, {"model": "demo", "tumour_rcbv": 1.13, "tumour_rcbv_bias": -0.43,
                                              "tumour_rcbv_bias_measured_on": "39 held-out phantom tumours"})
    assert nodes.summary.startswith("Tumour mean rCBV: 1.13")
    assert nodes.summary.endswith("On 39 held-out phantom tumours this model read tumour rCBV 0.43 below the true "
                                  "value on average.")


def test_cbv_logic_end_to_end_on_phantom_nodes(scene, brain_data, cbv_registry):
    """The four contrasts, mask and a tumour segmentation as nodes, the real backend: a synthetic CBV volume on
    the T1 grid and the tumour's mean rCBV for the panel."""
    entry = next(e for e in json.loads((brain_data / "datalist.json").read_text())["training"] if e["tumour"])
    inputs = {name: mrml.load_volume(scene, brain_data / entry[name], name.upper()) for name in ("t1", "t2", "flair",
                                                                                                 "adc")}
    inputs["mask"] = mrml.load_volume(scene, brain_data / entry["mask"], "brain mask", labelmap=True)
    inputs["tumour"] = mrml.load_segmentation(scene, brain_data / entry["label"], "tumour")
    job = start_cbv(LocalBackend(env=synthlab_env(cbv_registry)), inputs, ["t1", "t2", "flair", "adc"])
    try:
        nodes = load_cbv(scene, job.finish(), inputs["t1"])
    finally:
        job.cleanup()
    assert nodes.volume.GetImageData().GetDimensions() == inputs["t1"].GetImageData().GetDimensions()
    assert nodes.volume.GetAttribute("SynthLab.model") == "tiny-cbv"
    assert nodes.tumour_rcbv is not None and nodes.summary.startswith(f"Tumour mean rCBV: {nodes.tumour_rcbv:.2f}")


def test_contour_refuses_missing_inputs_and_empty_planning_segmentation(scene, t1):
    with pytest.raises(ValueError, match="planning contours, daily CT"):
        start_contour(LocalBackend(), t1, None, None)
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    with pytest.raises(ValueError, match="'empty' has no segments"):
        start_contour(LocalBackend(), t1, empty, t1)


def test_contour_results_keep_planning_names_and_the_field_moves_points(scene, t1, tmp_path):
    contours = labels.write_labels(pelvis_labels(), tmp_path / "daily.seg.nrrd")
    field = volume.image_like(np.tile([1.0, 0.0, -2.0], (12, 16, 20, 1)), make_image(), is_vector=True)
    volume.write_image(field, tmp_path / "field.nrrd")
    planning = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "planning")
    nodes = load_contours(scene, JobResult({"out_labels": contours, "out_field": tmp_path / "field.nrrd"}), t1,
                          planning)
    segmentation, transform = nodes.contours, nodes.field
    assert mrml.segment_names(segmentation) == ["prostate", "bladder"]
    fixed_ras = [5.0, -25.0, 10.0]  # LPS (-5, 25, 10), inside the field's grid
    moved = transform.GetTransformFromParent().TransformPoint(fixed_ras)
    np.testing.assert_allclose(moved, [5.0 - 1.0, -25.0, 10.0 - 2.0], atol=1e-4)  # LPS (1, 0, -2) in RAS
    assert segmentation.GetAttribute("SynthLab.moving_labels") == "planning"


def test_tumour_requires_flair(t1):
    with pytest.raises(ValueError, match="FLAIR"):
        start_tumour(LocalBackend(), {"flair": None, "t1": t1})


def test_tumour_logic_end_to_end_on_phantom_nodes(scene, brain_data, tumour_registry):
    """FLAIR and mask nodes of a phantom tumour case, the real backend, a "Tumour" segment with neoplasm
    terminology and fixed colour, the volume the panel shows, and the probability volume."""
    entry = json.loads((brain_data / "unlabelled.json").read_text())["training"][0]
    flair = mrml.load_volume(scene, brain_data / entry["flair"], "FLAIR")
    mask = mrml.load_volume(scene, brain_data / entry["mask"], "brain mask", labelmap=True)
    job = start_tumour(LocalBackend(env=synthlab_env(tumour_registry)), {"flair": flair, "mask": mask},
                       probability=True)
    try:
        nodes = load_tumour(scene, job.finish(), flair)
    finally:
        job.cleanup()
    segmentation = nodes.segmentation.GetSegmentation()
    assert mrml.segment_names(nodes.segmentation) == ["Tumour"]
    segment = segmentation.GetNthSegment(0)
    assert segment.GetColor() == pytest.approx(TUMOUR_COLOUR, abs=1e-3)
    tag = vtk_string()
    assert segment.GetTag(segment.GetTerminologyEntryTagName(), tag) and "Neoplasm" in tag.get()
    assert nodes.volume_ml is not None and nodes.summary.startswith(("Tumour volume:", "No tumour found"))
    assert nodes.probability.GetImageData().GetDimensions() == flair.GetImageData().GetDimensions()
    assert nodes.segmentation.GetAttribute("SynthLab.model") == "tiny-tumour"


def vtk_string():
    import vtk

    return vtk.reference("")


def test_tumour_panel_summary_says_when_nothing_was_found():
    from SynthTumourSegLib.tumour_task import TumourNodes

    assert TumourNodes(None, 0.0).summary == "No tumour found (empty segmentation)"
    assert TumourNodes(None, 12.34).summary == "Tumour volume: 12.3 ml"


SETUP_TEXT = r"translation \S+, \S+, \S+ mm; rotation \S+, \S+, \S+ degrees"


@pytest.mark.parametrize("where", ["local", "remote"])
def test_contour_logic_end_to_end_on_phantom_nodes(scene, pair, contour_registry, where, request):
    """Phantom CTs and contours as nodes, a user's organ mapping, a real backend (subprocess or server), results
    as nodes."""
    planning_ct = mrml.load_volume(scene, pair["moving"], "planning CT")
    daily_ct = mrml.load_volume(scene, pair["fixed"], "daily CT")
    planning = mrml.load_segmentation(scene, pair["moving_labels"], "planning contours")
    reference = mrml.load_segmentation(scene, pair["fixed_labels"], "reference contours")
    planning.GetSegmentation().GetNthSegment(0).SetName("CTV")  # the prostate under a name we do not know
    mapping = default_organ_map(planning)
    assert "CTV" not in mapping and mapping["bladder"] == "bladder"
    mapping["CTV"] = "prostate"  # the user's correction in the panel
    if where == "local":
        backend = LocalBackend(env=synthlab_env(contour_registry))
    else:
        server = request.getfixturevalue("live_server")
        backend = RemoteBackend(server["url"], server["token"], poll_seconds=0.2)
    job = start_contour(backend, planning_ct, planning, daily_ct, reference, mapping, warp_planning_ct=True,
                        iterations=1, guide_organs="rectum, bladder", segmentation_weight="bladder=0.5",
                        setup_correction=True)
    try:
        nodes = load_contours(scene, job.finish(), daily_ct, planning)
    finally:
        job.cleanup()
    assert mrml.segment_names(nodes.contours) == ["CTV", "seminal vesicles", "rectum", "bladder"]
    assert nodes.contours.GetAttribute("SynthLab.guided_organs") == "rectum,bladder"
    assert nodes.contours.GetAttribute("SynthLab.segmentation_weights") == "bladder=0.5"
    assert nodes.contours.GetAttribute("SynthLab.segmentation_set_aside") == "none" and nodes.review_message() is None
    assert nodes.contours.GetAttribute("SynthLab.near_scan_border") == "none"  # the tiny card fades nothing
    assert re.fullmatch(SETUP_TEXT, nodes.contours.GetAttribute("SynthLab.setup_correction"))  # asked for
    assert nodes.field.IsA("vtkMRMLGridTransformNode") and nodes.warped.GetImageData() is not None
    table = nodes.metrics
    assert table.GetNumberOfRows() == 4 and table.GetCellText(0, 0) == "CTV"
    assert 0.0 <= float(table.GetCellText(0, 1)) <= 1.0  # Dice
    assert nodes.contours.GetAttribute("SynthLab.model") == "tiny-contour"


def _panel_contours(scene, pair, registry: Path, **options):
    """The contour panel's logic run on the phantom pair with the model in ``registry``: its nodes, and a function
    that runs it again with other options."""
    planning_ct = mrml.load_volume(scene, pair["moving"], "planning CT")
    daily_ct = mrml.load_volume(scene, pair["fixed"], "daily CT")
    planning = mrml.load_segmentation(scene, pair["moving_labels"], "planning contours")

    def run(**asked):
        job = start_contour(LocalBackend(env=synthlab_env(registry)), planning_ct, planning, daily_ct,
                            organ_map=default_organ_map(planning), iterations=1, **asked)
        try:
            return load_contours(scene, job.finish(), daily_ct, planning)
        finally:
            job.cleanup()

    return run(**options), run


def test_contour_panel_names_the_organs_a_short_daily_scan_ends_close_to(scene, pair, fading_contour_registry):
    nodes, _ = _panel_contours(scene, pair, fading_contour_registry, segmentation_weight="bladder=0.5")
    assert nodes.near_scan_border == ["bladder"]
    assert nodes.contours.GetAttribute("SynthLab.near_scan_border") == "bladder"
    assert "The daily CT ends close to the bladder" in nodes.review_message()


def test_contour_panel_names_the_organs_whose_own_segmentation_was_set_aside(scene, pair, strict_contour_registry):
    nodes, run_again = _panel_contours(scene, pair, strict_contour_registry, segmentation_weight="rectum=0.5")
    assert list(nodes.set_aside) == ["rectum"]
    assert nodes.contours.GetAttribute("SynthLab.segmentation_set_aside") == "rectum"
    assert nodes.contours.GetAttribute("SynthLab.segmentation_weights") == "none"
    assert re.fullmatch(SETUP_TEXT, nodes.field.GetAttribute("SynthLab.setup_correction"))  # this card's default
    assert nodes.review_message().startswith("Review rectum: the model's own segmentation was too far")
    assert run_again(setup_correction=False).field.GetAttribute("SynthLab.setup_correction") == "none"


def test_contour_guidance_for_an_organ_the_model_does_not_know_is_a_clear_error(scene, pair, contour_registry):
    planning = mrml.load_segmentation(scene, pair["moving_labels"], "planning contours")
    planning_ct = mrml.load_volume(scene, pair["moving"], "planning CT")
    daily_ct = mrml.load_volume(scene, pair["fixed"], "daily CT")
    job = start_contour(LocalBackend(env=synthlab_env(contour_registry)), planning_ct, planning, daily_ct,
                        iterations=1, guide_organs="liver")
    try:
        with pytest.raises(BackendError, match="--guide-organs.*unknown organ liver"):
            job.finish()
    finally:
        job.cleanup()


def test_contour_refuses_a_planning_segmentation_with_no_known_organ(scene, pair):
    planning = mrml.load_segmentation(scene, pair["moving_labels"], "planning contours")
    for index in range(planning.GetSegmentation().GetNumberOfSegments()):
        planning.GetSegmentation().GetNthSegment(index).SetName(f"structure {index}")
    ct = mrml.load_volume(scene, pair["moving"], "planning CT")
    with pytest.raises(ValueError, match="None of the segments of 'planning contours' is mapped"):
        start_contour(LocalBackend(), ct, planning, ct)


class FakeSettings:
    """Stands in for Qt's QSettings (no Qt here): the same value/setValue calls on a dict."""

    def __init__(self):
        self.values = {}

    def value(self, key, default=None):
        return self.values.get(key, default)

    def setValue(self, key, value):  # noqa: N802 (Qt's name)
        self.values[key] = value


def test_backend_choice_is_remembered_and_builds_the_chosen_backend(live_server):
    settings = FakeSettings()
    assert isinstance(current_backend(settings), LocalBackend)
    save_choice(settings, BackendChoice(REMOTE, live_server["url"], live_server["token"]))
    assert load_choice(settings) == BackendChoice(REMOTE, live_server["url"], live_server["token"])
    backend = current_backend(settings)
    assert isinstance(backend, RemoteBackend) and backend.url == live_server["url"]
    report = describe_server(load_choice(settings))
    assert "tiny-contour (contour, default)" in report and live_server["url"] in report


def test_backend_choice_problems_are_explained(live_server):
    with pytest.raises(ValueError, match="http:// or https://"):
        current_backend(_settings_with(BackendChoice(REMOTE, "gpu-server:8890")))
    with pytest.raises(BackendError, match="bearer token"):
        describe_server(BackendChoice(REMOTE, live_server["url"], "wrong"))
    with pytest.raises(BackendError, match="cannot reach"):
        describe_server(BackendChoice(REMOTE, "http://127.0.0.1:9"))


def _settings_with(choice: BackendChoice) -> FakeSettings:
    settings = FakeSettings()
    save_choice(settings, choice)
    return settings

