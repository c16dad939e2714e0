"""MRML-level logic of SynthTumourSeg (no Qt: runs under slicer-core)."""
