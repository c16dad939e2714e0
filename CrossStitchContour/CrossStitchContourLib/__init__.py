"""MRML-level logic of CrossStitchContour (no Qt: runs under slicer-core)."""
