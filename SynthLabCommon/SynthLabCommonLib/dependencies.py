"""Install the backend's requirements into Slicer's Python on first use, after asking."""

from __future__ import annotations

import slicer

from SynthLabCommonLib.requirements import REQUIREMENTS, TORCH, missing_requirements


def ensure_backend_dependencies() -> bool:
    """Return True when the backend can run; otherwise offer to install what is missing.

    torch comes from Slicer's PyTorch extension (PyTorchUtils) when it is installed,
    so that the build matches the machine's GPU; otherwise from pip.
    """
    missing = missing_requirements()
    if not missing:
        return True
    if not slicer.util.confirmOkCancelDisplay(
            "SynthLab needs these Python packages, which are not installed yet:\n\n  " + "\n  ".join(missing)
            + "\n\nInstall them now? This downloads several hundred MB and can take a few minutes.",
            windowTitle="SynthLab: install dependencies"):
        return False
    with slicer.util.tryWithErrorDisplay("Installing SynthLab's dependencies failed", waitCursor=True):
        if TORCH in missing:
            _install_torch()
        others = [r for r in missing if r in REQUIREMENTS]
        if others:
            slicer.util.pip_install(others)
    return not missing_requirements()


def _install_torch() -> None:
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.pip_install([TORCH])
        return
    logic = PyTorchUtils.PyTorchUtilsLogic()
    if not logic.torchInstalled():
        logic.installTorch(askConfirmation=False)
