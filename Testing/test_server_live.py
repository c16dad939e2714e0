"""A real ``synthlab serve`` (uvicorn on 127.0.0.1) driven by RemoteBackend and by raw, hostile clients."""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import SimpleITK as sitk
from conftest import LIVE_TOKEN as TOKEN
from conftest import LIVE_UPLOAD_LIMIT_MB as UPLOAD_LIMIT_MB
from conftest import synthlab_env

from synthlab.client import BackendError, JobCancelled, LocalBackend, RemoteBackend


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def descriptors_fall_to(pid: int, limit: int, timeout: float = 10.0) -> bool:
    """Whether the process closes descriptors down to ``limit`` within ``timeout`` (closing is asynchronous)."""
    deadline = time.monotonic() + timeout
    while open_descriptors(pid) > limit and time.monotonic() < deadline:
        time.sleep(0.2)
    return open_descriptors(pid) <= limit


def files_left(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


@pytest.fixture(scope="module")
def local_contours(tmp_path_factory, contour_registry, pair) -> np.ndarray:
    """The contours the local backend gives: what every remote answer must equal."""
    out = tmp_path_factory.mktemp("local") / "labels.seg.nrrd"
    LocalBackend(env=synthlab_env(contour_registry)).run(
        "contour", {key: pair[key] for key in ("fixed", "moving", "moving_labels")}, {"out_labels": out})
    return sitk.GetArrayFromImage(sitk.ReadImage(str(out)))


def remote(live_server, token=TOKEN) -> RemoteBackend:
    return RemoteBackend(live_server["url"], token, poll_seconds=0.2)


def contour_inputs(pair) -> dict:
    return {key: pair[key] for key in ("fixed", "moving", "moving_labels")}


def test_remote_backend_gives_the_local_result_with_progress(live_server, pair, local_contours, tmp_path):
    events = []
    result = remote(live_server).run("contour", contour_inputs(pair), {
        "out_labels": tmp_path / "today.seg.nrrd", "out_field": tmp_path / "field.nii.gz"}, on_event=events.append)
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(result.outputs["out_labels"]))) == local_contours).all()
    assert sitk.ReadImage(str(tmp_path / "field.nii.gz")).GetNumberOfComponentsPerPixel() == 3
    assert events and events[-1]["progress"] == 1.0 and result.results["model"] == "tiny-contour"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field.nii.gz", "today.seg.nrrd"]


def test_remote_errors_carry_the_servers_message(live_server, pair, tmp_path):
    with pytest.raises(BackendError, match="bearer token"):
        remote(live_server, "wrong").info()
    with pytest.raises(BackendError, match="missing input"):
        remote(live_server).run("contour", {"fixed": pair["fixed"]}, {"out_labels": tmp_path / "x.seg.nrrd"})
    with pytest.raises(BackendError, match="cannot reach"):
        RemoteBackend("http://127.0.0.1:9", TOKEN).info()
    assert not (tmp_path / "x.seg.nrrd").exists()


def test_remote_info_and_sessions(live_server, pair, local_contours, tmp_path):
    backend = remote(live_server)
    info = backend.info()
    assert [model["id"] for model in info["models"]] == ["tiny-contour"] and "contour" in info["tasks"]
    session = backend.open_session({"moving": pair["moving"], "moving_labels": pair["moving_labels"]})
    result = backend.run("contour", {"fixed": pair["fixed"]}, {"out_labels": tmp_path / "a.seg.nrrd"},
                         {"session": session})
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(result.outputs["out_labels"]))) == local_contours).all()
    backend.close_session(session)
    with pytest.raises(BackendError, match="no session"):
        backend.run("contour", {"fixed": pair["fixed"]}, {"out_labels": tmp_path / "b.seg.nrrd"}, {"session": session})


def test_cancelling_a_remote_job(live_server, pair, tmp_path):
    job = remote(live_server).start("contour", contour_inputs(pair), {"out_labels": tmp_path / "c.seg.nrrd"},
                                    {"iterations": 200})
    deadline = time.monotonic() + 30
    while job.job_id is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job.cancel()
    with pytest.raises(JobCancelled):
        job.wait()
    assert not (tmp_path / "c.seg.nrrd").exists()
    wait_until_idle(live_server)
    assert files_left(live_server["tmp"]) == []


