"""Progress events for long work: JSON lines for machines, a progress bar for people.

With ``--progress json`` every event is one line on stdout:
``{"stage": "...", "progress": 0.0-1.0, "message": "..."}`` (extra keys allowed,
e.g. ``"result"``). Slicer's LocalBackend and the server read these lines.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

PROGRESS_MODES = ("bar", "json", "none")


class ProgressReporter:
    """Report ``(stage, fraction, message)`` events in the chosen mode.

    Use as a context manager so that a bar is closed cleanly.
    """

    def __init__(self, mode: str = "bar", stream: TextIO | None = None):
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress mode must be one of {PROGRESS_MODES}")
        self.mode = mode
        self.stream = stream or sys.stdout
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> ProgressReporter:
        if self.mode == "bar":
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 TimeElapsedColumn(), transient=False, console=None)
            self._bar.start()
            self._task = self._bar.add_task("starting", total=1.0)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def update(self, stage: str, progress: float, message: str = "", **extra: Any) -> None:
        progress = min(1.0, max(0.0, float(progress)))
        if self.mode == "json":
            event = {"stage": stage, "progress": round(progress, 4), "message": message, **extra}
            self.stream.write(json.dumps(event) + "\n")
            self.stream.flush()
        elif self._bar is not None:
            self._bar.update(self._task, completed=progress, description=f"{stage}: {message}" if message else stage)

    def stage(self, stage: str, start: float, end: float) -> StageProgress:
        """A reporter for one stage that maps its own 0–1 onto ``[start, end]`` of the whole job."""
        return StageProgress(self, stage, start, end)


class StageProgress:
    """Progress inside one stage of a job, scaled into the job's overall progress."""

    def __init__(self, reporter: ProgressReporter, stage: str, start: float, end: float):
        self.reporter, self.name, self.start, self.end = reporter, stage, start, end

    def __call__(self, fraction: float, message: str = "", **extra: Any) -> None:
        self.reporter.update(self.name, self.start + (self.end - self.start) * fraction, message, **extra)


def parse_event(line: str) -> dict | None:
    """A progress event from one line of output, or None for any other line."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "stage" in event else None
