"""Imports the compiled extension.

During development the extension can live in a CMake build folder instead of the
package: set SHAPED_TRANSFORMER_BUILD_DIR to the folder that holds _core*.so.
"""

from __future__ import annotations

import os

from . import __path__ as _pkg_path

_build_dir = os.environ.get("SHAPED_TRANSFORMER_BUILD_DIR")
if _build_dir and _build_dir not in _pkg_path:
    _pkg_path.insert(0, _build_dir)

from . import _core  # noqa: E402

core = _core
