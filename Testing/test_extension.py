"""Consistency of the Slicer extension, which cannot run here: these fail when a module breaks."""

from __future__ import annotations

import ast
import py_compile
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["HierSynthSlicer", "CrossStitchContour", "SynthTumourSeg"]
ALL_MODULE_DIRS = MODULES + ["SynthLabCommon"]
SHARED_WIDGET = ROOT / "SynthLabCommon" / "SynthLabCommonLib" / "widget.py"


def module_python_files(module: str) -> list[Path]:
    return sorted(p for p in (ROOT / module).rglob("*.py") if "__pycache__" not in p.parts)


def cmake_list(module: str, variable: str) -> set[str]:
    text = (ROOT / module / "CMakeLists.txt").read_text()
    body = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return {item.replace("${MODULE_NAME}", module) for item in body.split()}


def ui_widget_names(module: str) -> set[str]:
    tree = ElementTree.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    return {widget.get("name") for widget in tree.iter("widget")}


def ui_parameter_names(module: str) -> set[str]:
    tree = ElementTree.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    return {prop.find("string").text for prop in tree.iter("property") if prop.get("name") == "SlicerParameterName"}


def parameter_node_fields(module: str) -> set[str]:
    tree = ast.parse((ROOT / module / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(getattr(d, "id", "") == "parameterNodeWrapper"
                                                  for d in node.decorator_list):
            return {item.target.id for item in node.body if isinstance(item, ast.AnnAssign)}
    raise AssertionError(f"{module}.py has no @parameterNodeWrapper class")


def ui_attributes_used(path: Path) -> set[str]:
    return set(re.findall(r"self\.ui\.(\w+)", path.read_text()))


@pytest.mark.parametrize("module", ALL_MODULE_DIRS)
def test_module_files_compile(module):
    for path in module_python_files(module):
        py_compile.compile(str(path), doraise=True)


def test_ruff_passes_on_the_whole_repository():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module", MODULES)
def test_every_ui_name_used_exists_in_the_ui_file(module):
    used = ui_attributes_used(ROOT / module / f"{module}.py") | ui_attributes_used(SHARED_WIDGET)
    missing = used - ui_widget_names(module)
    assert not missing, f"{module}.py uses self.ui.{missing} that {module}.ui lacks"


@pytest.mark.parametrize("module", MODULES)
def test_ui_parameter_names_match_the_parameter_node(module):
    assert ui_parameter_names(module) <= parameter_node_fields(module)
    assert ui_parameter_names(module), "no widget is bound to the parameter node"


@pytest.mark.parametrize("module", ALL_MODULE_DIRS)
def test_cmake_lists_every_script_and_resource_that_exists(module):
    scripts = {str(p.relative_to(ROOT / module)) for p in module_python_files(module)}
    assert cmake_list(module, "MODULE_PYTHON_SCRIPTS") == scripts
    resources = {str(p.relative_to(ROOT / module)) for p in (ROOT / module / "Resources").rglob("*")
                 if p.is_file()} if (ROOT / module / "Resources").exists() else set()
    assert cmake_list(module, "MODULE_PYTHON_RESOURCES") == resources


def test_top_level_cmake_adds_every_module():
    text = (ROOT / "CMakeLists.txt").read_text()
    assert set(re.findall(r"add_subdirectory\((\w+)\)", text)) == set(ALL_MODULE_DIRS)


def test_modules_follow_the_template():
    for module in MODULES:
        source = (ROOT / module / f"{module}.py").read_text()
        for part in (f"class {module}(ScriptedLoadableModule)", f"class {module}Widget(", f"class {module}Logic(",
                     f"class {module}Test(", "helpText", "acknowledgementText"):
            assert part in source, f"{module}.py lacks {part}"


def test_slicer_requirements_match_the_package():
    sys.path.insert(0, str(ROOT / "SynthLabCommon"))
    from SynthLabCommonLib.requirements import REQUIREMENTS, TORCH

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted([TORCH] + REQUIREMENTS) == sorted(declared)


def test_ci_runs_the_readme_test_command():
    command = re.search(r"TEST_COMMAND='(.*)'", (ROOT / ".ci" / "run").read_text()).group(1)
    assert f"\n{command}\n" in (ROOT / "README.md").read_text()
