"""Backends run a SynthLab task away from the caller's process and stream its progress.

:class:`LocalBackend` starts ``python -m synthlab <task> ... --progress json`` as
a subprocess (Slicer never runs inference in its GUI process). A remote backend
that uploads the same files to ``synthlab serve`` implements the same
:class:`Backend` interface.
"""

from __future__ import annotations

import abc
import os
import signal
import subprocess
import sys
import threading
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
        merged: dict = {}
        for event in self.events:
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

    Keys become options (``moving_labels`` -> ``--moving-labels``); ``True`` is a bare flag,
    ``False`` and ``None`` are left out, lists repeat the option.
    """
    arguments = task.split()
    for key, value in {**(params or {}), **inputs, **outputs}.items():
        option = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            arguments.append(option)
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
