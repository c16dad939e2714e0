"""SynthLabCommon: a hidden module that carries the plumbing the SynthLab modules share."""

from slicer.ScriptedLoadableModule import ScriptedLoadableModule


class SynthLabCommon(ScriptedLoadableModule):
    """Hidden: no panel of its own; it puts SynthLabCommonLib on Python's path."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SynthLab Common"
        self.parent.categories = ["SynthLab"]
        self.parent.contributors = ["SynthLab developers"]
        self.parent.helpText = "Shared dependency installation and job running for the SynthLab modules."
        self.parent.acknowledgementText = ""
        self.parent.hidden = True
