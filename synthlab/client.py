"""Backends run a SynthLab task away from the caller's process and stream its progress.

:class:`LocalBackend` starts ``python -m synthlab <task> ... --progress json`` as
a subprocess (Slicer never runs inference in its GUI process). :class:`RemoteBackend`
uploads the same files to ``synthlab serve`` and downloads the same outputs.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthlab.progress import parse_event

EventCallback = Callable[[dict], None]


class BackendError(RuntimeError):
    """The task failed; ``message`` is the backend's one-line explanation (e.g. which input is wrong)."""

    def __init__(self, message: str, returncode: int | None = None):
        super().__init__(message)
        self.message = message
        self.returncode = returncode


class ServerError(BackendError):
    """A SynthLab server answered with an error: its message, HTTP status and Retry-After (503)."""

    def __init__(self, message: str, status: int, retry_after: str | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class JobCancelled(BackendError):
    """The job was cancelled before it finished."""


@dataclass
class JobResult:
    """What a finished job produced: its output files and every progress event it sent."""

    outputs: dict[str, Path]
    events: list[dict] = field(default_factory=list)

    @property
    def results(self) -> dict:
        """Merged ``result`` payloads of the job's events (e.g. a tumour volume in ml)."""
        return merged_results(self.events)


def merged_results(events: list[dict]) -> dict:
    """The ``result`` payloads of progress events, merged in order."""
    merged: dict = {}
    for event in events:
        merged.update(event.get("result", {}))
    return merged


class Job(abc.ABC):
    """A running task. Poll :attr:`done`, or :meth:`wait` for its :class:`JobResult`."""

    @property
    @abc.abstractmethod
    def done(self) -> bool: ...

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> JobResult:
        """Block until the job ends; raise :class:`BackendError` if it failed, :class:`JobCancelled` if cancelled."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop the job and everything it started; its outputs are not written."""


class Backend(abc.ABC):
    """Runs SynthLab tasks. ``inputs`` and ``outputs`` map option names (``t1``, ``out``) to file paths."""

    @abc.abstractmethod
    def start(self, task: str, inputs: Mapping[str, str | os.PathLike], outputs: Mapping[str, str | os.PathLike],
              params: Mapping[str, Any] | None = None, on_event: EventCallback | None = None) -> Job: ...

    def run(self, task: str, inputs: Mapping[str, str | os.PathLike], outputs: Mapping[str, str | os.PathLike],
            params: Mapping[str, Any] | None = None, on_event: EventCallback | None = None) -> JobResult:
        """Start a task and wait for it."""
        return self.start(task, inputs, outputs, params, on_event).wait()


def command_line(task: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any],
                 params: Mapping[str, Any] | None = None) -> list[str]:
    """``synthlab`` arguments for a task: ``task`` may hold a sub-command (``"phantom brain"``).

    Keys become options (``moving_labels`` -> ``--moving-labels``); ``True`` is a bare flag, ``False`` its
    ``--no-`` form (typer's switch off, ``--no-setup-correction``), ``None`` is left out (the command's own
    default), lists repeat the option.
    """
    arguments = task.split()
    for key, value in {**(params or {}), **inputs, **outputs}.items():
        option = "--" + key.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            arguments.append(option if value else "--no-" + option[2:])
        elif isinstance(value, list | tuple):
            for item in value:
                arguments += [option, str(item)]
        else:
            arguments += [option, str(value)]
    return arguments + ["--progress", "json"]


class LocalBackend(Backend):
    """Runs tasks as ``<python> -m synthlab`` subprocesses on this machine."""

    def __init__(self, python: str | os.PathLike | None = None, env: Mapping[str, str] | None = None):
        self.python = str(python or sys.executable)
        # The subprocess imports the same synthlab as this process (in Slicer it is not pip-installed).
        package_parent = str(Path(__file__).resolve().parent.parent)
        python_path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p)
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}

    def start(self, task, inputs, outputs, params=None, on_event=None) -> LocalJob:
        command = [self.python, "-m", "synthlab", *command_line(task, inputs, outputs, params)]
        return LocalJob(command, {k: Path(v) for k, v in outputs.items()}, self.env, on_event)


