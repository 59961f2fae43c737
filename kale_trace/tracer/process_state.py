"""Runs inside the dry-run kernel: process state a step may inherit from the steps before.

**Random generators.** A step whose numbers come from a global generator (`random`, numpy's
global RandomState, torch's CPU generator) depends on the state earlier steps left, unless
it seeds before it draws. The seeding functions are wrapped so the probe can tell: the
wrapper notes the generator's state at the first seed call of a segment; if that is still
the state the segment started with, nothing was drawn before the seed and the segment does
not depend on what came before. Wrapping is re-checked before every cell, for modules
imported later; a seed in the very cell that first imports numpy is missed, which only
costs an ordering edge (the state is then carried anyway).

**Environment variables.** Which ones changed, by name (values are hashed, never kept: they
may be secrets), and which of those were set while a module was being imported
(scikit-learn sets some on import): those are set again wherever the module is imported,
so they need not travel.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import xxhash

from kale_trace.tracer.fingerprint import fingerprint

_first_seed: dict[str, str | None] = {}  # generator -> state fingerprint at its first seed


def _numpy_state() -> Any:
    return sys.modules["numpy"].random.get_state()


def _torch_state() -> Any:
    return bytes(sys.modules["torch"].random.get_rng_state().numpy())


# generator key -> (module that must be imported, state getter, [(owner module, seed attr)])
GENERATORS: dict[str, tuple[str, Callable[[], Any], list[tuple[str, str]]]] = {
    "random": ("random", lambda: sys.modules["random"].getstate(), [("random", "seed")]),
    "numpy.random": ("numpy", _numpy_state, [("numpy.random", "seed")]),
    "torch.random": (
        "torch",
        _torch_state,
        [("torch", "manual_seed"), ("torch", "seed"), ("torch.random", "manual_seed")],
    ),
}


def states() -> dict[str, str | None]:
    """Fingerprints of the global generators of the modules imported so far."""
    found: dict[str, str | None] = {}
    for key, (module, getter, _) in GENERATORS.items():
        if module in sys.modules:
            try:
                found[key] = fingerprint(getter())
            except Exception:
                found[key] = None
    return found


def patch() -> None:
    """Wrap the seeding functions of the generators' modules imported so far (idempotent)."""
    for key, (_, _, seeders) in GENERATORS.items():
        for owner, attribute in seeders:
            module = sys.modules.get(owner)
            real = getattr(module, attribute, None) if module is not None else None
            if real is None or getattr(real, "_kale_seed_watch", False):
                continue
            try:
                setattr(module, attribute, _wrap(key, real))
            except (AttributeError, TypeError):
                continue


def _wrap(key: str, real: Callable[..., Any]) -> Callable[..., Any]:
    def seed(*args: Any, **kwargs: Any) -> Any:
        if key not in _first_seed:
            _first_seed[key] = states().get(key)
        return real(*args, **kwargs)

    seed._kale_seed_watch = True  # type: ignore[attr-defined]
    seed.__wrapped__ = real  # type: ignore[attr-defined]
    seed.__doc__ = real.__doc__
    seed.__name__ = getattr(real, "__name__", "seed")
    return seed


def take_seeded_first(started: dict[str, str | None]) -> list[str]:
    """Generators the segment seeded before drawing from them (given its starting states)."""
    seeded = [
        key
        for key, state in _first_seed.items()
        if key not in started or (state is not None and state == started[key])
    ]
    _first_seed.clear()
    return sorted(seeded)


_set_by_imports: set[str] = set()
_env_watching = False


def environment() -> dict[str, str]:
    """name -> a short hash of the value, for every environment variable."""
    return {
        k: xxhash.xxh3_64_hexdigest(v.encode("utf-8", "replace")) for k, v in os.environ.items()
    }


def watch_environment() -> None:
    """Record names set (or unset) inside an import; audit hooks cannot be removed, so the
    hook is added once and costs a frame walk only when the environment changes."""
    global _env_watching
    if not _env_watching:
        sys.addaudithook(_audit)
        _env_watching = True
    _set_by_imports.clear()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in ("os.putenv", "os.unsetenv") or not args:
        return
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            name = args[0]
            _set_by_imports.add(os.fsdecode(name) if isinstance(name, bytes) else str(name))
            return
        frame = frame.f_back


def take_set_by_imports() -> list[str]:
    found = sorted(_set_by_imports)
    _ever_set_by_imports.update(found)
    _set_by_imports.clear()
    return found


_ever_set_by_imports: set[str] = set()  # set again wherever the module is imported


_builtins_at_start: dict[str, int] = {}


def remember_builtins() -> None:
    """The builtins as the kernel started them (IPython adds its own before any cell)."""
    import builtins

    _builtins_at_start.clear()
    _builtins_at_start.update({name: id(value) for name, value in vars(builtins).items()})


