"""Reads TOML files with tomllib (Python >= 3.11) or tomli."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["load_toml"]


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed TOML file; ValueError naming the file when it is missing or invalid."""
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ImportError("reading TOML on Python 3.10 needs tomli: pip install 'shaped-transformer[report]'") from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"config file {os.fspath(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {os.fspath(path)!r} is not valid TOML: {exc}") from None
