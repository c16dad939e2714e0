"""SynthTumour (METHODS.md §2): tumour segmentation with no expert labels, by two-stage synthesis."""
