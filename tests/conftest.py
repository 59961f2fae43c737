"""Shared helpers: build tagged notebooks on disk, trace and compile them for real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from kale_trace.compiler import Compiled, CompileOptions, compile_notebook, trace_notebook
from kale_trace.tracer.dataflow import Dataflow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "breast_cancer.ipynb"


def write_notebook(
    path: Path, cells: list[tuple[str | list[str] | None, str]], metadata: dict | None = None
) -> Path:
    """cells: (tags, source) pairs; tags None means a markdown cell."""
    nb = new_notebook()
    for tags, source in cells:
        if tags is None:
            nb.cells.append(new_markdown_cell(source))
            continue
        tag_list = [tags] if isinstance(tags, str) else list(tags)
        nb.cells.append(new_code_cell(source, metadata={"tags": tag_list} if tag_list else {}))
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if metadata is not None:
        nb.metadata["kubeflow_notebook"] = metadata
    nbformat.write(nb, str(path))
    return path


def edges(flow: Dataflow) -> set[tuple[str, str, str]]:
    """(producer, consumer, variable) for every data input."""
    return {(f.producer, s.name, f.variable) for s in flow.steps for f in s.inputs}


@pytest.fixture
def notebook(tmp_path: Path):
    def make(cells, metadata=None, name="nb.ipynb") -> Path:
        return write_notebook(tmp_path / name, cells, metadata)

    return make


@pytest.fixture
def trace():
    def run(path: Path, **options: Any) -> Dataflow:
        return trace_notebook(path, CompileOptions(overrides={}, samples={}, **options))

    return run


@pytest.fixture
def compile_nb(tmp_path: Path):
    def run(path: Path, outdir: Path | None = None, **options: Any) -> Compiled:
        opts = CompileOptions(
            overrides=options.pop("overrides", {}), samples=options.pop("samples", {}), **options
        )
        return compile_notebook(path, outdir or tmp_path / "out", opts)

    return run


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
