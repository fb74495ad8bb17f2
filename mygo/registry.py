"""Named user functions (custom trash experts, custom quality losses), chosen in configs as `custom:<name>`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

CUSTOM_PREFIX = "custom:"
F = TypeVar("F", bound=Callable)


def check_choice(field: str, value: str, builtins: tuple[str, ...], registered: list[str] | None = None) -> None:
    """Accept a built-in name or `custom:<name>`; otherwise raise an error that lists the valid ones.

    With `registered=None` only the form of a custom name is checked.
    """
    if value in builtins:
        return
    name = value[len(CUSTOM_PREFIX) :] if value.startswith(CUSTOM_PREFIX) else ""
    if not name:
        raise ValueError(
            f"{field}={value!r} is not valid; choose one of {list(builtins)} or 'custom:<name>' "
            f"for a registered function"
        )
    if registered is not None and name not in registered:
        raise ValueError(
            f"{field}={value!r}: no custom function {name!r} is registered; registered: {sorted(registered) or 'none'}"
        )


class Registry(Generic[F]):
    """Functions registered by name for one config field."""

    def __init__(self, field: str, builtins: tuple[str, ...]):
        self.field = field
        self.builtins = builtins
        self._functions: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            self._functions[name] = fn
            return fn

        return decorator

    def names(self) -> list[str]:
        return sorted(self._functions)

    def check(self, value: str) -> None:
        check_choice(self.field, value, self.builtins, self.names())

    def custom(self, value: str) -> F:
        """The registered function behind `custom:<name>` (checked)."""
        self.check(value)
        return self._functions[value[len(CUSTOM_PREFIX) :]]
