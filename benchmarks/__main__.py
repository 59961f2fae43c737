"""Run the benchmarks: `python -m benchmarks [--quick]`.

Every figure is a median of several runs next to a baseline measured in the same process,
printed as a ratio. Targets are printed too; nothing here asserts, tests never time things.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import numpy as np
import xxhash

from benchmarks import compile_time, dry_run, marshal
from kale_trace.tracer import kernel_probe
from kale_trace.tracer.fingerprint import fingerprint


def median_seconds(function: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def row(case: str, ours: float, baseline: float, unit: str, target: str) -> None:
    ratio = ours / baseline if baseline else float("nan")
    print(f"{case:<44} {ours:>10.4f} {baseline:>10.4f} {unit:<6} {ratio:>7.2f}x  {target}")


def fingerprint_cases(quick: bool, repeat: int) -> None:
    for size in (100_000_000,) if quick else (10_000_000, 100_000_000, 1_000_000_000):
        array = np.random.default_rng(0).random(size // 8)
        ours = median_seconds(lambda array=array: fingerprint(array), repeat)
        raw = median_seconds(
            lambda array=array: xxhash.xxh3_128(memoryview(array)).hexdigest(), repeat
        )
        gbps = array.nbytes / 1e9
        row(f"fingerprint float64 {array.nbytes // 10**6} MB (GB/s)", gbps / ours, gbps / raw,
            "GB/s", "target >= 2 GB/s")  # fmt: skip
        del array
    namespace = {f"v{i}": ([i, str(i)] if i % 2 else {"k": i}) for i in range(200)}
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "probe.json")
        kernel_probe.reset()
        kernel_probe.probe(namespace, out)
        ours = median_seconds(lambda: kernel_probe.probe(namespace, out), repeat * 3)
    empty = median_seconds(lambda: dict(namespace), repeat * 3)
    row("probe, 200 small objects (ms)", ours * 1e3, empty * 1e3, "ms", "target < 20 ms")


def local_pipeline_cases(quick: bool) -> None:
    """Seconds per trivial step under kfp.local, against starting the KFP executor's imports."""
    from kale_trace.compiler import CompileOptions, trace_notebook
    from kale_trace.runners.local import run_locally

    # What every KFP lightweight component pays: a Python that imports kfp's executor
    # (kfp skips its client imports when _KFP_RUNTIME is set, as in a real component).
    runtime_env = {**os.environ, "_KFP_RUNTIME": "true"}
    floor = median_seconds(
        lambda: subprocess.run(
            [sys.executable, "-c", "import kfp.dsl.executor_main"], check=True, env=runtime_env
        ),
        3,
    )
    for steps in (1, 5) if quick else (1, 5, 20):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"trivial_{steps}.ipynb"
            nb = nbformat.v4.new_notebook()
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
            for i in range(steps):
                source = "x = 0" if i == 0 else "x = x + 1"
                tags = [f"step:s{i}"] + ([f"prev:s{i - 1}"] if i else [])
                nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags}))
            nbformat.write(nb, str(path))
            flow = trace_notebook(path, CompileOptions(overrides={}, samples={}))
            started = time.perf_counter()
            run_locally(flow, Path(tmp) / "runs")
            ours = (time.perf_counter() - started) / steps
        row(f"local pipeline, {steps} trivial steps (s/step)", ours, floor, "s",
            "target < 1 s/step; baseline: one python importing kfp's executor")  # fmt: skip


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one repeat: a smoke test"
    )
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else 5
    print(f"{'case':<44} {'ours':>10} {'baseline':>10} {'unit':<6} {'ratio':>8}  target")
    fingerprint_cases(args.quick, repeat)
    dry_run.cases(args.quick, 1 if args.quick else 3, median_seconds, row)
    compile_time.cases(args.quick, 1 if args.quick else 5, median_seconds, row)
    local_pipeline_cases(args.quick)
    print()
    marshal.main(["--quick"] if args.quick else [])


if __name__ == "__main__":
    main(sys.argv[1:])
