"""Shared fixtures: tiny synthetic volumes with non-trivial geometry."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from synthlab import cli
from synthlab.crossstitch.fit import FitOptions, fit
from synthlab.hiersynth.fit import CBVFitOptions, fit_hiersynth
from synthlab.phantoms import brain, pelvis
from synthlab.registry import Registry, entry_for, save_model
from synthlab.synthtumour.fit import TumourFitOptions, fit_synthtumour


def make_image(size=(20, 16, 12), spacing=(1.0, 1.5, 2.0), origin=(-10.0, 20.0, 5.0), direction=None,
               seed=0, dtype=np.float32) -> sitk.Image:
    """A smooth random volume (x, y, z = size) whose values vary along every axis."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(0, 1, n) for n in size[::-1]], indexing="ij")
    values = 100 * x + 50 * y ** 2 + 30 * np.sin(3 * z) + rng.normal(0, 1, x.shape)
    image = sitk.GetImageFromArray(values.astype(dtype))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def rotation_direction(degrees: float, axis: int = 2) -> tuple[float, ...]:
    """A 3x3 rotation about one axis, flattened row-major (an oblique acquisition)."""
    angle = np.deg2rad(degrees)
    c, s = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return tuple(matrix.ravel())


@pytest.fixture
def image() -> sitk.Image:
    return make_image()


def run_benchmark_script(script: str, *arguments) -> subprocess.CompletedProcess:
    """One of Testing/benchmarks' scripts, run as its users run it."""
    path = Path(__file__).parent / "benchmarks" / script
    return subprocess.run([sys.executable, str(path), *map(str, arguments)], capture_output=True, text=True)


def synthlab_env(registry: Path) -> dict[str, str]:
    """Environment for a synthlab subprocess that uses the models in ``registry``."""
    return {"SYNTHLAB_MODELS": str(registry)}


