"""The inference server through FastAPI's TestClient: routes, auth, limits, queue, sessions, clean-up.

Jobs are real: each runs ``synthlab contour`` with the tiny contour model in a subprocess.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest
import SimpleITK as sitk
from conftest import synthlab, synthlab_env, synthlab_here
from fastapi.testclient import TestClient

from synthlab.server import ServerSettings, create_app

TOKEN = "secret-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(tmp_path, contour_registry):
    settings = ServerSettings(token=TOKEN, workdir=tmp_path / "work", registry=contour_registry,
                              max_upload_bytes=8 << 20, queue_limit=1, device="cpu")
    with TestClient(create_app(settings)) as client:
        yield client


def files_of(pair: dict, names=("fixed", "moving", "moving_labels")) -> dict:
    return {name: (Path(pair[name]).name, Path(pair[name]).read_bytes()) for name in names}


def contour_request(client, pair, params=None, wait=True, names=("fixed", "moving", "moving_labels")):
    return client.post(f"/infer/contour?wait={str(wait).lower()}", headers=AUTH, files=files_of(pair, names),
                       data={"params": json.dumps(params or {})})


def unzip(response) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def labels_array(data: bytes, tmp_path: Path, name: str = "labels.seg.nrrd"):
    path = tmp_path / name
    path.write_bytes(data)
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def files_left(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def wait_for_state(client, job_id: str, states: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}", headers=AUTH).json()
        if status["state"] in states:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {states}")


def test_health_is_open_but_everything_else_needs_the_token(server):
    assert server.get("/health").json() == {"status": "ok"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = server.get("/info/", headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert "token" in response.json()["detail"]
    assert server.post("/infer/contour", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_info_lists_tasks_and_models_with_cards(server):
    info = server.get("/info/", headers=AUTH).json()
    assert info["device"].startswith("CPU") or "cpu" in info["device"].lower()
    assert info["tasks"]["contour"]["inputs"]["moving_labels"]["required"] is True
    model = next(m for m in info["models"] if m["id"] == "tiny-contour")
    assert model["task"] == "contour" and model["card"]["organs"] and model["card"]["spatial_dims"] == 3


def test_contour_request_returns_the_same_contours_as_the_command_line(server, pair, contour_registry, tmp_path):
    response = contour_request(server, pair, {"outputs": {"out_field": ".nrrd"}})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    files = unzip(response)
    result = json.loads(files["result.json"])
    assert set(result["outputs"]) == {"out_labels", "out_field"} and result["results"]["model"] == "tiny-contour"
    local = tmp_path / "local.seg.nrrd"
    ran = synthlab_here("contour", "--fixed", pair["fixed"], "--moving", pair["moving"], "--moving-labels",
                        pair["moving_labels"], "--out-labels", local, "--progress", "none",
                        env=synthlab_env(contour_registry))
    assert ran.returncode == 0, ran.stderr
    remote = labels_array(files[result["outputs"]["out_labels"]], tmp_path)
    assert (remote == sitk.GetArrayFromImage(sitk.ReadImage(str(local)))).all() and remote.any()
    field_path = tmp_path / "field.nrrd"
    field_path.write_bytes(files[result["outputs"]["out_field"]])
    assert sitk.ReadImage(str(field_path)).GetNumberOfComponentsPerPixel() == 3
    assert files_left(server.app.state.workdir) == []


def test_contour_request_can_switch_off_the_cards_setup_correction(tmp_path, strict_contour_registry, pair):
    """This card corrects the set-up by default; ``"setup_correction": false`` reaches the command as its off switch."""
    settings = ServerSettings(token=TOKEN, workdir=tmp_path / "work", registry=strict_contour_registry,
                              max_upload_bytes=8 << 20, queue_limit=1, device="cpu")
    corrections = {}
    with TestClient(create_app(settings)) as client:
        for asked in (None, False):
            response = contour_request(client, pair, {} if asked is None else {"setup_correction": asked})
            assert response.status_code == 200, response.text
            corrections[asked] = json.loads(unzip(response)["result.json"])["results"]["setup_correction"]
    assert corrections[None] is not None and len(corrections[None]["translation_mm"]) == 3
    assert corrections[False] is None


@pytest.mark.parametrize(("case", "status", "words"), [
    ("unknown task", 404, "unknown task"),
    ("missing input", 400, "moving_labels"),
    ("corrupt file", 400, "fixed"),
    ("text file", 415, "unsupported format"),
    ("unknown option", 400, "unknown option 'colour'"),
    ("wrong option type", 400, "iterations"),
    ("true for a number", 400, "iterations"),
    ("text for true/false", 400, "setup_correction"),
    ("bad JSON", 400, "not valid JSON"),
    ("unknown output", 400, "unknown output"),
    ("wrong output format", 400, "out_field"),
    ("unknown session", 404, "no session"),
])
def test_bad_requests_get_their_4xx_and_leave_nothing(server, pair, case, status, words):
    files, data, path = files_of(pair), {"params": "{}"}, "/infer/contour"
    if case == "unknown task":
        path = "/infer/teleport"
    elif case == "missing input":
        del files["moving_labels"]
    elif case == "corrupt file":
        files["fixed"] = ("fixed.nii.gz", b"\x1f\x8b not really gzip")
    elif case == "text file":
        files["fixed"] = ("fixed.txt", b"hello")
    else:
        data["params"] = {
            "unknown option": '{"colour": "red"}', "wrong option type": '{"iterations": "many"}',
            "true for a number": '{"iterations": true}', "text for true/false": '{"setup_correction": "yes"}',
            "bad JSON": "{oops", "unknown output": '{"outputs": {"out_cbv": ".nrrd"}}',
            "wrong output format": '{"outputs": {"out_field": ".png"}}', "unknown session": '{"session": "nope"}',
        }[case]
    response = server.post(path, headers=AUTH, files=files, data=data)
    assert response.status_code == status
    assert words in response.json()["detail"]
    assert files_left(server.app.state.workdir) == []


def test_a_task_refusing_its_input_answers_422_with_the_tasks_message(server, pair, tmp_path):
    not_ct = tmp_path / "mri.nii.gz"
    image = sitk.ReadImage(str(pair["fixed"]))
    sitk.WriteImage(sitk.Cast(sitk.RescaleIntensity(image, 0, 1), sitk.sitkFloat32), str(not_ct))
    response = server.post("/infer/contour", headers=AUTH, data={"params": "{}"},
                           files={**files_of(pair), "fixed": ("mri.nii.gz", not_ct.read_bytes())})
    assert response.status_code == 422
    assert "HU" in response.json()["detail"] and "Traceback" not in response.text
    assert files_left(server.app.state.workdir) == []


def test_oversized_upload_is_refused_with_413(server):
    response = server.post("/infer/contour", headers=AUTH, files={"fixed": ("big.nrrd", b"0" * (9 << 20))})
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_asynchronous_job_reports_progress_then_gives_its_result_once(server, pair):
    submitted = contour_request(server, pair, wait=False)
    assert submitted.status_code == 202 and submitted.headers["Location"] == f"/jobs/{submitted.json()['id']}"
    job_id = submitted.json()["id"]
    status = wait_for_state(server, job_id, {"done", "failed"})
    assert status["state"] == "done" and status["progress"] == 1.0
    assert any(0 < event["progress"] < 1 for event in status["events"])
    later = server.get(f"/jobs/{job_id}", headers=AUTH, params={"since": status["next"]}).json()
    assert later["events"] == []
    result = server.get(f"/jobs/{job_id}/result", headers=AUTH)
    assert result.status_code == 200 and "out_labels.seg.nrrd" in unzip(result)
    assert server.get(f"/jobs/{job_id}/result", headers=AUTH).status_code == 404
    assert files_left(server.app.state.workdir) == []


def test_full_queue_answers_503_with_retry_after_and_cancel_stops_jobs(server, pair):
    running = contour_request(server, pair, wait=False).json()["id"]
    wait_for_state(server, running, {"running"})
    waiting = contour_request(server, pair, wait=False)
    assert waiting.status_code == 202 and waiting.json()["state"] == "queued"
    refused = contour_request(server, pair, wait=False)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "busy" in refused.json()["detail"]
    for job_id in (waiting.json()["id"], running):
        assert server.delete(f"/jobs/{job_id}", headers=AUTH).json()["state"] == "cancelled"
    assert server.get(f"/jobs/{running}/result", headers=AUTH).status_code == 409
    assert server.get("/info/", headers=AUTH).json()["queue"]["running"] == 0
    assert files_left(server.app.state.workdir) == []


def test_session_inputs_are_uploaded_once_and_expire(server, pair):
    made = server.put("/session/", headers=AUTH, files=files_of(pair, ("moving", "moving_labels")),
                      data={"params": json.dumps({"seconds": 600})})
    assert made.status_code == 200 and made.json()["inputs"] == ["moving", "moving_labels"]
    session = made.json()["id"]
    response = contour_request(server, pair, {"session": session}, names=("fixed",))
    assert response.status_code == 200, response.text
    assert "out_labels.seg.nrrd" in unzip(response)
    assert server.delete(f"/session/{session}", headers=AUTH).status_code == 200
    assert contour_request(server, pair, {"session": session}, names=("fixed",)).status_code == 404
    assert files_left(server.app.state.workdir) == []

    again = server.put("/session/", headers=AUTH, files=files_of(pair, ("moving",))).json()["id"]
    sessions = server.app.state.sessions
    sessions.sweep(now=time.time() + 7200)
    assert sessions.use(again) is None and files_left(server.app.state.workdir) == []


def test_corrupt_session_upload_is_refused(server):
    response = server.put("/session/", headers=AUTH, files={"moving": ("moving.nrrd", b"NRRD0004\nnonsense")})
    assert response.status_code == 400 and "moving" in response.json()["detail"]
    assert files_left(server.app.state.workdir) == []


def test_serving_beyond_loopback_needs_a_token():
    result = synthlab("serve", "--host", "0.0.0.0", "--port", "0", env={"SYNTHLAB_TOKEN": ""})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["synthlab: error: --token: required when listening on 0.0.0.0 "
                                                  "(anything but loopback)"]


def test_tumour_task_is_served(tmp_path, tumour_registry, brain_data):
    entry = json.loads((brain_data / "unlabelled.json").read_text())["training"][0]
    files = {name: (Path(entry[name]).name, (brain_data / entry[name]).read_bytes()) for name in ("flair", "mask")}
    settings = ServerSettings(token=TOKEN, workdir=tmp_path / "work", registry=tumour_registry, device="cpu")
    with TestClient(create_app(settings)) as client:
        response = client.post("/infer/tumour", headers=AUTH, files=files, data={"params": json.dumps(
            {"outputs": {"probability": ".nrrd"}, "min_component_ml": 1})})
        assert response.status_code == 200, response.text
        unzipped = unzip(response)
        result = json.loads(unzipped["result.json"])
        assert set(unzipped) == {"out.seg.nrrd", "probability.nrrd", "result.json"}
        assert result["results"]["model"] == "tiny-tumour" and "volume_ml" in result["results"]
        missing = client.post("/infer/tumour", headers=AUTH, files={"mask": files["mask"]})
        assert missing.status_code == 400 and "flair" in missing.json()["detail"]
        assert files_left(client.app.state.workdir) == []


@pytest.mark.parametrize("option", ["--queue", "--max-upload-mb", "--session-minutes"])
def test_serve_refuses_non_positive_limits(option):
    result = synthlab("serve", option, "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"synthlab: error: {option}: must be positive"]
