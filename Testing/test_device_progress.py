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
