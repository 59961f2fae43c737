"""Dry-run overhead: kale-trace's traced run against the same notebook run plainly by nbclient.

Three notebooks: many tiny cells (probe cost dominates), a few cells holding and mutating a
large numpy array and DataFrame (fingerprints must not copy data: peak memory), and a pure
Python loop over globals (the namespace must not slow user code down).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from kale_trace.executor.dryrun import dry_run
from kale_trace.notebook.loader import load_notebook

_PEAK = "print(__import__('kale_trace.tracer.kernel_probe').tracer.kernel_probe.peak_rss_bytes())"


def _write(path: Path, cells: list[tuple[str, str]]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    for tag, source in cells:
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": [tag]}))
    nbformat.write(nb, str(path))
    return path


def _plain(path: Path) -> int:
    """Run the notebook with nbclient, as papermill does; the kernel's peak RSS in bytes."""
    nb = nbformat.read(str(path), 4)
    nb.cells.append(nbformat.v4.new_code_cell(_PEAK))
    NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return int(nb.cells[-1].outputs[0]["text"])


def _traced(path: Path) -> int:
    run = dry_run(load_notebook(path))
    return max(segment.peak_rss_bytes for segment in run.segments)


def _large(path: Path, megabytes: int) -> Path:
    rows = megabytes * 1_000_000 // 16  # a float64 array plus a float64 column per row
    return _write(
        path,
        [
            ("imports", "import numpy as np\nimport pandas as pd"),
            ("step:load", f"arr = np.ones({rows})\ndf = pd.DataFrame({{'v': np.ones({rows})}})"),
            ("step:mutate", "arr *= 2\ndf['v'] += 1"),
            ("step:use", "total = float(arr.sum() + df['v'].sum())"),
        ],
    )


def notebooks(folder: Path, quick: bool) -> dict[str, Path]:
    small = 20 if quick else 100
    loop = 300_000 if quick else 3_000_000
    cases = {
        f"{small} small cells, {small // 2} steps": _write(
            folder / "small.ipynb",
            [(f"step:s{i // 2}", f"x{i} = {i}\ny{i} = [x{i}] * 10") for i in range(small)],
        ),
    }
    for megabytes in (50,) if quick else (100, 1000):
        name = f"{megabytes} MB of numpy + pandas, mutated"
        cases[name] = _large(folder / f"large{megabytes}.ipynb", megabytes)
    cases[f"python loop over globals, {loop:,} iterations"] = _write(
        folder / "loop.ipynb",
        [
            ("step:setup", "total = 0\nscale = 3\ndef f(v):\n    return v * scale"),
            ("step:loop", f"for i in range({loop}):\n    total += f(i) % 7"),
            ("step:report", "result = total"),
        ],
    )
    return cases


def cases(quick: bool, repeat: int, median: Callable, row: Callable) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in notebooks(Path(tmp), quick).items():
            peaks: dict[str, int] = {}

            def traced(path: Path = path, peaks: dict[str, int] = peaks) -> None:
                peaks["ours"] = _traced(path)

            def plain(path: Path = path, peaks: dict[str, int] = peaks) -> None:
                peaks["plain"] = _plain(path)

            ours = median(traced, repeat)
            baseline = median(plain, repeat)
            row(f"dry run: {name} (s)", ours, baseline, "s", "target <= 1.2x nbclient")
            row("  peak kernel memory (MB)", peaks["ours"] / 1e6, peaks["plain"] / 1e6, "MB",
                "target <= 1.1x nbclient")  # fmt: skip
