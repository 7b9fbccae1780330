"""A tiny generic name -> object registry whose lookups fail with a "did you mean"."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from protofl.errors import ConfigError

T = TypeVar("T")


def unknown_name_message(
    kind: str, name: str, known: list[str], aliases: Mapping[str, str] | None = None
) -> str:
    """Say that ``name`` is not a known ``kind``, suggest the closest names and list all.

    ``aliases`` map other spellings users reach for (``learning_rate``) to a known name
    (``lr``), so a typo of the long form still finds the short one.
    """
    spellings = {k.lower(): k for k in known}
    spellings.update({a: t for a, t in (aliases or {}).items() if t in known})
    close = difflib.get_close_matches(name.lower(), list(spellings), n=6, cutoff=0.5)
    suggested = list(dict.fromkeys(spellings[c] for c in close))[:3]
    hint = f" Did you mean {' or '.join(repr(c) for c in suggested)}?" if suggested else ""
    return f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(known))}."


class Registry(Generic[T]):
    """Maps names to entries; registering twice or looking up an unknown name is an error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is registered twice.")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(entry: T) -> T:
            return self.add(name, entry)

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
