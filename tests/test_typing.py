"""Type checking: mypy over the package (with the extension's stub, _core.pyi) and
over tests/typing/public_calls.py, the public calls the tests make.  The settings
are pyproject.toml's [tool.mypy]; `.ci/run` installs mypy so that this runs in CI.
Skips when mypy is not installed or outside a source checkout.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import skip_unless_ci

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (ROOT / "tests" / "typing" / "public_calls.py").is_file(), reason="not a source checkout"
)


def _mypy(*args: str | Path) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("mypy") is None:
        skip_unless_ci("mypy is not installed (pip install mypy)")
    return subprocess.run(
        [sys.executable, "-m", "mypy", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )


def test_package_and_public_calls_type_check() -> None:
    proc = _mypy()
    assert proc.returncode == 0, proc.stdout
    assert "Success" in proc.stdout


def test_type_checker_reads_the_extension_stub(tmp_path: Path) -> None:
    """A call that disagrees with _core.pyi is an error (so the stub is what mypy reads)."""
    bad = tmp_path / "bad_call.py"
    bad.write_text(
        textwrap.dedent("""
        from shaped_transformer._core_loader import core

        tile: str = core.exact_mlp_workspace_bytes(8)
        """)
    )
    proc = _mypy(bad)
    assert proc.returncode == 1, proc.stdout
    assert 'Incompatible types in assignment (expression has type "int", variable has type "str")' in proc.stdout
