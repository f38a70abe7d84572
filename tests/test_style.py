"""The house style: ruff (lint and format, [tool.ruff] in pyproject.toml) on the
Python files and clang-format (.clang-format) on the C++ and CUDA files.

The formatters were applied to the whole tree in one commit (TREE_FORMATTED = True
below); from then on CI fails on any unformatted or unlinted file.  A branch that
began before that commit: merge main, then run the formatters (CONTRIBUTING.md).  The tools are pinned in the test
extras (ruff 0.17.6, clang-format 14.0.6), the versions .pre-commit-config.yaml uses.

About 2 s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import skip_unless_ci

ROOT = Path(__file__).resolve().parent.parent

#: Set to True by the commit that runs `ruff check --fix . && ruff format . &&
#: clang-format -i <the C++ files>` over the whole tree (CONTRIBUTING.md).
TREE_FORMATTED = True

CXX_SUFFIXES = (".cpp", ".hpp", ".h", ".cu", ".cuh")


def cxx_files() -> list[str]:
    """The C++ and CUDA sources that git tracks (build trees are not tracked)."""
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.split() if f.endswith(CXX_SUFFIXES)]


def _tool(name: str) -> str:
    exe = shutil.which(name) or (
        str(Path(sys.executable).parent / name) if (Path(sys.executable).parent / name).exists() else None
    )
    if exe is None:
        skip_unless_ci(f"{name} is not installed (pip install '.[test]')")
    return exe


def _formatted():
    if not TREE_FORMATTED:
        pytest.skip("the tree has not been formatted yet: the formatting commit sets TREE_FORMATTED = True")


def test_ruff_check():
    _formatted()
    r = subprocess.run([_tool("ruff"), "check", "--no-fix", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format():
    _formatted()
    r = subprocess.run([_tool("ruff"), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_clang_format():
    _formatted()
    files = cxx_files()
    assert files
    r = subprocess.run(
        [_tool("clang-format"), "--dry-run", "-Werror", *files], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-5000:]


def test_the_configurations_are_there_and_the_checks_can_fail(tmp_path):
    """Runs even before the formatting commit: the configurations exist, and each
    tool (where installed) rejects a file that breaks the style."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    ruff_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    assert ruff_cfg["line-length"] == 120
    assert "ColumnLimit: 120" in (ROOT / ".clang-format").read_text()
    bad_py = tmp_path / "bad.py"
    bad_py.write_text("import os\nx = {'a':1}\n")
    if shutil.which("ruff"):
        lint = subprocess.run(
            ["ruff", "check", "--no-fix", "--config", str(ROOT / "pyproject.toml"), str(bad_py)],
            capture_output=True,
            text=True,
        )
        assert lint.returncode != 0 and "F401" in lint.stdout
        fmt = subprocess.run(
            ["ruff", "format", "--check", "--config", str(ROOT / "pyproject.toml"), str(bad_py)],
            capture_output=True,
            text=True,
        )
        assert fmt.returncode != 0
    if shutil.which("clang-format"):
        bad_cpp = tmp_path / "bad.cpp"
        bad_cpp.write_text("int  f( int x ){return x;}\n")
        shutil.copy(ROOT / ".clang-format", tmp_path / ".clang-format")
        r = subprocess.run(["clang-format", "--dry-run", "-Werror", str(bad_cpp)], capture_output=True, text=True)
        assert r.returncode != 0