class LocalJob(Job):
    """A ``synthlab`` subprocess in its own process group, so cancelling ends its whole tree."""

    CANCEL_GRACE_SECONDS = 3.0

    def __init__(self, command: list[str], outputs: dict[str, Path], env: Mapping[str, str],
                 on_event: EventCallback | None):
        self.command = command
        self.outputs = outputs
        self.events: list[dict] = []
        self._on_event = on_event
        self._cancelled = False
        self._stderr: list[str] = []
        group = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        bufsize=1, env=dict(env), **group)
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            event = parse_event(line)
            if event is None:
                continue
            self.events.append(event)
            if self._on_event is not None:
                self._on_event(event)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self._stderr.append(line.rstrip("\n"))

    @property
    def done(self) -> bool:
        return self.process.poll() is not None

    def wait(self, timeout: float | None = None) -> JobResult:
        returncode = self.process.wait(timeout)
        for reader in self._readers:
            reader.join()
        if self._cancelled:
            raise JobCancelled("cancelled", returncode)
        if returncode != 0:
            raise BackendError(self._failure_message(returncode), returncode)
        missing = [str(path) for path in self.outputs.values() if not path.exists()]
        if missing:
            raise BackendError(f"the task finished but did not write {', '.join(missing)}", returncode)
        return JobResult(dict(self.outputs), list(self.events))

    def _failure_message(self, returncode: int) -> str:
        lines = [line for line in self._stderr if line.strip()]
        if returncode == 2 and lines:
            return lines[-1].removeprefix("synthlab: error: ").strip()
        tail = " | ".join(lines[-3:]) if lines else "no output"
        return f"the backend process failed (exit code {returncode}): {tail}"

    def cancel(self) -> None:
        """Terminate the process group, then kill it if it has not ended within the grace period."""
        if self.done:
            return
        self._cancelled = True
        if os.name == "posix":
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(self.CANCEL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
        else:
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(self.process.pid)], capture_output=True)
        self.process.wait()


def _signal_group(pid: int, signal_number: int) -> None:
    try:
        os.killpg(os.getpgid(pid), signal_number)
    except ProcessLookupError:
        pass


class RemoteBackend(Backend):
    """Runs tasks on a ``synthlab serve`` server: uploads the inputs, follows progress, downloads the outputs.

    A busy server (503) is retried after its Retry-After for up to ``queue_wait_seconds``. The server
    picks the device, so a ``device`` parameter is not sent.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0, poll_seconds: float = 0.5,
                 queue_wait_seconds: float = 600.0):
        import requests

        self.url = url.rstrip("/")
        self.timeout, self.poll_seconds, self.queue_wait_seconds = timeout, poll_seconds, queue_wait_seconds
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs):
        """One HTTP call; a connection failure becomes :class:`BackendError`, an error answer
        :class:`ServerError` with the server's message."""
        import requests

        try:
            response = self.http.request(method, self.url + path, timeout=kwargs.pop("timeout", self.timeout),
                                         **kwargs)
        except requests.RequestException as error:
            raise BackendError(f"cannot reach the SynthLab server at {self.url}: {error}") from None
        if response.status_code >= 400:
            raise ServerError(_error_detail(response), response.status_code, response.headers.get("Retry-After"))
        return response

    def info(self) -> dict:
        """The server's version, device, tasks and models (``GET /info/``): what "Test connection" shows."""
        return self.request("GET", "/info/").json()

    def open_session(self, inputs: Mapping[str, str | os.PathLike], minutes: float | None = None) -> str:
        """Upload inputs once (e.g. a planning CT and its contours); pass ``params={"session": id}`` later."""
        with _open_files(inputs) as files:
            params = {"seconds": minutes * 60} if minutes else {}
            return self.request("PUT", "/session/", data={"params": json.dumps(params)}, files=files).json()["id"]

    def close_session(self, session_id: str) -> None:
        self.request("DELETE", f"/session/{session_id}")

    def start(self, task, inputs, outputs, params=None, on_event=None) -> RemoteJob:
        return RemoteJob(self, task, inputs, {k: Path(v) for k, v in outputs.items()}, dict(params or {}), on_event)


