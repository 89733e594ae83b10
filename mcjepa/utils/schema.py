"""The one config coercer: plain dicts (TOML, JSON) to typed dataclasses and back.

Both config families use it: the architecture (:class:`mcjepa.architecture.ModelConfig`, read back
from releases and checkpoints) and training (:class:`mcjepa.train.config.TrainConfig`, read from
TOML files with ``--set`` overrides). :func:`from_dict` checks every key and value against the
dataclass's type hints and names the dotted key of the first problem in a :class:`ConfigError`;
:func:`to_dict` is its inverse.

Supported field types: ``bool``, ``int``, ``float`` (an integer is accepted), ``str``,
``list[T]``, ``tuple[T, ...]`` and fixed ``tuple[A, B]`` (read from lists), ``dict[str, Any]``
(kept as given: free-form dataset specs), unions, nested dataclasses, :class:`Partial` and
*config values*: classes with a ``from_config(value, key)`` classmethod (raising ``ValueError``
naming ``key``) and a ``to_config()`` method (e.g. :class:`mcjepa.train.levels.LevelWeights`), which
convert their own file spelling.

A field whose file key differs from its attribute name says so in its metadata,
``field(metadata={"key": "file_key"})``; :func:`from_dict` reads and :func:`to_dict` writes that key.

Foundation module: imports nothing from ``mcjepa``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["ConfigError", "Partial", "coerce", "config_key", "from_dict", "to_dict"]

T = TypeVar("T")
S = TypeVar("S")


class ConfigError(ValueError):
    """A configuration is invalid; the message names the key or path."""


def config_key(f: dataclasses.Field) -> str:
    """The key under which field ``f`` is written in config files (its name unless its metadata
    gives ``"key"``)."""
    return f.metadata.get("key", f.name)


def _dotted(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class Partial(Generic[S]):
    """Some fields of the frozen dataclass ``S`` (an architecture section), each type-checked
    against ``S``'s field when built; :meth:`apply` replaces them in a full ``S``.

    ``Partial(EncoderConfig, {"drop_path_rate": 0.2}, "model.encoder")`` is the typed form of a
    TOML table ``[model.encoder] drop_path_rate = 0.2``; an unknown field or a wrong type is a
    :class:`ConfigError` naming ``model.encoder.<field>``.
    """

    __slots__ = ("_section", "_values")

    def __init__(self, section: type[S], values: Mapping[str, Any] | None = None, key: str = "") -> None:
        if not (isinstance(section, type) and dataclasses.is_dataclass(section)):
            raise TypeError(f"Partial needs a dataclass type, got {section!r}")
        values = {} if values is None else values
        if not isinstance(values, Mapping):
            raise ConfigError(f"{key or section.__name__}: expected a table, got {type(values).__name__} {values!r}")
        hints = typing.get_type_hints(section)
        names = {f.name for f in dataclasses.fields(section) if f.init}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {[_dotted(key, k) for k in unknown]}; valid keys here: {sorted(names)}"
            )
        self._section = section
        self._values = {k: coerce(v, hints[k], _dotted(key, k)) for k, v in values.items()}

    @property
    def section(self) -> type[S]:
        """The dataclass these fields belong to."""
        return self._section

    def apply(self, base: S) -> S:
        """``base`` with these fields replaced (``base``'s own checks run on the result)."""
        if not isinstance(base, self._section):
            raise TypeError(f"expected a {self._section.__name__}, got {type(base).__name__}")
        return dataclasses.replace(base, **self._values)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """The given fields as plain JSON-ready values."""
        return {k: _plain(v) for k, v in self._values.items()}

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partial):
            return NotImplemented
        return self._section is other._section and self._values == other._values

    def __hash__(self) -> int:
        return hash((self._section, tuple(sorted(self._values.items(), key=lambda kv: kv[0]))))

    def __repr__(self) -> str:
        return f"Partial({self._section.__name__}, {self._values!r})"


def _expect(ok: bool, key: str, what: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {what}, got {type(value).__name__} {value!r}")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the type hint ``tp`` and convert it (lists to tuples, integers to
    floats, tables to dataclasses); raise :class:`ConfigError` naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {tp}, got {value!r}")
    if tp is type(None):
        _expect(value is None, key, "nothing (None)", value)
        return None
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        _expect(isinstance(value, (list, tuple)), key, "a list", value)
        return [coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        _expect(isinstance(value, (list, tuple)), key, "a list", value)
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}: {list(value)}")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        _expect(isinstance(value, Mapping), key, "a table/dict", value)
        return dict(value)
    if origin is Partial:
        (section,) = typing.get_args(tp)
        return value if isinstance(value, Partial) else Partial(section, value, key)
    if tp is bool:
        _expect(isinstance(value, bool), key, "true/false", value)
        return value
    if tp is int:
        _expect(isinstance(value, int) and not isinstance(value, bool), key, "an integer", value)
        return value
    if tp is float:
        _expect(isinstance(value, (int, float)) and not isinstance(value, bool), key, "a number", value)
        return float(value)
    if tp is str:
        _expect(isinstance(value, str), key, "a string", value)
        return value
    if isinstance(tp, type) and hasattr(tp, "from_config"):
        if isinstance(value, tp):
            return value
        try:
            return tp.from_config(value, key)
        except ConfigError:
            raise
        except ValueError as exc:  # config values raise ValueError naming the key themselves
            raise ConfigError(str(exc)) from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, key)
    raise ConfigError(f"{key}: unsupported type {getattr(tp, '__name__', tp)}")


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build the dataclass ``cls`` from a plain dict: every key must be a field's config key
    (:func:`config_key`), every value must fit the field's type; missing keys keep their
    defaults. ``ValueError`` raised by ``cls`` itself (its own range checks) passes through.

    Raises:
        ConfigError: an unknown key or a wrong type, naming the dotted key (under ``prefix``).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    by_key = {config_key(f): f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(by_key))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {[_dotted(prefix, k) for k in unknown]}; valid keys here: {sorted(by_key)}"
        )
    kwargs = {by_key[k].name: coerce(v, hints[by_key[k].name], _dotted(prefix, k)) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """The inverse of :func:`from_dict`: a dataclass as a JSON-ready dict under its config keys
    (tuples as lists, :class:`Partial` as its given fields, config values as ``to_config()``)."""
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        raise TypeError(f"to_dict expects a dataclass instance, got {type(obj).__name__}")
    return {config_key(f): _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(value: Any) -> Any:
    if hasattr(value, "to_config"):
        return value.to_config()
    if isinstance(value, Partial):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
