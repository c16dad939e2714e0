"""Plumbing shared by the SynthLab modules: dependency installation and running backend jobs from the GUI."""
