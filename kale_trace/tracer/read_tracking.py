"""Runs inside the dry-run kernel: a user namespace that records the names code reads.

Static analysis sees every name a step's code spells out; what it cannot see are reads made
by name at run time: `eval`, `exec`, `globals()[...]`, `vars()`, `sys.modules["__main__"].x`.
This namespace records each successful lookup of an existing name while a step runs.

A dict subclass costs every global lookup a Python call (about 4x on loops over globals), so
the dry run installs it only for notebooks whose code can read names dynamically
(`needs_tracking`); for the rest, the AST reads are already complete.
"""

from __future__ import annotations

import re
import sys
from typing import Any

_reads: set[str] = set()

# Names and attributes through which code can look up a global by a computed name.
_DYNAMIC = re.compile(
    r"\b(eval|exec|globals|locals|vars|get_ipython|__main__|__dict__|__builtins__)\b"
    r"|\bsys\s*\.\s*modules\b"
)


def needs_tracking(code: str) -> bool:
    """Whether plain-Python step code may read globals by a name computed at run time."""
    return _DYNAMIC.search(code) is not None


class TrackingNamespace(dict):
    """The kernel's `user_ns`: records every key read that exists."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        _reads.add(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            _reads.add(key)
        return dict.get(self, key, default)


def install(shell: Any) -> None:
    """Swap the shell's namespace for a tracking one, before any user cell has run.

    Functions keep the namespace they were defined in as their globals, so this must happen
    first: later, old functions would read a stale copy.
    """
    from kale_trace.compat import make_main_module_type

    if isinstance(shell.user_ns, TrackingNamespace):
        return
    namespace = TrackingNamespace(shell.user_ns)
    module = make_main_module_type(namespace)()
    shell.user_module = module
    shell.user_ns = namespace
    shell.ns_table["user_global"] = namespace
    shell.ns_table["user_local"] = namespace
    sys.modules["__main__"] = module  # pickle finds notebook classes through __main__
    _reads.clear()


def take_reads() -> set[str]:
    """The names read since the last call (empty when tracking is not installed)."""
    found = set(_reads)
    _reads.clear()
    return found
