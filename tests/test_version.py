"""One version source: CMakeLists.txt's ``project(ShapedTransformer VERSION x.y.z)``.

pyproject.toml reads it (scikit-build-core's regex provider, ``dynamic =
["version"]``), the extension has it compiled in (``_core.__version__``) and the
package re-exports that.  These tests fail when a second copy appears or when the
copies disagree.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

import shaped_transformer as st
from shaped_transformer._core_loader import core

ROOT = Path(__file__).resolve().parents[1]
_CMAKE_VERSION = re.compile(r"project\(ShapedTransformer\s+VERSION\s+([0-9][0-9.]*)")


def _source_version() -> str | None:
    """The version in the checkout's CMakeLists.txt (None outside a checkout)."""
    cmake = ROOT / "CMakeLists.txt"
    if not cmake.is_file():
        return None
    found = _CMAKE_VERSION.findall(cmake.read_text())
    assert len(found) == 1, f"CMakeLists.txt must name the version exactly once, found {found}"
    return found[0]


def _installed_version() -> str | None:
    """The metadata version of the distribution the package was imported from, or
    None when it was imported from the source tree (PYTHONPATH=python)."""
    try:
        dist = importlib.metadata.distribution("shaped-transformer")
    except importlib.metadata.PackageNotFoundError:
        return None
    init = Path(st.__file__).resolve()
    if not any(Path(str(dist.locate_file(f))).resolve() == init for f in dist.files or []):
        return None  # another copy is installed; this one is the checkout's
    return dist.version


def test_package_version_is_the_extensions() -> None:
    assert isinstance(core.__version__, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)*", core.__version__)
    assert st.__version__ == core.__version__


def test_version_matches_its_one_source() -> None:
    """The built extension's version is CMakeLists.txt's (in a checkout) and the
    installed distribution's metadata (when installed)."""
    source, installed = _source_version(), _installed_version()
    if source is None and installed is None:
        pytest.skip("neither a source checkout nor an installed distribution to compare with")
    if source is not None:
        assert core.__version__ == source, "the extension is stale: rebuild it"
    if installed is not None:
        assert core.__version__ == installed


def test_no_second_copy_of_the_version() -> None:
    """pyproject.toml takes the version from CMakeLists.txt instead of repeating it,
    and the Python sources do not spell it out."""
    source = _source_version()
    if source is None:
        pytest.skip("not a source checkout")
    pyproject = (ROOT / "pyproject.toml").read_text()
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.M), "pyproject.toml: the version must stay dynamic"
    assert re.search(r'^dynamic\s*=\s*\[[^]]*"version"', project, re.M)
    assert 'metadata.version.input = "CMakeLists.txt"' in pyproject
    for path in (ROOT / "python" / "shaped_transformer").rglob("*.py"):
        assert f'"{source}"' not in path.read_text(), f"{path} repeats the version string"
