"""Reads TOML files with tomllib (Python >= 3.11) or tomli."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

__all__ = ["load_toml", "layered_config"]


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


def layered_config(defaults: dict, sizes: Mapping[str, Mapping], size: str, config: Any, seed: Any,
                   merge: Callable[[dict, Mapping, str], None], seed_error: str) -> dict:
    """A study's configuration (the report's and the atlas's): a deep copy of
    ``defaults``, then the ``size`` preset, then ``config`` (a TOML path or a nested
    dict), then ``seed``, each layer applied by ``merge(cfg, layer, where)``."""
    import copy

    if size not in sizes:
        raise ValueError(f"size must be one of {list(sizes)}, got {size!r}")
    cfg = copy.deepcopy(defaults)
    merge(cfg, sizes[size], f"size {size!r}")
    if config is not None:
        merge(cfg, config, "config") if isinstance(config, Mapping) else merge(cfg, load_toml(config), str(config))
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"{seed_error}, got {seed!r}")
        cfg["study"]["seed"] = seed
    return cfg
