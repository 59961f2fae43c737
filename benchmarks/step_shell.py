"""Per-step cost of running a step's cells through IPython's InteractiveShell.

Each case is one fresh interpreter running a step's cells the way a generated component
does: `exec` (the baseline: how steps ran before, plain `exec` per cell), `plain`
(`_kale_Cells` where IPython is absent: plain exec with outputs kept) and `shell`
(`_kale_Cells` with InteractiveShell: magics, displays, outputs kept). Per step: setup plus
every cell, inside the process (imports included); per cell: the same cells run a second
time, so the setup is paid already.

    python -m benchmarks.step_shell [--quick]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap

from kale_trace.codegen.step_cells import cells_source

# A step of ordinary small cells: assignments, a loop, a print, a last expression.
CELLS = [
    "import math\nvalues = list(range(1000))",
    "total = sum(math.sqrt(v) for v in values)",
    "print(f'total {total:.3f}')",
    "squares = {v: v * v for v in values[:100]}\nlen(squares)",
    "def scale(x, k=2):\n    return x * k\nscaled = [scale(v) for v in values]",
    "summary = {'n': len(values), 'max': max(scaled)}\nsummary",
]

_CHILD = """
import io, json, sys, time, types
started = time.perf_counter()
mode, cells, repeat = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
if mode == "plain":
    sys.modules["IPython"] = None  # as in an image without IPython
sink = io.StringIO()
main = types.ModuleType("__main__")
sys.modules["__main__"] = main
real_stdout, sys.stdout = sys.stdout, sink
if mode == "exec":
    run = lambda name, code: exec(compile(code, name, "exec"), main.__dict__)
else:
    helpers = {}
    exec(HELPERS, helpers)
    session = helpers["_kale_Cells"](main, "/dev/null")
    run = lambda name, code: session.run(name, code, cell=0)
for index, code in enumerate(cells):
    run(f"<cell {index}>", code)
step = time.perf_counter() - started
again = time.perf_counter()
for _ in range(repeat):
    for index, code in enumerate(cells):
        run(f"<cell {index}>", code)
per_cell = (time.perf_counter() - again) / (repeat * len(cells))
sys.stdout = real_stdout
print(json.dumps({"step": step, "cell": per_cell}))
"""


def _measure(mode: str, repeat: int) -> dict[str, float]:
    child = _CHILD.replace("HELPERS", repr(cells_source()))
    # The emitted helper sits inside the component function; at top level it needs its
    # sibling function in the same namespace, which exec of the whole source gives it.
    result = subprocess.run(
        [sys.executable, "-c", child, mode, json.dumps(CELLS), str(repeat)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(runs: int, repeat: int) -> dict[str, dict[str, float]]:
    """Median per-step and per-cell seconds of each mode, interleaved run by run."""
    samples: dict[str, list[dict[str, float]]] = {"exec": [], "plain": [], "shell": []}
    for _ in range(runs):
        for mode in samples:
            samples[mode].append(_measure(mode, repeat))
    return {
        mode: {
            "step": statistics.median(s["step"] for s in values),
            "cell": statistics.median(s["cell"] for s in values),
        }
        for mode, values in samples.items()
    }


def table(results: dict[str, dict[str, float]]) -> str:
    """The figures as a Markdown table, each mode against the `exec` baseline."""
    base = results["exec"]
    rows = [
        "| mode | per step (setup + 6 cells) | vs exec | per cell, warm | vs exec |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode, figures in results.items():
        rows.append(
            f"| {mode} | {figures['step'] * 1000:.1f} ms | {figures['step'] / base['step']:.2f}x "
            f"| {figures['cell'] * 1e6:.0f} µs | {figures['cell'] / base['cell']:.2f}x |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    results = measure(runs=1 if quick else 7, repeat=2 if quick else 50)
    print(textwrap.dedent(table(results)))


if __name__ == "__main__":
    main(sys.argv[1:])