def builtins_changed() -> list[str]:
    """Builtins the notebook added or replaced so far: state no later step inherits."""
    import builtins

    return sorted(
        name
        for name, value in vars(builtins).items()
        if _builtins_at_start.get(name) != id(value)
        and not name.startswith("_")
        and name not in _IPYTHON_BUILTINS
    )


# IPython sets these per cell; ipykernel replaces `input` on every request it forwards.
_IPYTHON_BUILTINS = {"exit", "quit", "get_ipython", "display", "dreload", "input", "raw_input"}


# numpy's print options as a fresh numpy has them (the same in numpy 1.26 and 2.x).
_NUMPY_PRINT_DEFAULTS = {
    "edgeitems": 3,
    "threshold": 1000,
    "floatmode": "maxprec",
    "precision": 8,
    "suppress": False,
    "linewidth": 75,
    "nanstr": "nan",
    "infstr": "inf",
    "sign": "-",
}
# pandas chooses some display defaults by where it runs: a Jupyter kernel gets 20 columns, a
# plain Python process (a pipeline step) sizes tables to a terminal. Always carried.
KERNEL_DEFAULTS = {"pandas": ("display.max_columns",)}
_PLAIN = (bool, int, float, str, type(None))


def settings() -> dict[str, dict[str, Any]]:
    """Settings a later step's fresh process would have otherwise, as plain values.

    pandas options that differ from pandas' defaults (and those whose default depends on
    running in a kernel), numpy print options, the `decimal` context's precision and
    rounding, torch's default dtype and deterministic flag: each only once its module is
    imported. Callables (a float_format function) cannot be written as values: left out.
    """
    found: dict[str, dict[str, Any]] = {k: v for k, v in _process().items() if v}
    for name, reader in _SETTINGS.items():
        if name in sys.modules:
            try:
                values = {k: v for k, v in reader(sys.modules[name]).items() if _plain(v)}
            except Exception:
                continue
            if values:
                found[name] = values
    return found


_at_start: dict[str, Any] = {}


def remember_process() -> None:
    """The kernel's import path, directory and environment before the first cell."""
    _at_start.update(path=list(sys.path), cwd=os.getcwd(), environ=dict(os.environ))
    _ever_set_by_imports.clear()


def _process() -> dict[str, dict[str, Any]]:
    """Import path entries, the directory and environment variables the notebook changed.

    Environment values stay in the kernel's and kale-trace's memory: the host keeps only
    those the notebook's own code spells out (`hidden_state.carry_settings`).
    """
    if not _at_start:
        return {}
    start, now = _at_start["path"], list(sys.path)
    first = next((i for i, entry in enumerate(now) if entry in start), len(now))
    added = [entry for entry in now if entry not in start and isinstance(entry, str)]
    path = {"insert": [e for e in added if now.index(e) < first]}
    path["append"] = [e for e in added if e not in path["insert"]]
    cwd = os.getcwd()
    old, new = _at_start["environ"], dict(os.environ)
    environ = {
        k: new.get(k)
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k) and k not in _ever_set_by_imports | _set_by_imports
    }
    return {
        "sys.path": {k: v for k, v in path.items() if v},
        "cwd": {"path": os.path.relpath(cwd, _at_start["cwd"])} if cwd != _at_start["cwd"] else {},
        "environ": environ,
    }


def _plain(value: Any) -> bool:
    """A value a generated step can hold as a literal (no NaN: it equals nothing)."""
    return type(value) in _PLAIN and value == value


def _pandas(pandas: Any) -> dict[str, Any]:
    registered = pandas._config.config._registered_options
    values = {}
    for key in sorted(registered):
        value = pandas.get_option(key)
        if key in KERNEL_DEFAULTS["pandas"] or value != registered[key].defval:
            values[key] = value
    return values


def _numpy(numpy: Any) -> dict[str, Any]:
    options = numpy.get_printoptions()
    return {k: options[k] for k, v in _NUMPY_PRINT_DEFAULTS.items() if options.get(k, v) != v}


def _decimal(decimal: Any) -> dict[str, Any]:
    context = decimal.getcontext()
    values = {"prec": context.prec, "rounding": context.rounding}
    return {k: v for k, v in values.items() if v != getattr(decimal.DefaultContext, k)}


def _torch(torch: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    dtype = str(torch.get_default_dtype()).removeprefix("torch.")
    if dtype != "float32":
        values["default_dtype"] = dtype
    if torch.are_deterministic_algorithms_enabled():
        values["deterministic_algorithms"] = True
    return values


_SETTINGS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "pandas": _pandas,
    "numpy": _numpy,
    "decimal": _decimal,
    "torch": _torch,
}
