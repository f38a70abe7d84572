"""The extension's type stub (python/shaped_transformer/_core.pyi) is current.

It regenerates the stub from the importable extension with tools/gen_stubs.py
(pybind11-stubgen) and fails, showing the diff, when the committed one differs:
after changing a binding, run ``python3 tools/gen_stubs.py`` against the new build.
Skips when pybind11-stubgen is not installed, outside a source checkout, and when
the extension was built with another pybind11 minor version than the one the stub
records (pybind11 spells signatures differently across versions).
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from conftest import skip_unless_ci

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "gen_stubs.py"


def _gen_stubs():
    if not TOOL.is_file():
        pytest.skip("tools/gen_stubs.py is not here (not a source checkout)")
    if importlib.util.find_spec("pybind11_stubgen") is None:
        skip_unless_ci("pybind11-stubgen is not installed (pip install pybind11-stubgen)")
    sys.path.insert(0, str(TOOL.parent))
    try:
        import gen_stubs
    finally:
        sys.path.remove(str(TOOL.parent))
    return gen_stubs


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def test_committed_stub_is_current() -> None:
    gen = _gen_stubs()
    committed = gen.STUB.read_text()
    recorded = gen.recorded_versions(committed)
    assert recorded is not None, "the stub's header must name the pybind11 and pybind11-stubgen versions"
    pybind11, stubgen = gen.versions()
    if _minor(pybind11) != _minor(recorded[0]) or stubgen.split(".")[0] != recorded[1].split(".")[0]:
        pytest.skip(
            f"stub made with pybind11 {recorded[0]} / pybind11-stubgen {recorded[1]}; this build: "
            f"pybind11 {pybind11} / pybind11-stubgen {stubgen} (signatures are spelled differently)"
        )
    generated = gen.render()
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(True),
            generated.splitlines(True),
            "committed _core.pyi",
            "generated from the built module",
        )
    )
    assert not diff, f"_core.pyi is stale; run `python3 tools/gen_stubs.py` against a fresh build:\n{diff}"


def test_stub_names_every_function_the_package_calls() -> None:
    """Every public function and class of the CPU build is in the stub (and nothing else)."""
    gen = _gen_stubs()
    from shaped_transformer._core_loader import core

    text = gen.STUB.read_text()
    public = {n for n in dir(core) if not n.startswith("_") and callable(getattr(core, n))}
    public = {n for n in public if not (gen._BUILD_SPECIFIC.match(n) and n not in gen._CPU_NAMES)}
    in_stub = set(re.findall(r"^(?:def|class) ([A-Za-z_][A-Za-z0-9_]*)\b", text, flags=re.M))
    assert public == in_stub
