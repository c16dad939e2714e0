"""LocalBackend runs real synthlab subprocesses: outputs, progress, failures and cancellation."""

from __future__ import annotations

import os
import sys
import time

import pytest
from conftest import make_image

from synthlab import volume
from synthlab.client import BackendError, JobCancelled, LocalBackend, LocalJob, command_line


def test_command_line_maps_keys_to_options():
    arguments = command_line("phantom brain", {"t1": "a.nrrd"}, {"out": "o.nrrd"},
                             {"cases": 2, "rcbv": True, "mask": None, "fast": False, "label": ["a", "b"]})
    assert arguments == ["phantom", "brain", "--cases", "2", "--rcbv", "--no-fast", "--label", "a", "--label", "b",
                         "--t1", "a.nrrd", "--out", "o.nrrd", "--progress", "json"]


def test_run_returns_outputs_and_streams_events(tmp_path):
    volume.write_image(make_image(), tmp_path / "ref.nrrd")
    volume.write_image(make_image(seed=5), tmp_path / "in.nrrd")
    seen = []
    result = LocalBackend().run("resample", {"input": tmp_path / "in.nrrd", "reference": tmp_path / "ref.nrrd"},
                                {"out": tmp_path / "out.nrrd"}, on_event=seen.append)
    assert result.outputs["out"].is_file()
    assert seen and seen[-1]["stage"] == "done" and result.results["out"] == str(tmp_path / "out.nrrd")


def test_failing_input_message_reaches_the_caller(tmp_path):
    volume.write_image(make_image(), tmp_path / "ref.nrrd")
    with pytest.raises(BackendError) as caught:
        LocalBackend().run("resample", {"input": tmp_path / "nope.nrrd", "reference": tmp_path / "ref.nrrd"},
                           {"out": tmp_path / "out.nrrd"})
    assert caught.value.returncode == 2
    assert caught.value.message == f"--input: file not found: {tmp_path / 'nope.nrrd'}"


def test_cancel_stops_a_running_demo_and_leaves_no_metrics(tmp_path):
    job = LocalBackend().start("demo", {}, {"out": tmp_path / "demo"})
    deadline = time.time() + 60
    while not job.events and time.time() < deadline:
        time.sleep(0.05)
    assert job.events, "the demo never reported progress"
    job.cancel()
    with pytest.raises(JobCancelled):
        job.wait()
    assert not (tmp_path / "demo" / "metrics.json").exists()
    assert not list(tmp_path.rglob("*.partial*"))


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_cancel_ends_the_whole_process_tree(tmp_path):
    """Children and grandchildren of the backend process go too."""
    pid_file = tmp_path / "pids"
    script = (f"import subprocess, sys, time\n"
              f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
              f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
              f"print('{{\"stage\": \"running\", \"progress\": 0.1}}', flush=True)\n"
              f"time.sleep(300)\n")
    job = LocalJob([sys.executable, "-c", script], {}, os.environ, None)
    deadline = time.time() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    job.cancel()
    with pytest.raises(JobCancelled):
        job.wait()
    deadline = time.time() + 5
    while is_running(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not is_running(child)


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped by its new parent."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
