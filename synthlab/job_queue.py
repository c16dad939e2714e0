"""The server's job queue: one job at a time per worker (one worker per GPU, or one on CPU).

A job is a folder (``inputs/`` and its outputs) and a ``synthlab`` subprocess
started through :class:`~synthlab.client.LocalBackend`, so a crash or a memory
leak in a pipeline cannot take the server down, and cancelling ends the whole
process tree. Inputs are deleted when the job ends; a failed or cancelled job's
folder goes at once, a finished one's after its result is fetched or when it
expires.
"""

from __future__ import annotations

import collections
import enum
import math
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from synthlab.client import BackendError, JobCancelled, LocalBackend, LocalJob, merged_results
from synthlab.errors import EXIT_BAD_INPUT

DEFAULT_JOB_SECONDS = 5.0  # Retry-After estimate before any job has finished
CANCEL_WAIT_SECONDS = 10.0


class JobState(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


@dataclass
class ServerJob:
    """One request's work. ``bad_input`` marks a failure caused by the request (the task's exit code 2)."""

    task: str
    folder: Path
    inputs: dict[str, Path]
    outputs: dict[str, Path]
    params: dict
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: JobState = JobState.queued
    events: list[dict] = field(default_factory=list)
    message: str = ""
    bad_input: bool = False
    cancel_requested: bool = False
    finished_at: float | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    process: LocalJob | None = None

    @property
    def results(self) -> dict:
        return merged_results(self.events)


class QueueFull(Exception):
    """Every worker is busy and the waiting line is full; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; retry after {retry_after} s")
        self.retry_after = retry_after


class JobQueue:
    """Runs jobs on worker threads, each owning one device (``worker_envs``: extra environment per worker)."""

    def __init__(self, worker_envs: list[Mapping[str, str]], limit: int, retention_seconds: float,
                 params: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None):
        self.limit, self.retention_seconds = limit, retention_seconds
        self.params = dict(params or {})
        self.jobs: dict[str, ServerJob] = {}
        self._waiting: queue.Queue[ServerJob | None] = queue.Queue(maxsize=limit)
        self._lock = threading.Lock()
        self._durations: collections.deque[float] = collections.deque(maxlen=20)  # recent job seconds
        self._workers = [threading.Thread(target=self._work, args=(LocalBackend(env={**(env or {}), **extra}),),
                                          daemon=True, name=f"synthlab-worker-{index}")
                         for index, extra in enumerate(worker_envs)]
        for worker in self._workers:
            worker.start()

    @property
    def workers(self) -> int:
        return len(self._workers)

    def submit(self, job: ServerJob) -> None:
        """Queue ``job``, or raise :class:`QueueFull`."""
        with self._lock:
            self.jobs[job.id] = job
        try:
            self._waiting.put_nowait(job)
        except queue.Full:
            with self._lock:
                del self.jobs[job.id]
            raise QueueFull(self.retry_after()) from None

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the mean job time times the line ahead, per worker."""
        mean = sum(self._durations) / len(self._durations) if self._durations else DEFAULT_JOB_SECONDS
        return max(1, math.ceil(mean * (self._waiting.qsize() + 1) / self.workers))

    def get(self, job_id: str) -> ServerJob | None:
        with self._lock:
            return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> ServerJob | None:
        """Cancel a queued or running job and wait (briefly) until it has stopped; a finished one is left."""
        job = self.get(job_id)
        if job is None:
            return None
        with self._lock:
            if job.state == JobState.queued:
                self._finish(job, JobState.cancelled, "cancelled")
            elif job.state == JobState.running:
                job.cancel_requested = True
        if job.process is not None:
            job.process.cancel()
        job.finished.wait(CANCEL_WAIT_SECONDS)
        return job

    def discard(self, job_id: str) -> None:
        """Forget a finished job and delete its folder."""
        with self._lock:
            job = self.jobs.pop(job_id, None)
        if job is not None:
            shutil.rmtree(job.folder, ignore_errors=True)

    def sweep(self, now: float | None = None) -> None:
        """Discard finished jobs whose results nobody fetched within the retention time."""
        now = time.time() if now is None else now
        with self._lock:
            expired = [job.id for job in self.jobs.values()
                       if job.finished_at is not None and now - job.finished_at > self.retention_seconds]
        for job_id in expired:
            self.discard(job_id)

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = [job.state for job in self.jobs.values()]
        return {"workers": self.workers, "limit": self.limit, "waiting": states.count(JobState.queued),
                "running": states.count(JobState.running)}

    def shutdown(self) -> None:
        """Cancel everything and stop the workers."""
        for job_id in list(self.jobs):
            self.cancel(job_id)
        for _ in self._workers:
            try:
                self._waiting.put(None, timeout=1)
            except queue.Full:
                pass

    def _work(self, backend: LocalBackend) -> None:
        while True:
            job = self._waiting.get()
            if job is None:
                return
            with self._lock:
                if job.state != JobState.queued:  # cancelled while waiting
                    continue
                job.state = JobState.running
            self._run(backend, job)

    def _run(self, backend: LocalBackend, job: ServerJob) -> None:
        started = time.perf_counter()
        state, message = JobState.done, ""
        try:
            job.process = backend.start(job.task, job.inputs, job.outputs, {**self.params, **job.params},
                                        job.events.append)
            if job.cancel_requested:  # cancelled between the state change and the start
                job.process.cancel()
            job.process.wait()
        except JobCancelled:
            state, message = JobState.cancelled, "cancelled"
        except BackendError as error:
            state, message = JobState.failed, error.message
            job.bad_input = error.returncode == EXIT_BAD_INPUT
        except OSError as error:
            state, message = JobState.failed, f"could not start the task: {error}"
        finally:
            shutil.rmtree(job.folder / "inputs", ignore_errors=True)
        self._durations.append(time.perf_counter() - started)
        with self._lock:
            self._finish(job, state, message)

    def _finish(self, job: ServerJob, state: JobState, message: str) -> None:
        """Record the end of a job (lock held); a job without results loses its folder now."""
        job.state, job.message, job.finished_at = state, message or job.message, time.time()
        if state != JobState.done:
            shutil.rmtree(job.folder, ignore_errors=True)
        job.finished.set()
