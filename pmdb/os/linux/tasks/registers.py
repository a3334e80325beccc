"""A sleeping task's saved registers, read from its stack only when something asks for them.

Listing 10,000 tasks as threads should not read 10,000 kernel stacks: ``::ps`` never
looks at registers, and ``$r``/``$c`` of one task look at one set. ``SavedRegisters`` is a
dict whose contents are loaded on first use; every way of reading it loads it first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


class SavedRegisters(dict[str, int]):
    """A register dict filled by ``load()`` the first time it is read."""

    __slots__ = ("_load",)

    def __init__(self, load: Callable[[], dict[str, int]]) -> None:
        super().__init__()
        self._load: Callable[[], dict[str, int]] | None = load

    def _fill(self) -> None:
        if self._load is not None:
            load, self._load = self._load, None
            super().update(load())

    def __getitem__(self, key: str) -> int:
        self._fill()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._fill()
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self._fill()
        return super().__iter__()

    def __len__(self) -> int:
        self._fill()
        return super().__len__()

    def __eq__(self, other: object) -> bool:
        self._fill()
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # a dict is not hashable

    def __repr__(self) -> str:
        self._fill()
        return super().__repr__()

    def get(self, key: str, default: Any = None) -> Any:
        self._fill()
        return super().get(key, default)

    def keys(self) -> Any:
        self._fill()
        return super().keys()

    def values(self) -> Any:
        self._fill()
        return super().values()

    def items(self) -> Any:
        self._fill()
        return super().items()

    def copy(self) -> dict[str, int]:
        self._fill()
        return dict(super().items())

    def __setitem__(self, key: str, value: int) -> None:
        self._fill()
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: int) -> None:
        self._fill()
        super().update(*args, **kwargs)

    def pop(self, key: str, *default: Any) -> Any:
        self._fill()
        return super().pop(key, *default)

    def setdefault(self, key: str, default: int = 0) -> int:
        self._fill()
        return super().setdefault(key, default)

    def __or__(self, other: Any) -> dict[str, int]:  # type: ignore[override]
        self._fill()
        return dict(super().items()) | dict(other)

    def __reduce__(self) -> tuple[Any, ...]:
        self._fill()
        return (dict, (dict(super().items()),))
