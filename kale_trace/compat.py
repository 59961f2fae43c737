"""What differs between the oldest and newest releases kale-trace supports (README).

Python 3.10's last IPython is 8, which lacks helpers that IPython 9 has; they are given here
with IPython 9's behaviour, so the rest of the code is written for one API.
"""

from __future__ import annotations

import types
from typing import Any


def make_main_module_type(user_ns: dict[str, Any]) -> type[types.ModuleType]:
    """IPython 9's `__main__` module type whose attributes live in `user_ns`, on IPython 8 too.

    Attribute reads go through `user_ns[...]`, so a tracking namespace sees
    `sys.modules["__main__"].name` (IPython 8's own `DummyMod` reads its `__dict__` directly).
    """
    try:
        from IPython.core.interactiveshell import make_main_module_type as ipython_9
    except ImportError:  # IPython 8
        return _main_module_type(user_ns)
    return ipython_9(user_ns)


def _main_module_type(user_ns: dict[str, Any]) -> type[types.ModuleType]:
    class MainModule(types.ModuleType):
        def __init__(self) -> None:
            super().__init__("__main__")

        @property
        def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
            return user_ns

        def __setattr__(self, item: str, value: Any) -> None:
            if item != "__dict__":  # IPython sets it; the property already gives it
                user_ns[item] = value

        def __getattr__(self, item: str) -> Any:
            try:
                return user_ns[item]
            except KeyError:
                raise AttributeError(f"module __main__ has no attribute {item}") from None

        def __delattr__(self, item: str) -> None:
            try:
                del user_ns[item]
            except KeyError:
                raise AttributeError(f"module __main__ has no attribute {item}") from None

    return MainModule
