"""The benchmark scripts' shared ``NAME=weights`` parser, loaded from Testing/benchmarks as the scripts load it."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("named_weights",
                                               Path(__file__).parent / "benchmarks" / "named_weights.py")
named_weights_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(named_weights_module)
named_weights = named_weights_module.named_weights


def _refusal(items: list[str], capsys, **options) -> str:
    with pytest.raises(SystemExit) as exited:
        named_weights(argparse.ArgumentParser(prog="script"), items, **options)
    assert exited.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_named_weights_keep_the_order_given_and_name_a_bare_path_after_its_file_only_when_asked(capsys):
    parser = argparse.ArgumentParser()
    named = named_weights(parser, ["b=R/one.safetensors", "a=R/two.safetensors"])
    assert list(named.items()) == [("b", Path("R/one.safetensors")), ("a", Path("R/two.safetensors"))]
    assert named_weights(parser, ["R/senior.safetensors"], bare_name_from_file=True) == {
        "senior": Path("R/senior.safetensors")}
    assert "NAME=weights.safetensors" in _refusal(["R/senior.safetensors"], capsys)


def test_named_weights_refuse_a_name_given_twice_or_an_item_without_a_name_or_path(capsys):
    twice = _refusal(["a=R/one.safetensors", "b=R/two.safetensors", "a=R/three.safetensors"], capsys)
    assert "given twice: a" in twice  # a dict would silently keep only the last
    assert "given twice: one" in _refusal(["A/one.safetensors", "B/one.safetensors"], capsys,
                                          bare_name_from_file=True)
    assert "'=R/one.safetensors'" in _refusal(["=R/one.safetensors"], capsys)
    assert "'a='" in _refusal(["a="], capsys)


def test_the_named_weights_option_takes_several_items_at_once_and_repeated():
    parser = argparse.ArgumentParser()
    named_weights_module.add_named_weights_option(parser, "--model", "models")
    given = parser.parse_args(["--model", "a=R/one.safetensors", "b=R/two.safetensors", "--model", "c=R/3.safetensors"])
    assert list(named_weights(parser, given.model)) == ["a", "b", "c"]  # every item kept, in order
    with pytest.raises(SystemExit):
        parser.parse_args([])  # required
