"""Figures: views follow the radiological convention whatever the file's orientation."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import SimpleITK as sitk
from conftest import rotation_direction

from synthlab import figures, volume
from synthlab.demo import StepOutput


def _marked_volume() -> sitk.Image:
    """A 20³ LPS volume with markers: 1 anterior, 2 superior, 3 on the patient's right."""
    values = np.zeros((20, 20, 20), np.float32)  # (z=S, y=P, x=L)
    values[10, 1, 10] = 1  # small y: anterior
    values[18, 10, 10] = 2  # large z: superior
    values[10, 10, 1] = 3  # small x: right
    return sitk.GetImageFromArray(values)


def _where(view: np.ndarray, value: int) -> tuple[int, int]:
    row, column = np.argwhere(view == value)[0]
    return int(row), int(column)


def test_views_put_anterior_and_superior_at_the_top_and_right_on_the_left():
    for direction in (None, (-1, 0, 0, 0, -1, 0, 0, 0, 1)):
        image = _marked_volume()
        if direction:  # the same anatomy stored in RAS-like order
            image = sitk.GetImageFromArray(sitk.GetArrayFromImage(image)[:, ::-1, ::-1].copy())
            image.SetDirection(direction)
            image.SetOrigin((19.0, 19.0, 0.0))
        slices = figures.orthogonal_slices(volume.to_canonical(image), centre=(10, 10, 10))
        assert _where(slices["axial"], 1)[0] < 3  # anterior at the top
        assert _where(slices["axial"], 3)[1] < 3  # patient's right on the left
        assert _where(slices["coronal"], 2)[0] < 3  # superior at the top
        assert _where(slices["sagittal"], 2)[0] < 3
        assert _where(slices["sagittal"], 1)[1] < 3  # anterior on the left


def test_montage_writes_a_png_with_a_row_per_image(tmp_path):
    image = sitk.Cast(_marked_volume(), sitk.sitkFloat32)
    image.SetDirection(rotation_direction(20))
    labels = sitk.Cast(image > 0, sitk.sitkUInt8)
    path = figures.montage([figures.Row("a", image, [labels]), figures.Row("b", image, window=(0, 1))],
                           tmp_path / "m.png")
    written = sitk.ReadImage(str(path))
    assert written.GetSize()[1] > written.GetSize()[0] * 0.5  # two rows of three views


def test_outlines_keep_one_colour_per_label_value_and_dash_references():
    """An organ keeps its colour whichever other labels share the slice (the colour follows the label value,
    not the slice's largest label); references are dashed, results solid."""
    figure, axis = plt.subplots()
    few, many = np.zeros((20, 20), int), np.zeros((20, 20), int)
    few[2:6, 2:6] = 1
    many[2:6, 2:6], many[10:15, 10:15] = 1, 4
    figures.outline(axis, few, "solid")
    figures.outline(axis, many, "dashed")
    colours = [tuple(contours.get_edgecolor()[0][:3]) for contours in axis.collections]
    dashed = [contours.get_linestyle()[0][1] is not None for contours in axis.collections]
    plt.close(figure)
    assert colours == [figures.LABEL_COLOURS[0], figures.LABEL_COLOURS[0], figures.LABEL_COLOURS[3]]
    assert dashed == [False, True, True]


def test_a_row_cuts_through_its_references_when_it_has_no_result_outline():
    """Slices go through the labelled structure, whether it comes as a result or only as a reference (away from
    the volume's middle here, so the middle slices would miss it)."""
    image = sitk.Cast(_marked_volume(), sitk.sitkFloat32)
    values = np.zeros((20, 20, 20), np.uint8)
    values[3:6, 14:17, 2:5] = 2
    _, slices, outlines = figures.row_views(figures.Row("reference only", image, references=[
        sitk.GetImageFromArray(values)]))
    assert [style for _, style in outlines] == ["dashed"]
    for view in figures.VIEWS:
        assert outlines[0][0][view].max() == 2 and slices[view].shape == outlines[0][0][view].shape


def test_overview_titles_carry_each_volumes_caption(tmp_path):
    """The demo prints a volume's scores in its row title; a volume without a caption keeps the plain title."""
    paths = {name: volume.write_image(_marked_volume(), tmp_path / f"{name}.nrrd") for name in ("ct", "field")}
    rows = figures.overview_rows({"step": StepOutput(volumes=paths, captions={"ct": "MSD mm: prostate 0.45"})})
    assert [row.title for row in rows] == ["step: ct (MSD mm: prostate 0.45)", "step: field"]
