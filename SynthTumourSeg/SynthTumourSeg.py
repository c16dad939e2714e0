"""SynthTumourSeg: brain tumour segmentation learned without expert labels (two-stage tumour synthesis)."""

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic
from SynthLabCommonLib.backend import current_backend
from SynthLabCommonLib.widget import SynthLabModuleTest, SynthLabWidget
from SynthTumourSegLib.tumour_task import load_tumour, start_tumour


class SynthTumourSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SynthTumour Segmentation")
        self.parent.categories = ["SynthLab"]
        self.parent.dependencies = ["SynthLabCommon"]
        self.parent.contributors = ["SynthLab developers"]
        self.parent.helpText = _(
            "Segments a brain tumour on FLAIR (optionally with T1 and T2) with a model trained without expert "
            "labels: hand-crafted tumours train a junior model, its pseudo labels on real scans make realistic "
            "mixed tumours, and these train the senior model used here. The tumour volume is shown in ml.")
        self.parent.acknowledgementText = _(
            "Method: Zhang et al., unsupervised brain tumour segmentation by two-stage tumour synthesis "
            "(SynthTumour).")


@parameterNodeWrapper
class SynthTumourSegParameterNode:
    flair: vtkMRMLScalarVolumeNode
    t1: vtkMRMLScalarVolumeNode
    t2: vtkMRMLScalarVolumeNode
    brainMask: vtkMRMLScalarVolumeNode
    outputProbability: bool = False
    outputSegmentation: vtkMRMLSegmentationNode


class SynthTumourSegWidget(SynthLabWidget):
    def createLogic(self):
        return SynthTumourSegLogic()

    def cannotApplyReason(self, parameters):
        return None if parameters.flair else "Select the FLAIR volume"

    def loadResults(self, job, result):
        self.ui.volumeLabel.text = self.logic.load(result, self._parameterNode).summary


class SynthTumourSegLogic(ScriptedLoadableModuleLogic):
    """Usable without the GUI: ``logic.start(parameters)``, then ``logic.load(job.finish(), parameters)``."""

    def getParameterNode(self):
        return SynthTumourSegParameterNode(super().getParameterNode())

    def start(self, parameters):
        inputs = {"flair": parameters.flair, "t1": parameters.t1, "t2": parameters.t2, "mask": parameters.brainMask}
        return start_tumour(current_backend(), inputs, probability=parameters.outputProbability)

    def load(self, result, parameters):
        nodes = load_tumour(slicer.mrmlScene, result, parameters.flair)
        parameters.outputSegmentation = nodes.segmentation
        return nodes


class SynthTumourSegTest(SynthLabModuleTest):
    """Runs inside Slicer (``Slicer --testing``)."""

    def test_missing_input_is_refused(self):
        logic = SynthTumourSegLogic()
        with self.assertRaises(ValueError):
            logic.start(logic.getParameterNode())
