"""Config files as plain dicts: reading shipped or user TOML files and applying ``--set`` overrides.

The typed side (checking keys and types, building :class:`~mcjepa.train.config.TrainConfig`) is
:func:`mcjepa.train.config.load_config`, which calls these first.
"""

from __future__ import annotations

import ast
import copy
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from mcjepa.utils.schema import ConfigError

__all__ = ["apply_overrides", "available_configs", "parse_value", "read_toml"]


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: TOML scalar/array/inline table, Python literal, else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` strings to a config dict, in order, and return the new dict (``data`` is
    not changed). Keys are dotted (``loss.alpha=0.5``, values parsed by :func:`parse_value`); a
    list item is addressed as ``key[i]`` (``data.motion[0].root=/data/Sintel``)."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, text = (part.strip() for part in item.split("=", 1))
        steps = _key_path(key)
        node: Any = out
        for i, (step, following) in enumerate(zip(steps, steps[1:])):
            node = _descend(node, step, following, key, steps[: i + 1])
        _assign(node, steps[-1], parse_value(text), key)
    return out


_KEY_PART = re.compile(r"([A-Za-z_][\w-]*)((?:\[\d+\])*)")


def _key_path(key: str) -> list[str | int]:
    """``data.motion[0].root`` -> ``["data", "motion", 0, "root"]``."""
    steps: list[str | int] = []
    for part in key.split("."):
        match = _KEY_PART.fullmatch(part)
        if match is None:
            raise ConfigError(f"--set {key}: {part!r} is not a key (expected name or name[index])")
        steps.append(match.group(1))
        steps += [int(i) for i in re.findall(r"\[(\d+)\]", match.group(2))]
    return steps


def _where(steps: list[str | int]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")


def _descend(node: Any, step: str | int, following: str | int, key: str, done: list[str | int]) -> Any:
    """One step down the path: a table is created when missing; a list item must exist."""
    if isinstance(step, int):
        if not isinstance(node, list):
            raise ConfigError(f"--set {key}: {_where(done[:-1])} is not a list")
        if step >= len(node):
            raise ConfigError(f"--set {key}: {_where(done[:-1])} has no item {step} (it has {len(node)})")
        return node[step]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {key}: {_where(done[:-1])} is not a section")
    child = node.setdefault(step, [] if isinstance(following, int) else {})
    if not isinstance(child, (dict, list)):
        raise ConfigError(f"--set {key}: {_where(done)} is not a section")
    return child


def _assign(node: Any, step: str | int, value: Any, key: str) -> None:
    if isinstance(step, int):
        if not isinstance(node, list) or step >= len(node):
            raise ConfigError(f"--set {key}: no item {step} to set")
        node[step] = value
    elif not isinstance(node, dict):
        raise ConfigError(f"--set {key}: the key before {step!r} is not a section")
    else:
        node[step] = value


def available_configs() -> list[str]:
    """Names of the configs shipped in ``mcjepa/train/configs``."""
    return sorted(p.name[:-5] for p in resources.files("mcjepa.train.configs").iterdir() if p.name.endswith(".toml"))


def read_toml(path_or_name: str | Path, _chain: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """Read a shipped config by name or a TOML file path; return its dict (not validated) and
    its name (the file stem). A file with ``base = "NAME"`` (a shipped config or a path, relative
    to the file) holds only its differences: its tables are merged key by key into the base's
    (lists and values replace the base's), and the base's ``name`` is dropped."""
    data, stem = _read_one(path_or_name)
    base = data.pop("base", None)
    if base is None:
        return data, stem
    if not isinstance(base, str):
        raise ConfigError(f"--config {path_or_name}: base must be a config name or path, got {base!r}")
    if base in _chain or len(_chain) > 8:
        raise ConfigError(f"--config {path_or_name}: base configs form a loop ({' -> '.join((*_chain, base))})")
    folder = Path(path_or_name).parent if Path(path_or_name).suffix == ".toml" else None
    target = folder / base if folder is not None and (folder / base).suffix == ".toml" else base
    parent, _ = read_toml(target, (*_chain, str(path_or_name)))
    parent.pop("name", None)
    return _merge(parent, data), stem


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` applied: tables merged recursively, anything else replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_one(path_or_name: str | Path) -> tuple[dict[str, Any], str]:
    """One config file's dict and stem (no ``base`` resolution)."""
    path = Path(path_or_name)
    if path.suffix == ".toml" or path.exists():
        if path.is_dir():
            raise ConfigError(f"--config {path}: is a folder, not a TOML file")
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return _parse_toml(path.read_bytes(), str(path)), path.stem
    name = str(path_or_name)
    res = resources.files("mcjepa.train.configs") / f"{name}.toml"
    if not res.is_file():
        raise ConfigError(f"unknown config {name!r}: not a file, and not one of {available_configs()}")
    return _parse_toml(res.read_bytes(), name), name


def _parse_toml(data: bytes, source: str) -> dict[str, Any]:
    """Parse a config file's bytes; a file that is not UTF-8 TOML is a :class:`ConfigError`
    naming the file and the problem (with its line and column when TOML gives them)."""
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"--config {source}: not a TOML file (not UTF-8 text: {exc.reason} at byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {source}: not a valid TOML file: {exc}") from None
