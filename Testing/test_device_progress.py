"""Device choice and progress events."""

from __future__ import annotations

import io
import json

import pytest
import torch

from synthlab.device import resolve_device
from synthlab.errors import InputError
from synthlab.progress import ProgressReporter, parse_event


def test_cpu_and_auto_resolve_to_available_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    allowed = ("cuda",) if torch.cuda.is_available() else ("cpu", "mps")
    assert resolve_device("auto").type in allowed


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_is_a_clear_input_error():
    with pytest.raises(InputError, match="--device: CUDA was requested but no CUDA GPU is available"):
        resolve_device("cuda")


def test_unknown_device_is_refused():
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_json_events_are_one_line_each_and_stages_scale_into_the_whole():
    stream = io.StringIO()
    with ProgressReporter("json", stream) as reporter:
        stage = reporter.stage("inference", 0.5, 0.9)
        stage(0.0, "start")
        stage(0.5, "half", result={"volume_ml": 3.0})
        stage(1.0, "end")
    events = [parse_event(line) for line in stream.getvalue().splitlines()]
    assert [e["progress"] for e in events] == [0.5, 0.7, 0.9]
    assert events[1]["result"] == {"volume_ml": 3.0} and all(e["stage"] == "inference" for e in events)
    assert parse_event("some log line") is None and parse_event(json.dumps({"no": "stage"})) is None


def test_progress_is_clamped_to_zero_one():
    stream = io.StringIO()
    with ProgressReporter("json", stream) as reporter:
        reporter.update("x", 1.7)
        reporter.update("x", -0.2)
    assert [json.loads(line)["progress"] for line in stream.getvalue().splitlines()] == [1.0, 0.0]


def test_out_of_memory_is_recognised():
    from synthlab.device import describe, is_out_of_memory

    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert describe(torch.device("cpu")) == "cpu"


def test_gpu_out_of_memory_ends_with_the_fix_and_exit_3(monkeypatch, tmp_path, capsys):
    """No GPU here, so the CUDA out-of-memory error is raised where a command reads its input."""
    from synthlab import cli, volume

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setattr(volume, "read_image", out_of_memory)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["resample", "--input", "a.nrrd", "--reference", "b.nrrd", "--out", str(tmp_path / "o.nrrd")])
    assert exit_info.value.code == 3
    error = capsys.readouterr().err
    assert "ran out of memory" in error and "--device cpu" in error and "Traceback" not in error
