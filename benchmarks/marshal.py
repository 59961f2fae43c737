"""Marshalling benchmark: `python -m benchmarks.marshal [--quick]`.

For each family, the emitted save+load code (checksum included, through a real file) against
pickle, dill and cloudpickle on the same object and the same disk, plus pandas' own pickle
(what Kale uses for frames) and a raw `tofile`/`fromfile` of the array's buffer. Medians of
several runs; ratios are ours / baseline. Nothing here asserts: targets are printed.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import dill
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from kale_trace.marshal import choose_marshaller
from kale_trace.marshal.roundtrip import emitted_functions
from kale_trace.tracer.kernel_probe import describe


class Record:
    """A plain user object: what falls back to cloudpickle."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.tags = [f"t{index}", f"u{index % 7}"]
        self.weights = {"a": index * 0.5, "b": -index}


def median_seconds(function: Callable[[], object], repeat: int, path: Path) -> float:
    times = []
    for _ in range(repeat):
        path.unlink(missing_ok=True)  # a fresh file each time, as a KFP output is
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def objects(quick: bool) -> dict[str, Any]:
    """One object per family, big enough that formats, not call overheads, dominate."""
    rng = np.random.default_rng(0)
    rows = 100_000 if quick else 1_000_000
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "y": rng.random(rows),
            "n": rng.integers(0, 1_000_000, rows),
            "name": pd.array([f"customer-{i % 50_000:05d}" for i in range(rows)], dtype="str"),
            "kind": pd.Categorical(rng.choice(["red", "green", "blue"], rows)),
        }
    )
    from sklearn.ensemble import RandomForestClassifier

    features = rng.normal(size=(2_000, 10))
    forest = RandomForestClassifier(n_estimators=10 if quick else 50, random_state=0)
    forest.fit(features, features[:, 0] > 0)
    return {
        f"json dict, {rows // 10:,} keys": {f"key{i}": [i, f"v{i}"] for i in range(rows // 10)},
        f"numpy float64, {rows * 50 * 8 // 10**6} MB": rng.random(rows * 50),
        f"DataFrame {rows:,} rows mixed": frame,
        f"Series {rows:,} floats": frame["x"],
        f"pyarrow Table {rows:,} rows": pa.Table.from_pandas(frame, preserve_index=False),
        f"scipy csr, {rows:,} nnz": sp.random(
            rows // 10, 10_000, density=10 / 10_000, format="csr", random_state=0
        ),
        "sklearn forest": forest,
        f"objects, {rows // 20:,} Records": [Record(i) for i in range(rows // 20)],
    }


def ours(value: Any, path: Path) -> Callable[[], object]:
    marshaller = choose_marshaller(describe(value))
    functions = emitted_functions(marshaller)
    arguments = {"allow_pickle": True} if marshaller.load_arguments else {}

    def run() -> object:
        artifact = types.SimpleNamespace(path=str(path), metadata={})
        save = functions[marshaller.save_function]
        functions["_kale_write_artifact"](artifact, marshaller.name, value, save)
        data = functions["_kale_read_artifact"](artifact, "value", "producer")
        return functions[marshaller.load_function](data, **arguments)

    run.marshaller = marshaller.name  # type: ignore[attr-defined]
    return run


def pickler(module: Any, value: Any, path: Path) -> Callable[[], object]:
    def run() -> object:
        with open(path, "wb") as file:
            module.dump(value, file, protocol=5)
        with open(path, "rb") as file:
            return module.load(file)

    return run


def pandas_pickle(value: Any, path: Path) -> Callable[[], object]:
    def run() -> object:
        value.to_pickle(path)
        return pd.read_pickle(path)

    return run


def raw_buffer(value: Any, path: Path) -> Callable[[], object]:
    def run() -> object:
        value.tofile(path)
        return np.fromfile(path, dtype=value.dtype)

    return run


def measure(run: Callable[[], object], path: Path, repeat: int) -> tuple[float, int]:
    run()  # warm up: imports, page cache
    seconds = median_seconds(run, repeat, path)
    return seconds, path.stat().st_size


def family_table(quick: bool, repeat: int, folder: Path) -> dict[str, dict[str, tuple]]:
    print(f"{'family (format)':<46} {'baseline':<14} {'seconds':>9} {'MB':>8} {'ratio':>7}")
    results: dict[str, dict[str, tuple]] = {}
    for family, value in objects(quick).items():
        path = folder / "artifact"
        run = ours(value, path)
        candidates: dict[str, Callable[[], object]] = {
            "pickle": pickler(pickle, value, path),
            "dill": pickler(dill, value, path),
            "cloudpickle": pickler(cloudpickle, value, path),
        }
        if isinstance(value, (pd.DataFrame, pd.Series)):
            candidates["pandas pickle"] = pandas_pickle(value, path)
        if isinstance(value, np.ndarray):
            candidates["raw tofile"] = raw_buffer(value, path)
        figures = {"ours": measure(run, path, repeat)}
        for name, baseline in candidates.items():
            figures[name] = measure(baseline, path, repeat)
        results[family] = figures
        seconds, size = figures["ours"]
        print(f"{family + ' (' + run.marshaller + ')':<46} {'ours':<14} {seconds:>9.4f} "  # type: ignore[attr-defined]
              f"{size / 1e6:>8.2f}")  # fmt: skip
        for name in candidates:
            other, other_size = figures[name]
            print(f"{'':<46} {name:<14} {other:>9.4f} {other_size / 1e6:>8.2f} "
                  f"{seconds / other:>6.2f}x")  # fmt: skip
    return results


def frame_formats(quick: bool, repeat: int, folder: Path) -> None:
    """Why uncompressed Arrow IPC: the candidates on the same frame, pandas' pickle for scale."""
    frame = next(v for k, v in objects(quick).items() if k.startswith("DataFrame"))
    path = folder / "frame"

    def ipc(compression: str | None) -> Callable[[], object]:
        def run() -> object:
            table = pa.Table.from_pandas(frame)
            options = pa.ipc.IpcWriteOptions(compression=compression)
            with (
                pa.OSFile(str(path), "wb") as sink,
                pa.ipc.new_file(sink, table.schema, options=options) as writer,
            ):
                writer.write_table(table)
            with pa.memory_map(str(path)) as source:
                return pa.ipc.open_file(source).read_all().to_pandas()

        return run

    def parquet(compression: str) -> Callable[[], object]:
        def run() -> object:
            pq.write_table(pa.Table.from_pandas(frame), path, compression=compression)
            return pq.read_table(path).to_pandas()

        return run

    print(f"\n{'frame format candidates':<46} {'':<14} {'seconds':>9} {'MB':>8} {'ratio':>7}")
    base, _ = measure(pandas_pickle(frame, path), path, repeat)
    for name, run in {
        "pandas pickle": pandas_pickle(frame, path),
        "arrow ipc (chosen)": ipc(None),
        "arrow ipc lz4": ipc("lz4"),
        "arrow ipc zstd": ipc("zstd"),
        "parquet snappy": parquet("snappy"),
        "parquet zstd": parquet("zstd"),
    }.items():
        seconds, size = measure(run, path, repeat)
        print(f"{name:<46} {'':<14} {seconds:>9.4f} {size / 1e6:>8.2f} {seconds / base:>6.2f}x")


def targets(results: dict[str, dict[str, tuple]]) -> None:
    print("\ntargets")
    for family, figures in results.items():
        seconds, size = figures["ours"]
        if family.startswith("DataFrame"):
            other, other_size = figures["pandas pickle"]
            met = seconds <= 1.5 * other and size <= other_size
            print(f"  {family}: <= 1.5x pandas pickle ({seconds / other:.2f}x) and no larger "
                  f"({size / other_size:.2f}x): {'met' if met else 'NOT met'}")  # fmt: skip
        if family.startswith("numpy"):
            other, _ = figures["raw tofile"]
            met = seconds <= 1.2 * other
            print(f"  {family}: <= 1.2x raw tofile/fromfile ({seconds / other:.2f}x): "
                  f"{'met' if met else 'NOT met'}")  # fmt: skip
        other, _ = figures["dill"]
        print(f"  {family}: faster than dill ({seconds / other:.2f}x): "
              f"{'met' if seconds < other else 'NOT met'}")  # fmt: skip


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.marshal")
    parser.add_argument(
        "--quick", action="store_true", help="small objects, one repeat: a smoke test"
    )
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else 5
    print(f"save + load through a file in {tempfile.gettempdir()}, median of {repeat}\n")
    with tempfile.TemporaryDirectory(prefix="kale-marshal-bench-") as tmp:
        folder = Path(tmp)
        results = family_table(args.quick, repeat, folder)
        frame_formats(args.quick, repeat, folder)
    targets(results)


if __name__ == "__main__":
    main(sys.argv[1:])
