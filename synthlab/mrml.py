"""Slicer nodes <-> files. Imports ``slicer`` lazily: works in Slicer and under slicer-core (no Qt).

Everything goes through Slicer's own storage nodes, which convert between the
files' LPS and Slicer's RAS, so no manual flips happen here. Application-level
helpers (``slicer.util.loadVolume`` and friends) are deliberately not used:
they need the Slicer application.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from synthlab import labels as label_io

PROVENANCE_PREFIX = "SynthLab."


def _slicer():
    import slicer

    return slicer


def headless_scene():
    """A scene with the application and module logics that the storage nodes need (for slicer-core)."""
    slicer = _slicer()
    scene = slicer.vtkMRMLScene()
    application = slicer.vtkSlicerApplicationLogic()
    application.SetMRMLScene(scene)
    application.GetColorLogic().SetMRMLScene(scene)
    application.GetColorLogic().AddDefaultColorNodes()
    for name, logic_class in [("Colors", slicer.vtkMRMLColorLogic), ("Volumes", slicer.vtkSlicerVolumesLogic),
                              ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                              ("Transforms", slicer.vtkSlicerTransformLogic)]:
        logic = logic_class()
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(application)
        application.SetModuleLogic(name, logic)
    scene.applicationLogic = application  # keep the logics alive as long as the scene
    slicer.mrmlScene = scene
    return scene


def save_node(node, path: str | os.PathLike) -> Path:
    """Write a volume, labelmap, segmentation or transform node with its own storage node type.

    NRRD is written uncompressed (fast). The node's own storage settings are left untouched.
    """
    path = Path(path)
    scene = node.GetScene()
    storage = node.CreateDefaultStorageNode()
    scene.AddNode(storage)
    try:
        if hasattr(storage, "SetUseCompression"):
            storage.SetUseCompression(path.name.lower().endswith(".gz"))
        storage.SetFileName(str(path))
        if not storage.WriteData(node):
            raise OSError(f"Slicer could not write {node.GetName()} to {path}")
    finally:
        scene.RemoveNode(storage)
    return path


def _read_into(node, path: Path):
    """Read ``path`` into ``node``. The storage node is dropped: outputs come from temporary
    folders, and saving the scene later creates a fresh one."""
    scene = node.GetScene()
    storage = node.CreateDefaultStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    read = storage.ReadData(node)
    scene.RemoveNode(storage)
    if not read:
        scene.RemoveNode(node)
        raise OSError(f"Slicer could not read {path}")
    return node


def load_volume(scene, path: str | os.PathLike, name: str, labelmap: bool = False):
    """A new scalar (or labelmap) volume node read from ``path``, with display nodes."""
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    _read_into(node, Path(path))
    node.CreateDefaultDisplayNodes()
    return node


def load_segmentation(scene, path: str | os.PathLike, name: str, reference_volume=None):
    """A new segmentation node from a .seg.nrrd or a label image (+ ``.labels.json`` sidecar).

    Segment names, colours and terminology come from the file.
    """
    path = Path(path)
    if not label_io.is_seg_nrrd(path):
        with tempfile.TemporaryDirectory() as folder:
            converted = label_io.write_labels(label_io.read_labels(path), Path(folder) / "labels.seg.nrrd")
            return load_segmentation(scene, converted, name, reference_volume)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    _read_into(node, path)
    node.CreateDefaultDisplayNodes()
    if reference_volume is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    return node


def segment_names(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def labelmap_to_segmentation(labelmap_node, segments: list[label_io.Segment], name: str):
    """A segmentation node from a labelmap node, named and coloured by ``segments`` (by label value)."""
    slicer = _slicer()
    scene = labelmap_node.GetScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap_node, node):
        raise ValueError(f"could not import {labelmap_node.GetName()} into a segmentation")
    by_value = {s.value: s for s in segments}
    segmentation = node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        known = by_value.get(segment.GetLabelValue())
        if known is not None:
            segment.SetName(known.name)
            segment.SetColor(*known.color)
    return node


def load_grid_transform(scene, path: str | os.PathLike, name: str):
    """A grid transform node from a displacement field file (ITK convention: fixed -> moving, LPS mm).

    Slicer keeps it as the transform *from parent*, so ``GetTransformFromParent().TransformPoint``
    maps a fixed-image point (RAS) to the corresponding moving-image point.
    """
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", name)
    return _read_into(node, Path(path))


def metrics_table(scene, metrics: Mapping, name: str):
    """A table node from metrics: ``{"Dice": 0.9}`` gives one row; ``{"prostate": {"Dice": 0.9}}`` a row per key."""
    rows = metrics if metrics and all(isinstance(v, Mapping) for v in metrics.values()) else {"": metrics}
    columns = list(dict.fromkeys(column for values in rows.values() for column in values))
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    first = table.AddColumn()
    first.SetName("Structure")
    for column in columns:
        table.AddColumn().SetName(column)
    for row_name, values in rows.items():
        row = table.AddEmptyRow()
        table.SetCellText(row, 0, str(row_name))
        for index, column in enumerate(columns, start=1):
            value = values.get(column, "")
            table.SetCellText(row, index, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table


def set_provenance(node, **attributes) -> None:
    """Record where a result came from as node attributes ``SynthLab.<key>``."""
    for key, value in attributes.items():
        node.SetAttribute(PROVENANCE_PREFIX + key, str(value))
