"""Running a backend task on Slicer nodes: export inputs, run without blocking, import outputs.

This is the MRML-level half of every module's Apply button, free of Qt so that
it runs (and is tested) under slicer-core. The module Widget polls :attr:`done`
from a timer, shows :attr:`latest_event`, and calls :meth:`finish` or :meth:`cancel`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthlab import mrml
from synthlab.client import Backend, Job, JobResult


class NodeJob:
    """One backend task whose inputs are nodes and whose outputs land in a private temporary folder.

    ``inputs`` maps option names to nodes (written as uncompressed NRRD, or
    .seg.nrrd for segmentations); ``outputs`` maps option names to file names.
    """

    def __init__(self, backend: Backend, task: str, inputs: Mapping[str, Any], outputs: Mapping[str, str],
                 params: Mapping[str, Any] | None = None):
        self.folder = Path(tempfile.mkdtemp(prefix="synthlab-"))
        self.latest_event: dict = {"stage": "exporting", "progress": 0.0, "message": "writing inputs"}
        try:
            input_files = {key: mrml.save_node(node, self.folder / _file_name(key, node))
                           for key, node in inputs.items() if node is not None}
            output_files = {key: self.folder / name for key, name in outputs.items()}
            self.job: Job = backend.start(task, input_files, output_files, params, on_event=self._on_event)
        except BaseException:
            self.cleanup()
            raise

    def _on_event(self, event: dict) -> None:
        self.latest_event = event

    @property
    def done(self) -> bool:
        return self.job.done

    def finish(self) -> JobResult:
        """Wait for the task; raises the backend's error (e.g. which input is wrong) if it failed."""
        return self.job.wait()

    def cancel(self) -> None:
        self.job.cancel()
        self.cleanup()

    def cleanup(self) -> None:
        """Remove the temporary folder (call once the outputs are loaded into nodes)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _file_name(key: str, node) -> str:
    if node.IsA("vtkMRMLSegmentationNode"):
        return f"{key}.seg.nrrd"
    if node.IsA("vtkMRMLTransformNode"):
        return f"{key}.h5"
    return f"{key}.nrrd"
