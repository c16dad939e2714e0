"""The Widget part of Slicer's scripted-module template, shared by the SynthLab panels.

A module's Widget subclasses :class:`SynthLabWidget`, creates its logic in
:meth:`createLogic` (with ``start(parameters)`` returning a NodeJob), and implements
``cannotApplyReason(parameters)`` and ``loadResults(job, result)``. Its ``Resources/UI/<Module>.ui`` must have ``applyButton``,
``progressBar`` and ``logText``.
"""

from __future__ import annotations

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from SynthLabCommonLib.backend_section import BackendSection
from SynthLabCommonLib.dependencies import ensure_backend_dependencies
from SynthLabCommonLib.runner import JobRunner


class SynthLabWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.backendSection = BackendSection(self.layout)
        self.logic = self.createLogic()
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.runner = JobRunner(self.ui.applyButton, self.ui.progressBar, self.ui.logText)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.runner.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtkModifiedEvent(), self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.runner.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtkModifiedEvent(), self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtkModifiedEvent(), self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        reason = self.cannotApplyReason(self._parameterNode) if self._parameterNode else "No parameter node"
        self.ui.applyButton.enabled = self.runner.running or reason is None
        self.ui.applyButton.toolTip = reason or "Run on the selected inputs"

    def onApplyButton(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            return
        if not ensure_backend_dependencies():
            return
        self.runner.start(lambda: self.logic.start(self._parameterNode), self.loadResults)


def vtkModifiedEvent():
    import vtk

    return vtk.vtkCommand.ModifiedEvent


class SynthLabModuleTest(ScriptedLoadableModuleTest):
    """Template test runner: a clean scene, then every ``test_*`` method of the module's test class."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for name in sorted(n for n in dir(self) if n.startswith("test_")):
            self.setUp()
            getattr(self, name)()
