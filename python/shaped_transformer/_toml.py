"""Reads TOML files with tomllib (Python >= 3.11) or tomli."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["dumps", "load_toml", "layered_config", "merge_typed"]


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed TOML file; ValueError naming the file when it is missing or invalid."""
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ImportError(
                "reading TOML on Python 3.10 needs tomli: pip install 'shaped-transformer[report]'"
            ) from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"config file {os.fspath(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {os.fspath(path)!r} is not valid TOML: {exc}") from None


def layered_config(
    defaults: dict,
    sizes: Mapping[str, Mapping],
    size: str,
    config: Any,
    seed: Any,
    merge: Callable[[dict, Mapping, str], None],
    seed_name: str,
) -> dict:
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


def merge_typed(
    base: dict,
    over: Mapping,
    where: str,
    *,
    types: Mapping[str, Mapping[str, type]],
    list_items: Mapping[tuple[str, str], type] | None = None,
) -> None:
    """Merges the tables of ``over`` into ``base`` in place, checking every table and
    key against ``types`` (table -> key -> type) and the items of the lists named in
    ``list_items`` ((table, key) -> int or float); errors name ``where`` and the key."""
    for table, entries in over.items():
        if table not in types:
            raise ValueError(f"{where}: unknown table [{table}]; known tables: {sorted(types)}")
        if not isinstance(entries, Mapping):
            raise ValueError(f"{where}: [{table}] must be a table")
        for k, v in entries.items():
            if k not in types[table]:
                raise ValueError(f"{where}: unknown key {table}.{k}; known keys: {sorted(types[table])}")
            want = types[table][k]
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if want is list:
                if not isinstance(v, list) or not v:
                    raise ValueError(f"{where}: {table}.{k} must be a non-empty list, got {v!r}")
                item = (list_items or {}).get((table, k))
                for x in v if item is not None else ():
                    ok = not isinstance(x, bool) and (
                        isinstance(x, int) if item is int else isinstance(x, (int, float))
                    )
                    if not ok:
                        raise ValueError(
                            f"{where}: {table}.{k} must be a list of {'integers' if item is int else 'numbers'}, "
                            f"got {x!r} in {v!r}"
                        )
                if item is float:
                    v = [float(x) for x in v]
            elif (isinstance(v, bool) and want is not bool) or not isinstance(v, want):
                raise ValueError(f"{where}: {table}.{k} must be of type {want.__name__}, got {v!r}")
            base[table][k] = copy.deepcopy(v)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string for these values
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML: {v!r}")


def dumps(cfg: Mapping[str, Mapping[str, Any]], header: str = "") -> str:
    """A study's configuration (tables of numbers, strings, booleans and lists) as
    TOML text that :func:`load_toml` reads back to the same dictionary.  Written
    by hand: the standard library reads TOML but does not write it, and these
    flat tables need no more than this."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []
    for table, entries in cfg.items():
        lines += ["", f"[{table}]"] if lines else [f"[{table}]"]
        lines += [f"{k} = {_value(v)}" for k, v in entries.items()]
    return "\n".join(lines) + "\n"
