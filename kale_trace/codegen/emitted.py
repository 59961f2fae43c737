"""Pick, from the emitted helper sources, only the definitions a component really calls.

Each marshaller's source holds its save and load functions and their helpers; a consumer
needs only the load side, a producer only the save side. Reachability over top-level names
keeps generated components free of code they never run.
"""

from __future__ import annotations

import ast


def select_definitions(sources: list[str], entries: set[str]) -> str:
    """The top-level definitions of `sources` reachable from `entries`, in source order."""
    order: list[str] = []
    code: dict[str, str] = {}
    uses: dict[str, set[str]] = {}
    for source in sources:
        for node in ast.parse(source).body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name in code:
                continue
            order.append(node.name)
            code[node.name] = ast.get_source_segment(source, node) or ""
            uses[node.name] = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    missing = entries - code.keys()
    if missing:
        raise ValueError(f"no emitted definition of {', '.join(sorted(missing))}")
    needed: set[str] = set()
    pending = list(entries)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        pending.extend(uses[name] & code.keys())
    return "\n\n".join(code[name] for name in order if name in needed)
