"""Which Python packages the SynthLab backend needs in Slicer's Python, and which are missing (no Qt)."""

from __future__ import annotations

import importlib.metadata
import re

# Keep in step with [project.dependencies] in pyproject.toml (a test checks). torch is handled separately:
# Slicer's PyTorch extension installs the build that matches the machine's GPU.
TORCH = "torch>=2.2"
REQUIREMENTS = [
    "monai>=1.4",
    "numpy>=1.24",
    "scipy>=1.10",
    "SimpleITK>=2.3",
    "typer>=0.12",
    "rich>=13",
    "safetensors>=0.4",
    "slicerio>=1.1",
    "matplotlib>=3.7",
    "nilearn>=0.10",
    "requests>=2.28",
    "opensimplex>=0.4",
]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def is_satisfied(requirement: str) -> bool:
    """True when the named distribution is installed at or above the minimum version."""
    name, _, minimum = requirement.partition(">=")
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return not minimum or _version_tuple(installed) >= _version_tuple(minimum)


def missing_requirements(include_torch: bool = True) -> list[str]:
    """Requirements not satisfied in this Python, torch first."""
    wanted = ([TORCH] if include_torch else []) + REQUIREMENTS
    return [requirement for requirement in wanted if not is_satisfied(requirement)]
