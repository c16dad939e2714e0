"""HierSynthSlicer: synthesize a cerebral blood volume (CBV) map from non-contrast MRI (HierSynth)."""

import slicer
from HierSynthSlicerLib.cbv_task import CONTRASTS, load_cbv, required_contrasts, start_cbv
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
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
    tumourSegmentation: vtkMRMLSegmentationNode
    outputCbv: vtkMRMLScalarVolumeNode


class HierSynthSlicerWidget(SynthLabWidget):
    def createLogic(self):
        return HierSynthSlicerLogic()

    def setup(self):
        super().setup()
        try:
            required = self.logic.required()
        except Exception as error:  # no model registered, server unreachable: say so, keep the panel usable
            self.ui.rcbvLabel.text = f"No CBV model available: {error}"
            return
        for name in CONTRASTS:  # mark the contrasts the model needs
            label = getattr(self.ui, f"{name}Label")
            label.text = f"{name.upper()}{' *' if name in required else ''}:"

    def cannotApplyReason(self, parameters):
        missing = [name.upper() for name in self.logic.required() if getattr(parameters, name) is None]
        return f"Select {', '.join(missing)}" if missing else None

    def loadResults(self, job, result):
        nodes = self.logic.load(result, self._parameterNode)
        self.ui.rcbvLabel.text = nodes.summary
        slicer.util.setSliceViewerLayers(background=self.logic.reference(self._parameterNode), foreground=nodes.volume,
                                         foregroundOpacity=0.5)


class HierSynthSlicerLogic(ScriptedLoadableModuleLogic):
    """Usable without the GUI: ``logic.start(parameters)``, then ``logic.load(job.finish(), parameters)``."""

    def __init__(self):
        super().__init__()
        self._required = None

    def getParameterNode(self):
        return HierSynthSlicerParameterNode(super().getParameterNode())

    def required(self):
        """The contrasts the CBV model reads (from its card), looked up once."""
        if self._required is None:
            self._required = required_contrasts(current_backend())
        return self._required

    def reference(self, parameters):
        """The node whose grid the CBV comes back on: the model's first contrast."""
        return getattr(parameters, self.required()[0])

    def start(self, parameters):
        inputs = {name: getattr(parameters, name) for name in CONTRASTS}
        inputs.update(mask=parameters.brainMask, tumour=parameters.tumourSegmentation)
        return start_cbv(current_backend(), inputs, self.required())

    def load(self, result, parameters):
        nodes = load_cbv(slicer.mrmlScene, result, self.reference(parameters))
        parameters.outputCbv = nodes.volume
        return nodes


class HierSynthSlicerTest(SynthLabModuleTest):
    """Runs inside Slicer (``Slicer --testing``)."""

    def test_missing_input_is_refused(self):
        logic = HierSynthSlicerLogic()
        parameters = logic.getParameterNode()
        with self.assertRaises(ValueError):
            logic.start(parameters)
