"""Plain data classes for the start-up paths of ``save`` and ``inspect``.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``) and ``exec``s
generated source for every class: 10-25 ms of every command's start here, more than the work
of saving a small machine. The classes on those paths instead declare ``__slots__`` and a
hand-written ``__init__``, and inherit ``__repr__``, ``__eq__`` and ``replace`` from here.
"""

from __future__ import annotations


class Slots:
    """Fields are ``__slots__`` (in order, a base class's first); equality and ``repr`` go
    over them."""

    __slots__: tuple[str, ...] = ()
    # Every field, the bases' first: a subclass's ``__slots__`` names only its own.
    _fields: tuple[str, ...] = ()
    _repr_skip: tuple[str, ...] = ()  # fields too large to show (raw bytes, payloads)
    _eq_skip: tuple[str, ...] = ()  # fields equality ignores (back references)

    def __init_subclass__(cls, **kw: object) -> None:
        super().__init_subclass__(**kw)
        if "_fields" in cls.__dict__:  # named by the class (a field read through a property)
            return
        own = cls.__dict__.get("__slots__", ())
        cls._fields = tuple(dict.fromkeys((*cls._fields, *((own,) if isinstance(own, str)
                                                             else own))))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields
                          if n not in self._repr_skip)
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._fields
                   if n not in self._eq_skip)

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable, like @dataclass

    def as_dict(self) -> dict[str, object]:
        """The fields and their values, in order (``dataclasses.asdict`` without recursion)."""
        return {n: getattr(self, n) for n in self._fields}

    def replace(self, **changes: object) -> Slots:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        unknown = set(changes) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {', '.join(sorted(unknown))}")
        new = object.__new__(type(self))
        for n in self._fields:
            object.__setattr__(new, n, changes[n] if n in changes else getattr(self, n))
        return new


class Frozen(Slots):
    """An immutable, hashable ``Slots``; ``__init__`` sets fields with ``object.__setattr__``."""

    __slots__: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (use .replace())")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __hash__(self) -> int:  # type: ignore[override]
        return hash((type(self).__name__,
                     *(getattr(self, n) for n in self._fields if n not in self._eq_skip)))

