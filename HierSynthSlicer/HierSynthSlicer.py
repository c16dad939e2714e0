"""HierSynthSlicer: synthesize a cerebral blood volume (CBV) map from non-contrast MRI (HierSynth)."""

import slicer
from HierSynthSlicerLib.cbv_task import REQUIRED_INPUTS, load_cbv, start_cbv
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic
from SynthLabCommonLib.backend import current_backend
from SynthLabCommonLib.widget import SynthLabModuleTest, SynthLabWidget


class HierSynthSlicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("HierSynth CBV")
        self.parent.categories = ["SynthLab"]
        self.parent.dependencies = ["SynthLabCommon"]
        self.parent.contributors = ["SynthLab developers"]
        self.parent.helpText = _(
            "Synthesizes a cerebral blood volume (CBV) map from non-contrast MRI (T1, T2, FLAIR, ADC) with "
            "HierSynth: a StyleGAN-based global synthesis module, a local module that refines the residual, "
            "and a perfusion-aware contrastive constraint that keeps the tumour's vascular texture. "
            "The result is synthetic and not for diagnosis.")
        self.parent.acknowledgementText = _(
            "Method: HierSynth, hierarchical contrast-free CBV map synthesis (see the SynthLab documentation "
            "for the paper). Built on PyTorch, MONAI and SimpleITK.")


@parameterNodeWrapper
class HierSynthSlicerParameterNode:
    t1: vtkMRMLScalarVolumeNode
    t2: vtkMRMLScalarVolumeNode
    flair: vtkMRMLScalarVolumeNode
    adc: vtkMRMLScalarVolumeNode
    brainMask: vtkMRMLScalarVolumeNode
    outputCbv: vtkMRMLScalarVolumeNode


class HierSynthSlicerWidget(SynthLabWidget):
    def createLogic(self):
        return HierSynthSlicerLogic()

    def cannotApplyReason(self, parameters):
        missing = [name.upper() for name in REQUIRED_INPUTS if getattr(parameters, name) is None]
        return f"Select {', '.join(missing)}" if missing else None

    def loadResults(self, job, result):
        node = self.logic.load(result, self._parameterNode)
        slicer.util.setSliceViewerLayers(background=self._parameterNode.t1, foreground=node, foregroundOpacity=0.5)


class HierSynthSlicerLogic(ScriptedLoadableModuleLogic):
    """Usable without the GUI: ``logic.start(parameters)``, then ``logic.load(job.finish(), parameters)``."""

    def getParameterNode(self):
        return HierSynthSlicerParameterNode(super().getParameterNode())

    def start(self, parameters):
        inputs = {"t1": parameters.t1, "t2": parameters.t2, "adc": parameters.adc, "flair": parameters.flair,
                  "mask": parameters.brainMask}
        return start_cbv(current_backend(), inputs)

    def load(self, result, parameters):
        node = load_cbv(slicer.mrmlScene, result, parameters.t1)
        parameters.outputCbv = node
        return node


class HierSynthSlicerTest(SynthLabModuleTest):
    """Runs inside Slicer (``Slicer --testing``)."""

    def test_missing_input_is_refused(self):
        logic = HierSynthSlicerLogic()
        parameters = logic.getParameterNode()
        with self.assertRaises(ValueError):
            logic.start(parameters)
