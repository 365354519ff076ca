"""Strict stand-ins checked against the REAL bindings' own description of themselves.

A stand-in class names the real pybind11 class it replaces (``REAL``). Every public attribute
read or written on it is checked against that class:
- a name the real class lacks raises AttributeError, as the real object would;
- methods are bound against the overloads parsed from the real pybind11 docstring (argument
  count, keyword names, types: strict enums, ``str`` but not ``Path``, buffers, Dims or
  sequences) and raise TypeError like pybind11 when none fits; what the stand-in returns is
  checked against the declared return type too, so the stand-in cannot drift from the API;
- properties stay properties: read-only ones refuse assignment, writable ones check the type.
Behaviour (what a call does) is the stand-in's; only the surface is proven real.
"""

from __future__ import annotations

import inspect
import re

import numpy as np

_PREFIXES = ("tensorrt_bindings.tensorrt.", "tensorrt.tensorrt.", "tensorrt.")


class Signature:
    """One pybind11 overload: ``name(self: C, a: int, b: X = ...) -> R``."""

    def __init__(self, line: str):
        head, _, self.returns = line.rpartition(") -> ")
        params = head[head.index("(") + 1 :]
        self.params = []  # (name, type, has_default)
        for part in _split_top_level(params):
            name, _, rest = part.partition(": ")
            annotation, eq, _ = rest.partition(" = ")
            self.params.append((name.strip(), annotation.strip(), bool(eq)))
        self.params = self.params[1:]  # self / arg0
        self.text = line.strip()

    def bind(self, module, args: tuple, kwargs: dict) -> list | None:
        """The arguments in declared order, or None when this overload does not accept them."""
        if len(args) > len(self.params):
            return None
        values, names = list(args), [p[0] for p in self.params]
        if any(k not in names[len(args) :] for k in kwargs):
            return None
        for name, _, has_default in self.params[len(args) :]:
            if name in kwargs:
                values.append(kwargs[name])
            elif has_default:
                values.append(_DEFAULT)
            else:
                return None
        for value, (_, annotation, _) in zip(values, self.params):
            if value is not _DEFAULT and not accepts(module, annotation, value):
                return None
        return values


