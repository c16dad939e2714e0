"""Run a :class:`synthlab.slicer_job.NodeJob` without blocking Slicer: progress bar, log, Apply <-> Cancel."""

from __future__ import annotations

from collections.abc import Callable

import qt
import slicer

POLL_MILLISECONDS = 200


class JobRunner:
    """Drives one job at a time from the module panel.

    While a job runs the Apply button reads "Cancel" and cancels it; progress
    events move the progress bar and are appended to the log.
    """

    def __init__(self, apply_button, progress_bar, log):
        self.apply_button, self.progress_bar, self.log = apply_button, progress_bar, log
        self.apply_text = apply_button.text
        self.job = None
        self._on_success: Callable | None = None
        self._last_message = ""
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MILLISECONDS)
        self.timer.connect("timeout()", self._poll)

    @property
    def running(self) -> bool:
        return self.job is not None

    def start(self, make_job: Callable, on_success: Callable) -> None:
        """``make_job()`` returns a started NodeJob; ``on_success(job, result)`` loads its outputs into nodes."""
        self.log.clear()
        self.progress_bar.setValue(0)
        with slicer.util.tryWithErrorDisplay("Could not start the task", waitCursor=True):
            self.job = make_job()
            self._on_success = on_success
            self.apply_button.text = "Cancel"
            self.timer.start()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self._append("Cancelled.")
            self._stop()

    def _poll(self) -> None:
        event = self.job.latest_event
        self.progress_bar.setValue(int(100 * event.get("progress", 0.0)))
        message = f"{event.get('stage', '')}: {event.get('message', '')}"
        if message != self._last_message:
            self._append(message)
        if not self.job.done:
            return
        job, on_success = self.job, self._on_success
        self._stop()
        try:
            with slicer.util.tryWithErrorDisplay("The task failed", waitCursor=True):
                on_success(job, job.finish())
                self._append("Done.")
        finally:
            job.cleanup()

    def _append(self, message: str) -> None:
        self._last_message = message
        self.log.appendPlainText(message)

    def _stop(self) -> None:
        self.timer.stop()
        self.job = None
        self.apply_button.text = self.apply_text
