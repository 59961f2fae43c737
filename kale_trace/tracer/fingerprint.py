"""Exact, cheap content fingerprints, computed inside the user's kernel.

Same object + other fingerprint = mutated in place. Fingerprints hash raw buffers (no
copies) and dispatch on known types only: user protocol methods (`__iter__`, `__eq__`,
`__repr__`) are never called, since they can exhaust generators or start remote work.
`None` means "cannot tell": the caller treats the value as possibly mutated.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import cloudpickle
import xxhash

_MAX_DEPTH = 6
_MAX_ITEMS = 100_000
_SCALARS = (int, float, complex, str, bytes, bool, type(None))
_OPAQUE = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)


class _Budget(Exception):
    """Raised when a container is too large or deep to walk."""


def fingerprint(obj: Any) -> str | None:
    """A hex digest of the object's content, or None when it cannot be fingerprinted."""
    hasher = xxhash.xxh3_128()
    try:
        _feed(hasher, obj, 0, [0], set())
    except _Budget:
        return _pickled(obj)
    except Exception:
        return None
    return hasher.hexdigest()


def _pickled(obj: Any) -> str | None:
    hasher = xxhash.xxh3_128()
    try:
        cloudpickle.dump(obj, _Sink(hasher), protocol=5)
    except Exception:
        return None
    return hasher.hexdigest()


class _Sink:
    """A file-like object that hashes what is written instead of storing it."""

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return len(data)


def _tag(hasher: Any, text: str) -> None:
    hasher.update(text.encode("utf-8", "surrogatepass") + b"\0")


def _feed(hasher: Any, obj: Any, depth: int, count: list[int], seen: set[int]) -> None:
    count[0] += 1
    if count[0] > _MAX_ITEMS or depth > _MAX_DEPTH:
        raise _Budget
    kind = type(obj)
    if kind in _SCALARS:
        _tag(hasher, kind.__name__)
        _tag(hasher, repr(obj) if kind is not bytes else obj.hex())
        return
    if id(obj) in seen:
        _tag(hasher, "cycle")
        return
    seen.add(id(obj))
    try:
        _feed_known(hasher, obj, kind, depth, count, seen)
    finally:
        seen.discard(id(obj))


def _feed_known(
    hasher: Any, obj: Any, kind: type, depth: int, count: list[int], seen: set[int]
) -> None:
    module = kind.__module__
    if kind in (list, tuple):
        _tag(hasher, f"{kind.__name__}:{len(obj)}")
        for item in obj:
            _feed(hasher, item, depth + 1, count, seen)
    elif kind is dict:
        _tag(hasher, f"dict:{len(obj)}")
        for key, value in obj.items():
            _feed(hasher, key, depth + 1, count, seen)
            _feed(hasher, value, depth + 1, count, seen)
    elif kind in (set, frozenset):
        parts = sorted(fingerprint(item) or "?" for item in obj)
        _tag(hasher, f"{kind.__name__}:{','.join(parts)}")
    elif module == "numpy" and kind.__name__ == "ndarray":
        _feed_array(hasher, obj)
    elif module.startswith("numpy") and hasattr(obj, "dtype") and hasattr(obj, "tobytes"):
        _tag(hasher, f"npscalar:{obj.dtype.str}")
        hasher.update(obj.tobytes())
    elif module.startswith("pandas"):
        _feed_pandas(hasher, obj, kind, depth, count, seen)
    elif module.startswith("pyarrow"):
        _feed_arrow(hasher, obj)
    elif isinstance(obj, types.ModuleType):
        _feed_module(hasher, obj, depth, count, seen)
    elif isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)):
        _feed_callable(hasher, obj, depth, count, seen)
    elif isinstance(obj, _OPAQUE) or module in ("_io", "io", "socket", "_socket", "sqlite3"):
        raise ValueError("opaque")
    elif hasattr(obj, "__dict__") or hasattr(kind, "__slots__"):
        _tag(hasher, f"object:{module}.{kind.__qualname__}")
        state = dict(object.__getattribute__(obj, "__dict__")) if hasattr(obj, "__dict__") else {}
        for slot in _slots(kind):
            try:
                state[slot] = object.__getattribute__(obj, slot)
            except AttributeError:
                continue
        _feed(hasher, state, depth + 1, count, seen)
    else:
        raise _Budget  # unknown builtin-ish type: fall back to its pickle stream


def _slots(kind: type) -> list[str]:
    names: list[str] = []
    for klass in kind.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return [n for n in names if n not in ("__dict__", "__weakref__")]


def _feed_array(hasher: Any, array: Any) -> None:
    _tag(hasher, f"ndarray:{array.dtype.str}:{array.shape}")
    if array.dtype.hasobject:
        raise _Budget  # object arrays: hash their pickle stream (elements may be anything)
    if array.flags.c_contiguous:
        hasher.update(memoryview(array.reshape(-1).view("u1")) if array.size else b"")
        return
    numpy = sys.modules["numpy"]
    for chunk in numpy.nditer(
        array, flags=["external_loop", "buffered"], order="C", buffersize=1 << 20
    ):
        hasher.update(numpy.ascontiguousarray(chunk).view("u1").data)