_DEFAULT = object()


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(<":
            depth += 1
        elif ch in "])>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def signatures(doc: str | None, name: str) -> list[Signature]:
    """Every overload in a pybind11 docstring (one line each; numbered when overloaded)."""
    found = []
    for line in (doc or "").splitlines():
        line = re.sub(r"^\d+\.\s+", "", line.strip())
        if line.startswith(f"{name}(") and ") -> " in line and not line.startswith(f"{name}(*args, **kwargs)"):
            found.append(Signature(line))
    return found


def _short(annotation: str) -> str:
    for prefix in _PREFIXES:
        if annotation.startswith(prefix):
            return annotation[len(prefix) :]
    return annotation


def _inner(annotation: str) -> str:
    return annotation[annotation.index("[") + 1 : -1]


def accepts(module, annotation: str, value) -> bool:
    """Whether pybind11 would convert ``value`` to a parameter declared ``annotation``."""
    t = _short(annotation)
    if t in ("int", "typing.SupportsInt"):  # pybind's int caster: no floats, no str; __index__ is fine
        return not isinstance(value, (float, str, bytes)) and hasattr(value, "__index__")
    if t in ("float", "typing.SupportsFloat"):
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if t == "bool":
        return value is None or isinstance(value, (bool, int, np.bool_))
    if t == "str":  # std::string takes str or bytes, never a Path
        return isinstance(value, (str, bytes))
    if t in ("buffer", "typing_extensions.Buffer", "collections.abc.Buffer"):
        try:
            memoryview(value)
        except TypeError:
            return False
        return True
    if t in ("tuple",):
        return isinstance(value, tuple)
    if t in ("list",):
        return isinstance(value, list)
    if re.match(r"^(typing\.)?(List|list|collections\.abc\.Sequence|Sequence)\[", t):
        return isinstance(value, (list, tuple)) and all(accepts(module, _inner(t), v) for v in value)
    if t.startswith("Dims") and hasattr(module, t):  # Dims converts implicitly from int sequences
        return isinstance(value, module.Dims) or (
            isinstance(value, (list, tuple)) and all(accepts(module, "int", v) for v in value)
        )
    cls = getattr(module, t, None) if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", t) else None
    if isinstance(cls, type):
        if hasattr(cls, "__members__"):  # a pybind11 enum: only its own members, never an int
            return isinstance(value, cls)
        return value is None or isinstance(value, cls)
    return True  # numpy arrays, capsules, objects, C++ names pybind could not spell: not checked here


class Double:
    """Base of the stand-ins. Subclasses set REAL (the real class) and implement behaviour in
    methods and attributes of the real names; their own state lives in ``_names``."""

    REAL: type = None
    MODULE = None  # the double module (to resolve type names to stand-ins)

    def __init__(self, *args, **kwargs):
        values = _call_values(type(self).MODULE, type(self).REAL, "__init__", args, kwargs)
        self._init(*values)

    def _init(self, *values):
        pass

    def __getattribute__(self, name):
        if name.startswith("_") or name in ("REAL", "MODULE"):
            return object.__getattribute__(self, name)
        cls = type(self)
        real = cls.REAL
        try:
            static = inspect.getattr_static(real, name)
        except AttributeError:
            raise AttributeError(f"'{real.__module__}.{real.__name__}' object has no attribute '{name}'") from None
        try:
            value = object.__getattribute__(self, name)
        except AttributeError:
            raise NotImplementedError(f"the {real.__name__} stand-in does not implement {name}") from None
        if isinstance(static, property):
            check_return(cls.MODULE, static.fget.__doc__, "", value, f"{real.__name__}.{name}")
            return value
        if callable(value) and type(static).__name__ in ("instancemethod", "builtin_function_or_method", "function"):
            return _checked_method(cls.MODULE, real, name, value)
        return value

    def __setattr__(self, name, value):
        if name.startswith("_"):
            return object.__setattr__(self, name, value)
        real = type(self).REAL
        static = inspect.getattr_static(real, name, None)
        if static is None:
            raise AttributeError(f"'{real.__module__}.{real.__name__}' object has no attribute '{name}'")
        if not isinstance(static, property) or static.fset is None:
            raise AttributeError(f"can't set attribute '{name}' of '{real.__name__}' (read-only)")
        setter = signatures(static.fset.__doc__, "") or _property_signatures(static.fset.__doc__)
        if setter and not any(s.bind(type(self).MODULE, (value,), {}) is not None for s in setter):
            raise TypeError(f"(): incompatible function arguments: {real.__name__}.{name} = {value!r}")
        object.__setattr__(self, name, value)


def _property_signatures(doc: str | None) -> list[Signature]:
    """Property accessors are documented without a name: ``(arg0: C, arg1: int) -> None``."""
    first = (doc or "").strip().splitlines()[:1]
    return [Signature("x" + first[0])] if first and first[0].startswith("(") else []


def check_return(module, doc, name, value, where):
    sigs = signatures(doc, name) if name else _property_signatures(doc)
    if not sigs:
        return
    declared = {s.returns for s in sigs}
    if value is None and not declared & {"None"}:
        return  # pybind returns None for a null pointer
    if not any(_returns(module, r, value) for r in declared):
        raise AssertionError(f"stand-in drift: {where} returned {value!r}, the real API declares {sorted(declared)}")


def _returns(module, annotation: str, value) -> bool:
    if annotation == "None":
        return value is None
    t = _short(annotation)
    if t.startswith("Dims"):
        return isinstance(value, module.Dims)
    if t in ("int", "typing.SupportsInt"):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if t == "bool":
        return isinstance(value, bool)
    if re.match(r"^(typing\.)?(List|list)\[", t):
        return isinstance(value, list) and all(_returns(module, _inner(t), v) for v in value)
    return accepts(module, annotation, value)


def _call_values(module, real, name, args, kwargs) -> list:
    sigs = signatures(getattr(real, name).__doc__, name)
    for sig in sigs:
        values = sig.bind(module, args, kwargs)
        if values is not None:
            return values
    supported = "\n".join(f"    {i}. {s.text}" for i, s in enumerate(sigs, 1))
    shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    raise TypeError(
        f"{name}(): incompatible function arguments. The following argument types are supported:\n"
        f"{supported}\n\nInvoked with: {shown}"
    )


def _checked_method(module, real, name, implementation):
    def call(*args, **kwargs):
        values = _call_values(module, real, name, args, kwargs)
        result = implementation(*[v for v in values if v is not _DEFAULT])
        check_return(module, getattr(real, name).__doc__, name, result, f"{real.__name__}.{name}")
        return result

    call.__name__ = name
    return call
