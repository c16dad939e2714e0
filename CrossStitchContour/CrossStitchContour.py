"""CrossStitchContour: propagate planning contours to today's CT (joint registration + segmentation)."""

import slicer
from CrossStitchContourLib.contour_task import load_contours, start_contour
from slicer import vtkMRMLGridTransformNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic
from SynthLabCommonLib.backend import current_backend
from SynthLabCommonLib.widget import SynthLabModuleTest, SynthLabWidget


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
            "field for review.")
        self.parent.acknowledgementText = _(
            "Method: Elmahdy et al., joint registration and segmentation via multi-task learning with "
            "cross-stitch units for adaptive radiotherapy of prostate cancer; registration core after "
            "unsupervised end-to-end deformable registration networks.")


@parameterNodeWrapper
class CrossStitchContourParameterNode:
    planningCt: vtkMRMLScalarVolumeNode
    planningSegmentation: vtkMRMLSegmentationNode
    dailyCt: vtkMRMLScalarVolumeNode
    referenceSegmentation: vtkMRMLSegmentationNode
    outputSegmentation: vtkMRMLSegmentationNode
    outputTransform: vtkMRMLGridTransformNode


class CrossStitchContourWidget(SynthLabWidget):
    def createLogic(self):
        return CrossStitchContourLogic()

    def cannotApplyReason(self, parameters):
        if not (parameters.planningCt and parameters.planningSegmentation and parameters.dailyCt):
            return "Select the planning CT, its contours and the daily CT"
        return None

    def loadResults(self, job, result):
        contours, _field = self.logic.load(result, self._parameterNode)
        slicer.util.setSliceViewerLayers(background=self._parameterNode.dailyCt)
        contours.GetDisplayNode().SetVisibility(True)


class CrossStitchContourLogic(ScriptedLoadableModuleLogic):
    """Usable without the GUI: ``logic.start(parameters)``, then ``logic.load(job.finish(), parameters)``."""

    def getParameterNode(self):
        return CrossStitchContourParameterNode(super().getParameterNode())

    def start(self, parameters):
        return start_contour(current_backend(), parameters.planningCt, parameters.planningSegmentation,
                             parameters.dailyCt)

    def load(self, result, parameters):
        contours, field = load_contours(slicer.mrmlScene, result, parameters.dailyCt,
                                        parameters.planningSegmentation)
        parameters.outputSegmentation, parameters.outputTransform = contours, field
        return contours, field


class CrossStitchContourTest(SynthLabModuleTest):
    """Runs inside Slicer (``Slicer --testing``)."""

    def test_missing_input_is_refused(self):
        logic = CrossStitchContourLogic()
        with self.assertRaises(ValueError):
            logic.start(logic.getParameterNode())
