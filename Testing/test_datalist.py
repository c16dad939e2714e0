"""MONAI datalists: splitting, writing and reading with relative paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synthlab import datalist
from synthlab.errors import InputError


def _entries(count: int, tumour_every: int = 2) -> list[dict]:
    return [{"case": f"case_{i}", "t1": f"case_{i}/t1.nii.gz", "tumour": i % tumour_every == 0} for i in range(count)]


def test_split_is_about_70_15_15_and_loses_no_entry():
    splits = datalist.split(_entries(20), np.random.default_rng(0))
    assert [len(splits[name]) for name in datalist.SPLITS] == [14, 3, 3]
    cases = [entry["case"] for name in datalist.SPLITS for entry in splits[name]]
    assert sorted(cases) == sorted(entry["case"] for entry in _entries(20))


def test_split_gives_every_split_an_entry_from_three_and_mixes_groups():
    assert [len(v) for v in datalist.split(_entries(3), np.random.default_rng(1)).values()] == [1, 1, 1]
    assert [len(v) for v in datalist.split(_entries(2), np.random.default_rng(1)).values()] == [2, 0, 0]
    splits = datalist.split(_entries(12, tumour_every=3), np.random.default_rng(2), group_key="tumour")
    for name in ("validation", "test"):
        assert {entry["tumour"] for entry in splits[name]} == {True, False}


def test_split_depends_only_on_the_seed():
    first = datalist.split(_entries(10), np.random.default_rng(5))
    assert first == datalist.split(_entries(10), np.random.default_rng(5))
    assert first != datalist.split(_entries(10), np.random.default_rng(6))


def test_written_datalist_reads_back_with_absolute_paths(tmp_path):
    splits = datalist.split(_entries(4), np.random.default_rng(0))
    path = datalist.write_datalist(splits, tmp_path / "sub" / "datalist.json")
    raw = json.loads(path.read_text())
    assert raw["training"][0]["t1"].startswith("case_")  # stored relative
    back = datalist.read_datalist(path)
    entry = back["training"][0]
    assert entry["t1"] == str((tmp_path / "sub" / raw["training"][0]["t1"]).resolve())
    assert entry["case"] == raw["training"][0]["case"] and entry["tumour"] == raw["training"][0]["tumour"]


@pytest.mark.parametrize("content, problem", [("{not json", "not valid JSON"),
                                               ('{"train": []}', "unknown sections")])
def test_bad_datalists_are_refused_in_one_line(tmp_path, content, problem):
    path = tmp_path / "datalist.json"
    path.write_text(content)
    with pytest.raises(InputError, match=problem):
        datalist.read_datalist(path)
    with pytest.raises(InputError, match="not found"):
        datalist.read_datalist(tmp_path / "missing.json")


def test_pooled_adds_every_extra_case_to_training_only(tmp_path):
    base = datalist.read_datalist(datalist.write_datalist(
        datalist.split(_entries(10), np.random.default_rng(0)), tmp_path / "base" / "datalist.json"))
    extra = datalist.read_datalist(datalist.write_datalist(
        datalist.split(_entries(6), np.random.default_rng(1)), tmp_path / "extra" / "datalist.json"))
    pooled = datalist.pooled(base, [extra])
    assert pooled["validation"] == base["validation"] and pooled["test"] == base["test"]
    assert len(pooled["training"]) == len(base["training"]) + 6
    assert {e["t1"] for e in extra["validation"] + extra["test"]} <= {e["t1"] for e in pooled["training"]}
    reread = datalist.read_datalist(datalist.write_datalist(pooled, tmp_path / "elsewhere" / "pooled.json"))
    assert reread == pooled  # absolute paths survive a move


def test_pooled_refuses_a_held_out_case_as_training(tmp_path):
    base = datalist.read_datalist(datalist.write_datalist(
        datalist.split(_entries(10), np.random.default_rng(0)), tmp_path / "datalist.json"))
    with pytest.raises(InputError, match="validation or test"):
        datalist.pooled(base, [base])
    script = Path(__file__).parent / "benchmarks" / "pool_datalists.py"
    out = tmp_path / "pooled.json"
    result = subprocess.run([sys.executable, str(script), "--base", str(tmp_path / "datalist.json"), "--extra",
                             str(tmp_path / "datalist.json"), "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--extra: cases" in result.stderr.strip().splitlines()[-1]
    assert not out.exists()
