"""Python literals for generated code: readable where possible, exact and inert always.

Every string and value that comes from a notebook goes through here, so no notebook can
inject code into the pipeline module. Each literal is checked by parsing it back.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

_SAFE_CONTROLS = {"\n", "\t"}


def value_literal(value: Any) -> str:
    """A literal for a JSON-like value (None, bool, int, float, str, list, dict)."""
    text = repr(value)
    if ast.literal_eval(text) != value or type(ast.literal_eval(text)) is not type(value):
        raise ValueError(f"cannot write {type(value).__name__} value as an exact literal")
    return text


def code_literal(code: str) -> str:
    """A triple-quoted literal that shows code as written, escaping only what must be."""
    out = []
    for char in code:
        if char == "\\":
            out.append("\\\\")
        elif (not char.isprintable() and char not in _SAFE_CONTROLS) or _is_surrogate(char):
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    body = "".join(out).replace('"""', '\\"\\"\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    literal = f'"""{body}"""'
    try:
        exact = ast.literal_eval(literal) == code
    except (SyntaxError, ValueError):
        exact = False
    return literal if exact else repr(code)


def _is_surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDFFF


def identifier(name: str) -> str:
    """Refuse anything that is not a plain identifier (names are validated upstream)."""
    if not name.isidentifier() or name in _KEYWORDS:
        raise ValueError(f"not a valid Python identifier: {name!r}")
    return name


_KEYWORDS = set(keyword.kwlist)


# Names a component's arguments must not take: the emitted helpers call the builtins, so an
# argument named `open` or `compile` would break them (a notebook may name a value so).
BUILTIN_NAMES = frozenset(dir(builtins))


def port_name(name: str, prefix: str = "v") -> str:
    """A name KFP accepts for a port or parameter, and Python for an argument: an ASCII
    letter first, then letters, digits and `_` (`_private` → `v_private`, `λ` → `v_l`...).

    KFP refuses other names, and a notebook may bind any (`données`, `globals()['a b']`).
    """
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) and not keyword.iskeyword(name):
        return name
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9_]+", "_", ascii_text).strip("_")
    if not text[:1].isalpha():
        text = f"{prefix}_{text}" if text else prefix
    if keyword.iskeyword(text):
        text = f"{text}_"
    return text


def parameter_names(names: Iterable[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """The pipeline's name for each notebook parameter: the notebook's where KFP allows it."""
    used = set(taken)
    chosen: dict[str, str] = {}
    for name in names:
        base = port_name(name, "p")
        candidate, number = base, 2
        while candidate in used:
            candidate, number = f"{base}_{number}", number + 1
        used.add(candidate)
        chosen[name] = candidate
    return chosen
