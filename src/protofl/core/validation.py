"""Type checks for settings, shared by :class:`~protofl.config.RunConfig` and every
algorithm's options, and the immutable mapping that keeps a frozen config frozen.

A value is checked against its field's annotation and converted only where nothing is lost
(an int where a float is expected, a list where a tuple is, ``"False"`` where a bool is:
what Python and TOML users type). Anything else is a :class:`ConfigError` naming the
setting, the expected type and what arrived.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from protofl.errors import ConfigError

_TRUE, _FALSE = ("true",), ("false",)  # any case: TOML true, Python True


class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable dict (nested tables of a frozen config)."""

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items = {key: freeze(value) for key, value in (items or {}).items()}

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __repr__(self) -> str:
        return repr(self._items)


def freeze(value: Any) -> Any:
    """Mappings become FrozenMaps and lists tuples, recursively."""
    if isinstance(value, Mapping) and not isinstance(value, FrozenMap):
        return FrozenMap(value)
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The plain (JSON-ready) form of a frozen value."""
    if isinstance(value, Mapping):
        return {key: thaw(v) for key, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(owner: type) -> dict[str, Any]:
    if owner not in _HINTS:
        _HINTS[owner] = typing.get_type_hints(owner)
    return _HINTS[owner]


def check_fields(instance: Any, prefix: str = "") -> None:
    """Check and convert every field of a frozen dataclass in place (from __post_init__)."""
    for name, hint in _hints(type(instance)).items():
        if name.startswith("_") or typing.get_origin(hint) is typing.ClassVar:
            continue
        value = coerce(f"{prefix}{name}", hint, getattr(instance, name))
        object.__setattr__(instance, name, value)


def coerce(name: str, hint: Any, value: Any) -> Any:
    """``value`` checked against ``hint`` and converted where lossless, or a ConfigError."""
    allowed = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        converted = _convert(value, kind)
        if converted is not _NO:
            return converted
    raise ConfigError(
        f"{name}: expected {' or '.join(_describe(k) for k in allowed)}; got {value!r} "
        f"({type(value).__name__})."
    )


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(kind))
    origin = typing.get_origin(kind)
    if origin in (dict, Mapping):
        return f"a table of {_describe(typing.get_args(kind)[1])}"
    return getattr(origin or kind, "__name__", str(kind))


_NO = object()


def _convert(value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin is Literal:
        return value if value in typing.get_args(kind) else _NO
    if kind is bool:
        return _to_bool(value)
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _NO
    if kind is str:
        return value if isinstance(value, str) else _NO
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(i, str) for i in items):
            return tuple(i.strip() for i in items if i.strip())
        return _NO
    if origin in (dict, Mapping) or kind is Mapping:
        args = typing.get_args(kind)
        value_kind = args[1] if args else Any
        if not isinstance(value, Mapping):
            return _NO
        converted = {str(k): _convert(v, value_kind) for k, v in value.items()}
        return _NO if any(v is _NO for v in converted.values()) else FrozenMap(converted)
    return _NO


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    return _NO
