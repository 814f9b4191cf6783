"""The worked examples in ``lexgpt``'s docstrings are true (a reader learns from them)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import lexgpt

# every module of every subpackage (lexgpt.data.vtt, ...), the packages themselves too
MODULES = sorted(m.name for m in pkgutil.walk_packages(lexgpt.__path__, prefix="lexgpt."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see stdout)"


def test_the_examples_exist():
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for name in MODULES
                   for t in finder.find(importlib.import_module(name)))  # fmt: skip
    assert examples >= 15
