"""SynthLab backend: deep-learning image synthesis for the SynthLab 3D Slicer extension.

This package never imports slicer, qt or ctk (except lazily in :mod:`synthlab.mrml`),
so it runs from the command line, as a server, or as a subprocess of Slicer.
"""

__version__ = "0.1.0"