def _feed_pandas(
    hasher: Any, obj: Any, kind: type, depth: int, count: list[int], seen: set[int]
) -> None:
    name = kind.__name__
    if name == "DataFrame":
        _tag(hasher, f"DataFrame:{obj.shape}")
        _feed_pandas(hasher, obj.index, type(obj.index), depth, count, seen)
        _feed_pandas(hasher, obj.columns, type(obj.columns), depth, count, seen)
        for position in range(obj.shape[1]):
            _feed_values(hasher, obj.iloc[:, position], depth, count, seen)
    elif name == "Series":
        _tag(hasher, f"Series:{obj.name!r}")
        _feed_pandas(hasher, obj.index, type(obj.index), depth, count, seen)
        _feed_values(hasher, obj, depth, count, seen)
    elif name.endswith("Index"):
        _tag(hasher, f"{name}:{list(obj.names)!r}:{obj.dtype}")
        if name == "RangeIndex":
            _tag(hasher, f"{obj.start}:{obj.stop}:{obj.step}")
        else:
            _feed_values(hasher, obj, depth, count, seen)
    else:
        raise _Budget


def _feed_values(hasher: Any, values: Any, depth: int, count: list[int], seen: set[int]) -> None:
    """One column's content through its buffers: numpy arrays, arrow chunks or categories."""
    _tag(hasher, str(values.dtype))
    array = values.array
    numpy = sys.modules["numpy"]
    codes = getattr(array, "codes", None)
    if codes is not None:  # categorical
        _feed_array(hasher, numpy.asarray(codes))
        _feed_values(hasher, array.categories, depth, count, seen)
        return
    arrow = getattr(array, "_pa_array", None)
    if arrow is not None:
        _feed_arrow(hasher, arrow)
        return
    data, mask = getattr(array, "_data", None), getattr(array, "_mask", None)
    if isinstance(data, numpy.ndarray) and isinstance(mask, numpy.ndarray):  # nullable
        _feed_array(hasher, data)
        _feed_array(hasher, mask)
        return
    raw = values.to_numpy(copy=False) if hasattr(values, "to_numpy") else numpy.asarray(values)
    if raw.dtype.hasobject:
        _feed(hasher, raw.tolist(), depth + 1, count, seen)
    else:
        _feed_array(hasher, raw)


def _feed_arrow(hasher: Any, obj: Any) -> None:
    name = type(obj).__name__
    if name == "Table" or name == "RecordBatch":
        _tag(hasher, f"{name}:{obj.schema}")
        for column in obj.columns:
            _feed_arrow(hasher, column)
    elif name == "ChunkedArray":
        _tag(hasher, f"chunked:{obj.type}:{len(obj)}")
        for chunk in obj.chunks:
            _feed_arrow(hasher, chunk)
    elif hasattr(obj, "buffers"):
        _tag(hasher, f"array:{obj.type}:{obj.offset}:{len(obj)}")
        for buffer in obj.buffers():
            hasher.update(memoryview(buffer) if buffer is not None else b"-")
    else:
        raise _Budget


def _feed_callable(hasher: Any, obj: Any, depth: int, count: list[int], seen: set[int]) -> None:
    """Code, defaults and closure cells of a function; the data attributes of a class the
    notebook defined (`C.counter += 1` is state a later step would not get from its source)."""
    _tag(hasher, f"callable:{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}")
    code = getattr(obj, "__code__", None)
    if code is not None:
        hasher.update(code.co_code)
        _tag(hasher, repr(code.co_consts)[:10_000])
        _tag(hasher, repr(getattr(obj, "__defaults__", None))[:10_000])
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                _tag(hasher, "empty-cell")
                continue
            _feed(hasher, contents, depth + 1, count, seen)
    elif isinstance(obj, type):
        for key, value in sorted(vars(obj).items()):
            if isinstance(value, types.FunctionType):
                _tag(hasher, key)
                hasher.update(value.__code__.co_code)
            elif obj.__module__ == "__main__" and not _is_plumbing(key, value):
                _tag(hasher, f"attribute:{key}")
                _feed(hasher, value, depth + 1, count, seen)


def _is_plumbing(key: str, value: Any) -> bool:
    """Class dict entries Python makes itself, or descriptors: not data a step changes."""
    if key.startswith("__") and key.endswith("__"):
        return True
    return isinstance(value, (staticmethod, classmethod, property, types.MemberDescriptorType))


def _feed_module(
    hasher: Any, module: types.ModuleType, depth: int, count: list[int], seen: set[int]
) -> None:
    """A module of the notebook's own (a helper file beside it): its data attributes, since
    `helper.X = 5` in one step is lost when the next step imports the module afresh."""
    _tag(hasher, f"module:{module.__name__}")
    if not is_local_module(module):
        return
    for key, value in sorted(vars(module).items()):
        if key.startswith("__") or isinstance(value, (types.ModuleType, types.FunctionType, type)):
            continue
        _tag(hasher, key)
        _feed(hasher, value, depth + 1, count, seen)


def is_local_module(module: types.ModuleType) -> bool:
    """A module loaded from a file outside the Python installation and its site-packages."""
    path = getattr(module, "__file__", None)
    if not isinstance(path, str):
        return False
    installed = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return "site-packages" not in path and not any(path.startswith(p) for p in installed)
