"""Name → factory registries with a decorator, as in timm's ``register_model``.

Example:
    >>> DATASETS = Registry("dataset")
    >>> @DATASETS.register("toy")
    ... def toy(**kw): ...
    >>> DATASETS.build("toy")
"""

from __future__ import annotations

import inspect
import typing
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

T = TypeVar("T", bound=Callable[..., Any])


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of factories (classes or functions)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``fn`` under ``name`` (warns when overwriting)."""

        def decorator(fn: T) -> T:
            if name in self._entries and self._entries[name] is not fn:
                warnings.warn(f"{self.kind} {name!r} registered twice; the later one wins", stacklevel=2)
            self._entries[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "(none registered)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the factory registered under ``name`` with ``kwargs``.

        An option the factory does not take is a ``ValueError`` naming the options it does take.
        """
        factory = self.get(name)
        params = inspect.signature(factory).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(kwargs) - set(params))
            if unknown:
                raise ValueError(f"{self.kind} {name!r} does not take {', '.join(map(repr, unknown))}; "
                                 f"its options: {', '.join(params)}")
        return factory(**kwargs)

    def options(self, name: str, exclude: Collection[str] = ()) -> dict[str, inspect.Parameter]:
        """The keyword options of the factory registered as ``name``: its parameters less ``exclude``."""
        params = inspect.signature(self.get(name)).parameters
        return {k: p for k, p in params.items() if k not in exclude
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}

    def check_options(self, name: str, options: Mapping[str, Any], exclude: Collection[str] = ()) -> dict[str, Any]:
        """``options`` checked against the signature of ``name``'s factory, with its defaults filled in.

        An option the factory does not take, or a value that does not fit the parameter's type
        hint, is a ``ValueError`` naming the option. Values come back JSON-normal (tuples as
        lists), so two equal option sets compare equal however they were written.
        """
        params = self.options(name, exclude)
        unknown = sorted(set(options) - set(params))
        if unknown:
            raise ValueError(f"{self.kind} {name!r} does not take {', '.join(map(repr, unknown))}; "
                             f"its options: {', '.join(params) or '(none)'}")
        hints = typing.get_type_hints(self.get(name))
        out: dict[str, Any] = {}
        for key, p in params.items():
            if key not in options and p.default is inspect.Parameter.empty:
                raise ValueError(f"{self.kind} {name!r} needs the option {key!r}")
            value = options.get(key, p.default)
            adapter = TypeAdapter(hints.get(key, Any))
            try:
                out[key] = adapter.dump_python(adapter.validate_python(value), mode="json")
            except ValidationError as e:
                problem = e.errors()[0]["msg"]
                raise ValueError(f"{self.kind} {name!r}: option {key}={value!r} does not fit "
                                 f"{hints.get(key, 'Any')}: {problem}") from None
        return out

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
