"""CrossStitchContour: propagate planning contours to today's CT (joint registration + segmentation)."""

from typing import Annotated

import qt
import slicer
from CrossStitchContourLib.contour_task import default_organ_map, load_contours, start_contour
from slicer import (
    vtkMRMLGridTransformNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, Default, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic
from SynthLabCommonLib.backend import current_backend
from SynthLabCommonLib.widget import SynthLabModuleTest, SynthLabWidget

from synthlab import mrml
from synthlab.labels import PELVIS_ORGANS, format_organ_map, parse_organ_map


class CrossStitchContour(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Cross-stitch Re-contouring")
        self.parent.categories = ["SynthLab"]
        self.parent.dependencies = ["SynthLabCommon"]
        self.parent.contributors = ["SynthLab developers"]
        self.parent.helpText = _(
            "Adaptive radiotherapy re-contouring: propagates planning contours (prostate, seminal vesicles, "
            "rectum, bladder) to the daily CT with a joint registration and segmentation network whose two "
            "branches are linked by cross-stitch units, and returns the deformed contours and the displacement "
            "field for review. A rigid match on bone first corrects how the patient lies today (set-up "
            "correction; the field includes it).")
        self.parent.acknowledgementText = _(
            "Method: Elmahdy et al., joint registration and segmentation via multi-task learning with "
            "cross-stitch units for adaptive radiotherapy of prostate cancer; registration core after "
            "unsupervised end-to-end deformable registration networks.")


SETUP_CORRECTION = {"model default": None, "on": True, "off": False}


@parameterNodeWrapper
class CrossStitchContourParameterNode:
    planningCt: vtkMRMLScalarVolumeNode
    planningSegmentation: vtkMRMLSegmentationNode
    dailyCt: vtkMRMLScalarVolumeNode
    referenceSegmentation: vtkMRMLSegmentationNode
    organMap: str  # "segment=organ,..." (the --organ-map option); empty: match by name
    warpPlanningCt: bool
    guideOrgans: str  # the --guide-organs option; empty: the model card's choice
    segmentationWeight: str  # the --segmentation-weight option; empty: the model card's choice
    # the rigid match on bone before the network (--setup-correction / --no-setup-correction)
    setupCorrection: Annotated[str, Choice(list(SETUP_CORRECTION)), Default("model default")]
    outputSegmentation: vtkMRMLSegmentationNode
    outputTransform: vtkMRMLGridTransformNode
    outputWarpedCt: vtkMRMLScalarVolumeNode
    outputMetrics: vtkMRMLTableNode


class CrossStitchContourWidget(SynthLabWidget):
    def createLogic(self):
        return CrossStitchContourLogic()

    def setup(self):
        super().setup()
        self.ui.planningSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.fillOrganMap)

    def cannotApplyReason(self, parameters):
        if not (parameters.planningCt and parameters.planningSegmentation and parameters.dailyCt):
            return "Select the planning CT, its contours and the daily CT"
        return None

    def fillOrganMap(self, segmentation):
        """One row per planning segment with a combo box of model organs, preset by name."""
        table = self.ui.organMapTable
        table.setRowCount(0)
        if segmentation is None:
            return
        preset = default_organ_map(segmentation)
        for row, segmentName in enumerate(mrml.segment_names(segmentation)):
            table.insertRow(row)
            table.setItem(row, 0, qt.QTableWidgetItem(segmentName))
            choice = qt.QComboBox()
            choice.addItems(["(not an organ of the model)"] + PELVIS_ORGANS)
            choice.currentText = preset.get(segmentName, "(not an organ of the model)")
            choice.connect("currentIndexChanged(int)", self.storeOrganMap)
            table.setCellWidget(row, 1, choice)
        self.storeOrganMap()

    def storeOrganMap(self):
        table = self.ui.organMapTable
        mapping = {table.item(row, 0).text(): table.cellWidget(row, 1).currentText
                   for row in range(table.rowCount) if table.cellWidget(row, 1).currentIndex > 0}
        self._parameterNode.organMap = format_organ_map(mapping) or ""

    def loadResults(self, job, result):
        nodes = self.logic.load(result, self._parameterNode)
        slicer.util.setSliceViewerLayers(background=self._parameterNode.dailyCt, foreground=nodes.warped,
                                         foregroundOpacity=0.5 if nodes.warped else 0.0)
        nodes.contours.GetDisplayNode().SetVisibility(True)
        if nodes.metrics is not None:
            self.ui.metricsTableView.setMRMLTableNode(nodes.metrics)
        if nodes.review_message():
            slicer.util.warningDisplay(nodes.review_message(), windowTitle="CrossStitchContour")


class CrossStitchContourLogic(ScriptedLoadableModuleLogic):
    """Usable without the GUI: ``logic.start(parameters)``, then ``logic.load(job.finish(), parameters)``."""

    def getParameterNode(self):
        return CrossStitchContourParameterNode(super().getParameterNode())

    def start(self, parameters):
        organMap = parse_organ_map(parameters.organMap) if parameters.organMap else None
        return start_contour(current_backend(), parameters.planningCt, parameters.planningSegmentation,
                             parameters.dailyCt, parameters.referenceSegmentation, organMap,
                             parameters.warpPlanningCt, guide_organs=parameters.guideOrgans,
                             segmentation_weight=parameters.segmentationWeight,
                             setup_correction=SETUP_CORRECTION[parameters.setupCorrection])

    def load(self, result, parameters):
        nodes = load_contours(slicer.mrmlScene, result, parameters.dailyCt, parameters.planningSegmentation)
        parameters.outputSegmentation, parameters.outputTransform = nodes.contours, nodes.field
        parameters.outputWarpedCt, parameters.outputMetrics = nodes.warped, nodes.metrics
        return nodes


class CrossStitchContourTest(SynthLabModuleTest):
    """Runs inside Slicer (``Slicer --testing``)."""

    def test_missing_input_is_refused(self):
        logic = CrossStitchContourLogic()
        with self.assertRaises(ValueError):
            logic.start(logic.getParameterNode())
