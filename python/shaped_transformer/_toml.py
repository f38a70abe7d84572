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
            import tomli as tomllib
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
                   merge: Callable[[dict, Mapping, str], None], seed_name: str) -> dict:
    """A study's configuration (the report's and the atlas's): a deep copy of
    ``defaults``, then the ``size`` preset, then ``config`` (a TOML path or a nested
    dict), then ``seed`` (checked by :func:`check_seed` under ``seed_name``: the
    range of every other seed, [0, 2^64)), each layer applied by
    ``merge(cfg, layer, where)``."""
    import copy

    if size not in sizes:
        raise ValueError(f"size must be one of {list(sizes)}, got {size!r}")
    cfg = copy.deepcopy(defaults)
    merge(cfg, sizes[size], f"size {size!r}")
    if config is not None:
        merge(cfg, config, "config") if isinstance(config, Mapping) else merge(cfg, load_toml(config), str(config))
    if seed is not None:
        from ._validate import check_seed

        cfg["study"]["seed"] = check_seed(seed, seed_name)
    return cfg
