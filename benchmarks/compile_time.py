"""Compile time without a dry run (`--no-trace`) as notebooks grow: 10, 100, 1,000 cells.

The baseline is the floor any compiler pays: reading the notebook and parsing every cell.
"""

from __future__ import annotations

import ast
import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat

from kale_trace.compiler import CompileOptions, compile_notebook


def _notebook(path: Path, cells: int) -> Path:
    """A chain of steps of five cells each, every cell reading the one before."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells.append(nbformat.v4.new_code_cell("import math", metadata={"tags": ["imports"]}))
    nb.cells.append(nbformat.v4.new_code_cell("rows = 10", metadata={"tags": ["parameters"]}))
    for i in range(cells):
        step = i // 5
        tags = [f"step:s{step}"] + ([f"prev:s{step - 1}"] if step and i % 5 == 0 else [])
        source = f"v{i} = rows * {i}" if i == 0 else f"v{i} = math.sqrt(v{i - 1} + {i})"
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags}))
    nbformat.write(nb, str(path))
    return path


def cases(quick: bool, repeat: int, median: Callable, row: Callable) -> None:
    sizes = (10, 100) if quick else (10, 100, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        for cells in sizes:
            path = _notebook(Path(tmp) / f"n{cells}.ipynb", cells)
            out = Path(tmp) / f"out{cells}"

            def ours_once(path: Path = path, out: Path = out) -> None:
                compile_notebook(path, out, CompileOptions(overrides={}, samples={}, trace=False))

            ours = median(ours_once, repeat)

            def floor(path: Path = path) -> None:
                for cell in nbformat.read(str(path), 4).cells:
                    ast.parse(cell.source)

            baseline = median(floor, repeat)
            row(f"compile --no-trace, {cells} cells (s)", ours, baseline, "s",
                f"target < 1 s at 1,000 cells; {1000 * ours / cells:.1f} ms/cell")  # fmt: skip
