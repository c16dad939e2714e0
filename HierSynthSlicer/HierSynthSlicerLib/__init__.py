"""MRML-level logic of HierSynthSlicer (no Qt: runs under slicer-core)."""