class RemoteJob(Job):
    """A job on the server, driven by a thread: submit (retrying while the queue is full), poll, download."""

    def __init__(self, backend: RemoteBackend, task: str, inputs: Mapping[str, str | os.PathLike],
                 outputs: dict[str, Path], params: dict, on_event: EventCallback | None):
        self.backend, self.task, self.inputs, self.outputs = backend, task, dict(inputs), outputs
        self.params = {**{k: v for k, v in params.items() if k != "device"},
                       "outputs": {name: _format_of(path) for name, path in outputs.items()}}
        self.events: list[dict] = []
        self.job_id: str | None = None
        self._on_event = on_event
        self._cancelled = threading.Event()
        self._error: BackendError | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> JobResult:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the remote {self.task} job is still running")
        if self._cancelled.is_set():
            raise JobCancelled("cancelled")
        if self._error is not None:
            raise self._error
        return JobResult(dict(self.outputs), list(self.events))

    def cancel(self) -> None:
        self._cancelled.set()
        if self.job_id is not None and not self.done:
            try:
                self.backend.request("DELETE", f"/jobs/{self.job_id}")
            except BackendError:
                pass  # already gone; the thread stops on its own
        self._thread.join()

    def _run(self) -> None:
        try:
            self.job_id = self._submit()
            if self._follow():
                self._download()
        except BackendError as error:
            self._error = error

    def _submit(self) -> str | None:
        deadline = time.monotonic() + self.backend.queue_wait_seconds
        while not self._cancelled.is_set():
            try:
                with _open_files(self.inputs) as files:
                    return self.backend.request("POST", f"/infer/{self.task}", params={"wait": "false"},
                                                data={"params": json.dumps(self.params)}, files=files).json()["id"]
            except ServerError as error:
                if error.status != 503 or time.monotonic() > deadline:
                    raise
                self._cancelled.wait(float(error.retry_after or 1))
        return None

    def _follow(self) -> bool:
        """Poll until the job ends, passing on its progress events; True when it finished."""
        while not self._cancelled.is_set():
            status = self.backend.request("GET", f"/jobs/{self.job_id}", params={"since": len(self.events)}).json()
            for event in status["events"]:
                self.events.append(event)
                if self._on_event is not None:
                    self._on_event(event)
            if status["state"] == "done":
                return True
            if status["state"] == "failed":
                raise BackendError(status["message"])
            if status["state"] == "cancelled":
                self._cancelled.set()
                return False
            self._cancelled.wait(self.backend.poll_seconds)
        return False

    def _download(self) -> None:
        response = self.backend.request("GET", f"/jobs/{self.job_id}/result", stream=True)
        with tempfile.TemporaryFile() as archive_file:
            for block in response.iter_content(1 << 20):
                archive_file.write(block)
            with zipfile.ZipFile(archive_file) as archive:
                written = json.loads(archive.read("result.json"))["outputs"]
                for name, path in self.outputs.items():
                    member = written.get(name)
                    if member is None:
                        raise BackendError(f"the server did not return {name}")
                    _extract_atomically(archive, member, path)


def _format_of(path: Path) -> str:
    name = path.name.lower()
    for double in (".seg.nrrd", ".nii.gz"):
        if name.endswith(double):
            return double
    return path.suffix.lower()


@contextlib.contextmanager
def _open_files(inputs: Mapping[str, str | os.PathLike]):
    """``requests`` multipart file tuples for the inputs, closed afterwards."""
    with contextlib.ExitStack() as stack:
        files = {}
        for name, path in inputs.items():
            path = Path(path)
            if not path.is_file():
                raise BackendError(f"{name}: file not found: {path}")
            files[name] = (path.name, stack.enter_context(open(path, "rb")), "application/octet-stream")
        yield files


def _extract_atomically(archive: zipfile.ZipFile, member: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as target, archive.open(member) as source:
            shutil.copyfileobj(source, target, 1 << 20)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _error_detail(response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail) if detail else f"the server answered {response.status_code} {response.reason}"