def synthlab(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Run ``python -m synthlab ARGS`` (extra environment variables in ``env``). A run still going after
    ``timeout`` seconds fails the test with the Python stack of each of its processes (DDP ranks included)."""
    command = [sys.executable, "-m", "synthlab", *map(str, args)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGUSR1)  # each synthlab process prints its stacks to stderr
            time.sleep(3)
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(f"synthlab {' '.join(command[3:5])} still running after {timeout} s; stacks:\n"
                        f"{stderr[-12000:]}\nlast output: {stdout[-2000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def synthlab_here(*args, env=None) -> subprocess.CompletedProcess:
    """Run ``synthlab ARGS`` in this process: the same command line as ``synthlab`` without a new
    interpreter's start-up (about 5 s of imports), for commands that need no process of their own."""
    argv, stdout, stderr = list(map(str, args)), io.StringIO(), io.StringIO()
    with patch.dict(os.environ, env or {}), redirect_stdout(stdout), redirect_stderr(stderr):
        code = cli.run(argv)
    return subprocess.CompletedProcess(["synthlab", *argv], code, stdout.getvalue(), stderr.getvalue())


# --- a tiny pelvis dataset and a tiny contour model trained on it (shared by backend and module tests) ---

TINY = {"spacing": 8.0, "patch": 16, "batch_size": 1, "filters": (4, 8, 8), "accelerator": "cpu"}


def quiet(*args, **kwargs):
    return None


@pytest.fixture(scope="session")
def pelvis_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pelvis")
    return pelvis.generate_dataset(out, 3, 1, 5, "small", quiet)


@pytest.fixture(scope="session")
def contour_registry(tmp_path_factory, pelvis_data) -> Path:
    """A registry holding a tiny contour model trained for a few steps."""
    out = tmp_path_factory.mktemp("model")
    result = fit(pelvis_data, out, FitOptions(steps=3, model_id="tiny-contour", **TINY), quiet)
    registry = Registry(out / "Models.json")
    weights = Path(result["weights"])
    registry.add(entry_for(registry, "tiny-contour", weights, weights.with_suffix(".json"), default=True))
    return registry.path


def _tiny_contour_model_with(out: Path, contour_registry: Path, model_id: str, **inference) -> Path:
    """A registry in ``out`` holding the tiny contour model under ``model_id``, its card's inference changed."""
    source = Registry(contour_registry)
    weights, card = source.load(source.get("tiny-contour"))
    card["inference"] = {**card.get("inference", {}), **inference}
    weights_path, card_path = save_model(weights, card, out, model_id)
    registry = Registry(out / "Models.json")
    registry.add(entry_for(registry, model_id, weights_path, card_path, default=True))
    return registry.path


@pytest.fixture(scope="session")
def strict_contour_registry(tmp_path_factory, contour_registry) -> Path:
    """The tiny contour model again, its card trusting its own segmentation nowhere (a 0 mm disagreement limit) and
    correcting the patient's set-up first."""
    return _tiny_contour_model_with(tmp_path_factory.mktemp("strict-model"), contour_registry, "strict-contour",
                                    segmentation_disagreement_mm=0.0, setup_correction=True)


@pytest.fixture(scope="session")
def fading_contour_registry(tmp_path_factory, contour_registry) -> Path:
    """The tiny contour model again, its own segmentation fading over 1 m from the daily scan's border: every organ
    lies in that band."""
    return _tiny_contour_model_with(tmp_path_factory.mktemp("fading-model"), contour_registry, "fading-contour",
                                    segmentation_border_fade_mm=1000.0)


@pytest.fixture(scope="session")
def pair(pelvis_data) -> dict:
    folder = pelvis_data.parent / "patient_000"
    return {"fixed": folder / "fraction_01_ct.nii.gz", "moving": folder / "planning_ct.nii.gz",
            "moving_labels": folder / "planning_contours.seg.nrrd", "fixed_labels": folder / "fraction_01_contours.seg.nrrd"}


# --- a tiny brain dataset and a tiny SynthTumour model trained on it ---

TINY_TUMOUR = {"spacing": 6.0, "patch": 16, "batch_size": 2, "filters": (4, 8, 16), "accelerator": "cpu"}


@pytest.fixture(scope="session")
def brain_data(tmp_path_factory) -> Path:
    """Eight small phantom brains (seed 7: healthy and tumour cases in training); returns the folder."""
    out = tmp_path_factory.mktemp("brain")
    brain.generate_dataset(out, 8, 7, "small", quiet)
    return out


@pytest.fixture(scope="session")
def tumour_cache(tmp_path_factory) -> Path:
    """The tiny brains as the tumour trainer prepares them (N4, resampling), kept for every training test
    (``--cache``), so each test does not prepare them again."""
    return tmp_path_factory.mktemp("tumour-cache")


@pytest.fixture(scope="session")
def tumour_registry(tmp_path_factory, brain_data, tumour_cache) -> Path:
    """A registry holding a tiny tumour model trained for a few steps of each stage."""
    out = tmp_path_factory.mktemp("tumour-model")
    options = TumourFitOptions(junior_steps=3, senior_steps=3, model_id="tiny-tumour", cache=tumour_cache,
                               **TINY_TUMOUR)
    result = fit_synthtumour(brain_data / "healthy.json", brain_data / "unlabelled.json", out, options, quiet)
    registry = Registry(out / "Models.json")
    weights = Path(result["weights"])
    registry.add(entry_for(registry, "tiny-tumour", weights, weights.with_suffix(".json"), default=True))
    return registry.path


# --- a tiny HierSynth model trained on the tiny brains ---

TINY_CBV = {"spacing": 6.0, "batch_size": 4, "accelerator": "cpu"}


@pytest.fixture(scope="session")
def cbv_registry(tmp_path_factory, brain_data) -> Path:
    """A registry holding a tiny HierSynth model trained for a few steps of each stage."""
    out = tmp_path_factory.mktemp("cbv-model")
    result = fit_hiersynth(brain_data / "datalist.json", out, CBVFitOptions(steps=4, model_id="tiny-cbv", **TINY_CBV),
                           quiet)
    registry = Registry(out / "Models.json")
    weights = Path(result["weights"])
    registry.add(entry_for(registry, "tiny-cbv", weights, weights.with_suffix(".json"), default=True))
    return registry.path

# --- a real `synthlab serve` on loopback, serving the tiny contour model ---

LIVE_TOKEN = "live-test-token"
LIVE_UPLOAD_LIMIT_MB = 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, contour_registry):
    """The server as users start it; its temporary files go to a folder the tests can inspect."""
    temporary = tmp_path_factory.mktemp("server-tmp")
    port = free_port()
    env = {**os.environ, **synthlab_env(contour_registry), "TMPDIR": str(temporary), "SYNTHLAB_TOKEN": LIVE_TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "synthlab", "serve", "--port", str(port), "--device", "cpu",
                                "--queue", "4", "--max-upload-mb", str(LIVE_UPLOAD_LIMIT_MB)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the server did not start: " + process.stderr.read())
    yield {"url": url, "token": LIVE_TOKEN, "process": process, "tmp": temporary}
    process.terminate()
    process.wait(30)