def wait_until_idle(live_server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = remote(live_server).info()["queue"]
        if queue["running"] == 0 and queue["waiting"] == 0:
            return
        time.sleep(0.2)
    raise AssertionError("the server stayed busy")


def one_client(kind: str, live_server, pair, local_contours, folder: Path) -> str:
    """One client's request; returns what went wrong, or '' when it got the right answer."""
    url, auth = live_server["url"], {"Authorization": f"Bearer {TOKEN}"}
    if kind == "valid":
        out = folder / "labels.seg.nrrd"
        remote(live_server).run("contour", contour_inputs(pair), {"out_labels": out})
        same = (sitk.GetArrayFromImage(sitk.ReadImage(str(out))) == local_contours).all()
        return "" if same else "valid request: wrong contours"
    files = {name: (Path(path).name, Path(path).read_bytes()) for name, path in contour_inputs(pair).items()}
    path, headers, expected = "/infer/contour", auth, 400
    if kind == "corrupt":
        files["fixed"] = ("fixed.nii.gz", os.urandom(5000))
    elif kind == "wrong token":
        headers, expected = {"Authorization": "Bearer nope"}, 401
    elif kind == "oversized":
        files["fixed"] = ("fixed.nrrd", os.urandom((UPLOAD_LIMIT_MB + 1) << 20))
        expected = 413
    elif kind == "missing input":
        del files["moving"]
    elif kind == "unknown task":
        path, expected = "/infer/levitate", 404
    try:
        response = requests.post(url + path, headers=headers, files=files, data={"params": "{}"}, timeout=120)
    except requests.ConnectionError as error:  # a server may close an oversized upload before reading it all
        return "" if kind == "oversized" and "reset" in str(error).lower() else f"{kind}: {error}"
    if response.status_code != expected or "detail" not in response.json():
        return f"{kind}: {response.status_code} {response.text[:200]}"
    return ""


def test_fifty_concurrent_clients_mixing_valid_and_bad_requests(live_server, pair, local_contours, tmp_path):
    kinds = ["valid"] * 4 + ["corrupt", "wrong token", "oversized", "missing input", "unknown task"] * 9 + ["corrupt"]
    assert len(kinds) == 50
    process = live_server["process"]
    memory = []
    for round_index in range(2):  # the second round's memory against the first's
        folders = [tmp_path / f"round{round_index}-client{index}" for index in range(len(kinds))]
        for folder in folders:
            folder.mkdir()
        with ThreadPoolExecutor(max_workers=50) as pool:
            problems = list(pool.map(lambda args: one_client(args[0], live_server, pair, local_contours, args[1]),
                                     zip(kinds, folders, strict=True)))
        assert [problem for problem in problems if problem] == []
        assert requests.get(live_server["url"] + "/health", timeout=5).ok and process.poll() is None
        wait_until_idle(live_server)
        memory.append(resident_kib(process.pid))
    assert files_left(live_server["tmp"]) == []
    # A round uploads over 100 MiB; kept uploads, jobs or results would add that much each round. Resident
    # memory of an idle server moves by up to ~25 MiB between rounds with no trend (transient buffers).
    assert memory[1] - memory[0] < 48 * 1024, memory


def test_client_disconnecting_mid_upload_leaves_nothing(live_server):
    pid = live_server["process"].pid
    wait_until_idle(live_server)
    descriptors = open_descriptors(pid)
    host, port = live_server["url"].removeprefix("http://").split(":")
    boundary = "synthlabboundary"
    head = (f"POST /infer/contour HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {3 << 20}\r\n\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"fixed\"; filename=\"fixed.nrrd\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    for _ in range(5):
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(head + os.urandom(2 << 20))  # 2 of the announced 3 MiB, then hang up
    time.sleep(1.0)
    assert requests.get(live_server["url"] + "/health", headers={"Connection": "close"}, timeout=5).ok
    assert files_left(live_server["tmp"]) == []
    assert descriptors_fall_to(pid, descriptors)
