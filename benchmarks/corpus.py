"""Real notebooks, unchanged: `python -m benchmarks.corpus DIR [--out FILE.json] [--keep]`.

For every `.ipynb` under DIR (not in `.ipynb_checkpoints`, hidden folders or kale-trace output
folders) this copies the notebook's folder to a temporary working copy (DIR is never written)
and, from that folder, with `MPLBACKEND=Agg` and `PYTHONHASHSEED=0`:

1. runs the notebook itself **in Kale's order** (`kale_order`: `skip` and papermill
   `injected-parameters` cells out; `imports`, `functions`, parameters cells hoisted, in that
   order; then the other cells in notebook order; `pipeline-metrics` cells last) with nbclient
   in a real kernel, timed, recording each step's printed standard output;
2. recopies the folder (same path, pristine files) and runs `kale-trace run NOTEBOOK -o TMP/.kale`
   as a user would, timed, then reads each step's printed output from kfp.local's `run.log`;
3. compares them step by step and prints one table row per notebook (the JSON has every text).

A step's expected output is what the `imports`, `functions` and parameters cells printed (every
step runs them first: Kale prepends the prologue, and a parameters cell holding more than literal
assignments runs as papermill runs it, before the run's values are bound) followed by what the
step's own cells printed; `pipeline-metrics` cells belong to the last step (the one that reports
the metrics). A notebook with no `step:`/`block:` tag is one step, paired with the pipeline's
task if it has exactly one.

Seeds: a notebook whose code calls no `seed(` gets, in both runs, a hidden `imports` cell first
(`random.seed(0)`, and `numpy.random.seed(0)` when numpy is importable), inserted just before its
first tagged cell so no untagged cell changes owner; the table's notes say "seeded".

Normalisation, applied to both texts before comparing (a step matches when they are equal):

- trailing whitespace is stripped from every line and blank lines are dropped;
- timing lines are dropped: lines containing `Wall time`, `CPU times`, `s/it` or `it/s`, and
  lines with a decimal number shortly after the word `time` or `took`;
- Python warning lines (`<file>:<line>: <Name>Warning: ...`, with the indented source line after
  one) are dropped: their file names differ between a kernel and a component;
- pipeline side only: a task log merges standard error into standard output, so lines the same
  cells wrote to standard error in the notebook run are dropped from the task's text.

Exit code 0 when the table was made (it is the result, not a gate); 2 for a usage error.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat import NotebookNode

CELL_TIMEOUT = 600  # seconds a notebook cell may take in the reference run
RUN_TIMEOUT = 3600  # seconds `kale-trace run` may take for one notebook
WHOLE_NOTEBOOK = "(notebook)"  # the one step of a notebook without step tags
_ORDER = {"imports": 0, "functions": 1, "parameters": 2, "step": 3, "metrics": 4}
_ROLE_TAGS = {
    "imports": "imports",
    "functions": "functions",
    "pipeline-parameters": "parameters",
    "parameters": "parameters",
    "pipeline-metrics": "metrics",
}
_SEED = re.compile(r"seed\s*\(")  # random.seed(, np.random.seed(, torch.manual_seed(
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TIMING = (
    re.compile(r"Wall time|CPU times|s/it\b|it/s\b"),
    re.compile(r"\b(?:time|took)\b[^0-9\n]{0,20}\d*\.\d+", re.IGNORECASE),
)
_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")
_EXECUTING = re.compile(r" - INFO - Executing task '(?P<task>[^']+)'")
_FINISHED = re.compile(r" - [A-Z]+ - Task '(?P<task>[^']+)' finished with status (?P<status>\w+)")
_KFP_LOCAL_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d+ - [A-Z]+ - ")
_KFP_EXECUTOR_LINE = re.compile(r"^\[KFP Executor [^\]]*\]: ")


# --- Kale's order: the reference semantics ------------------------------------------------


@dataclass(frozen=True)
class KaleCell:
    """A code cell that runs, with the role and steps Kale's tags give it."""

    index: int  # position among all the notebook's cells
    role: str  # imports | functions | parameters | step | metrics
    steps: tuple[str, ...]  # for step and metrics cells: the steps whose output it is
    source: str
    tags: tuple[str, ...] = ()


def step_name(raw: str) -> str:
    """Kale's step name: lower case, runs of anything but [a-z0-9_] made one `_`."""
    return re.sub(r"[^a-z0-9_]+", "_", raw.strip().lower())


def task_name(step: str) -> str:
    """The name KFP gives a step's task (its `sanitize_k8s_name`)."""
    return re.sub(r"-+", "-", re.sub(r"[^-0-9a-z]+", "-", step.lower())).strip("-")


def _tags(cell: NotebookNode) -> tuple[str, ...]:
    return tuple(str(t).strip() for t in cell.get("metadata", {}).get("tags", []))


def _role(tags: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """The role a cell's own tags give it; (None, ()) for an untagged cell."""
    if "skip" in tags or "injected-parameters" in tags:
        return "skip", ()
    for tag, role in _ROLE_TAGS.items():
        if tag in tags:
            return role, ()
    names = [
        step_name(name)
        for tag in tags
        if tag.startswith(("step:", "block:"))
        for name in tag.split(":", 1)[1].split(";")
        if name.strip()
    ]
    return ("step", tuple(dict.fromkeys(names))) if names else (None, ())


def _classified(nb: NotebookNode) -> list[KaleCell]:
    """Every code cell that runs, in notebook order, owned as Kale owns it."""
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    has_steps = any(_role(_tags(c))[0] == "step" for _, c in code)
    current: tuple[str, tuple[str, ...]] | None = None
    cells = []
    for index, cell in code:
        tags = _tags(cell)
        role, steps = _role(tags)
        if role == "skip":
            continue  # a skip cell is no owner: untagged cells after it continue the one before
        if role is not None:
            current = (role, steps)
        elif not has_steps:
            role, steps = "step", (WHOLE_NOTEBOOK,)
        elif current is None:
            continue  # untagged cells before the first tag are dropped, as Kale does
        else:
            role, steps = current
        if cell.source.strip():
            cells.append(KaleCell(index, role, steps, cell.source, tags))
    return cells


def kale_order(nb: NotebookNode) -> list[KaleCell]:
    """The cells that run and the order they run in, as Kale runs a notebook's steps."""
    cells = sorted(_classified(nb), key=lambda c: _ORDER[c.role])  # stable: notebook order
    step_cells = [c for c in cells if c.role == "step"]
    last = (step_cells[-1].steps[-1],) if step_cells else ()
    return [replace(c, steps=last) if c.role == "metrics" else c for c in cells]


def step_names(cells: Iterable[KaleCell]) -> list[str]:
    """The steps, in the order they first run."""
    return list(dict.fromkeys(s for c in cells if c.role in ("step", "metrics") for s in c.steps))


def seeds_itself(nb: NotebookNode) -> bool:
    """True when any code cell calls a `seed(` function: then we leave its RNGs alone."""
    return any(_SEED.search(c.source) for c in nb.cells if c.cell_type == "code")


def with_seed_cell(nb: NotebookNode, numpy: bool) -> NotebookNode:
    """A copy with a hidden first `imports` cell seeding `random` (and numpy)."""
    source = "import random\nrandom.seed(0)"
    if numpy:
        source += "\nimport numpy\nnumpy.random.seed(0)"
    seeded = copy.deepcopy(nb)
    cell = nbformat.v4.new_code_cell(
        source, metadata={"tags": ["imports"], "jupyter": {"source_hidden": True}}
    )
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):
        cell.pop("id", None)  # cell ids exist from nbformat 4.5 on
    seeded.cells.insert(seed_position(nb), cell)
    return seeded


def seed_position(nb: NotebookNode) -> int:
    """Where the seed cell goes: just before the first tagged cell, so no cell changes owner.

    Cells above it stay before the first tag, and none follows it untagged; a notebook with no
    tag at all gets it last, where no untagged cell can follow it.
    """
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    tagged = [i for i in code if _role(_tags(nb.cells[i]))[0] not in (None, "skip")]
    return tagged[0] if tagged else len(nb.cells)


def reference_notebook(nb: NotebookNode, cells: list[KaleCell]) -> NotebookNode:
    """The notebook of `cells` in their order, keeping each cell's tags (`raises-exception`)."""
    ref = nbformat.v4.new_notebook(metadata=copy.deepcopy(nb.metadata))
    ref.cells = [
        nbformat.v4.new_code_cell(c.source, metadata={"tags": list(c.tags)}) for c in cells
    ]
    return ref


# --- The two runs -------------------------------------------------------------------------


@dataclass
class Reference:
    """The notebook run in Kale's order: per-step printed text, time, its own error."""

    seconds: float
    stdout: dict[str, str]
    stderr: dict[str, str]
    parameters_stdout: str = ""
    error: str | None = None  # "ZeroDivisionError: division by zero"
    error_name: str | None = None
    error_cell: int | None = None  # the failing cell's index in the notebook
    error_step: str | None = None  # its step, or its role (imports, parameters, ...)


def _stream(cell: NotebookNode, name: str) -> str:
    return "".join(
        o.get("text", "")
        for o in cell.get("outputs", [])
        if o.output_type == "stream" and o.get("name") == name
    )


def _failed_cell(ref: NotebookNode) -> int | None:
    """Position of the cell that stopped the run: the first error not allowed by a tag."""
    for i, cell in enumerate(ref.cells):
        if "raises-exception" in cell.metadata.get("tags", []):
            continue
        if any(o.output_type == "error" for o in cell.get("outputs", [])):
            return i
    started = [i for i, c in enumerate(ref.cells) if c.get("execution_count")]
    return started[-1] if started else None


def _printed(cells: list[KaleCell], ref: NotebookNode, roles: tuple[str, ...], name: str) -> str:
    """What the cells of these roles printed on stream `name`, in the order they ran."""
    ran = zip(cells, ref.cells, strict=True)
    return "".join(_stream(out, name) for cell, out in ran if cell.role in roles)


def per_step_text(cells: list[KaleCell], ref: NotebookNode, name: str) -> dict[str, str]:
    """Each step's printed text on stream `name`: the prologue's, then its own cells'."""
    prologue = _printed(cells, ref, ("imports", "functions", "parameters"), name)
    texts = dict.fromkeys(step_names(cells), prologue)
    for cell, ran in zip(cells, ref.cells, strict=True):
        if cell.role in ("step", "metrics"):
            for step in cell.steps:
                texts[step] += _stream(ran, name)
    return texts


def run_reference(nb: NotebookNode, folder: Path, env: dict[str, str], timeout: int) -> Reference:
    """Run the notebook in Kale's order in a real kernel started in `folder`."""
    cells = kale_order(nb)
    ref = reference_notebook(nb, cells)
    client = NotebookClient(
        ref, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    error = name = None
    started = time.perf_counter()
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        error, name = f"{exc.ename}: {exc.evalue}".strip(), exc.ename
    except Exception as exc:  # a timeout or a dead kernel: the notebook did not finish
        error, name = f"{type(exc).__name__}: {_first_line(str(exc))}", type(exc).__name__
    seconds = time.perf_counter() - started
    result = Reference(
        seconds,
        per_step_text(cells, ref, "stdout"),
        per_step_text(cells, ref, "stderr"),
        _printed(cells, ref, ("parameters",), "stdout"),
    )
    if error is not None:
        failed = _failed_cell(ref)
        result.error, result.error_name = error, name
        if failed is not None:
            cell = cells[failed]
            result.error_cell = cell.index
            result.error_step = ", ".join(cell.steps) if cell.steps else cell.role
    return result


@dataclass
class TaskLog:
    """What one kfp.local task printed, without kfp's own lines."""

    status: str = "UNFINISHED"
    lines: list[str] = field(default_factory=list)


def _json_block_lines(lines: list[str], start: int) -> int:
    """How many lines, from `start`, hold the JSON document kfp's executor logs there.

    It is indented JSON: the document ends at the first line that is just `}` (or `{}`).
    """
    block: list[str] = []
    for line in lines[start:]:
        block.append(line[4:] if line.startswith("    ") else line)
        if block[-1].rstrip() in ("}", "{}"):
            break
    try:
        json.loads("\n".join(block))
    except json.JSONDecodeError:
        return 0  # not the JSON we know: keep the lines rather than lose the step's output
    return len(block)


def task_logs(log: str) -> dict[str, TaskLog]:
    """Each task's own printed lines in a kfp.local run.log, by KFP task name.

    kfp.local marks a task with "Executing task '<name>'" ... "Task '<name>' finished with
    status <S>", indents the task's output by four spaces and mixes in its executor's
    "[KFP Executor ...]" lines, one of which is followed by the executor input as JSON.
    """
    lines = _ANSI.sub("", log).splitlines()
    tasks: dict[str, TaskLog] = {}
    current: TaskLog | None = None
    i = 0
    while i < len(lines):
        line, i = lines[i], i + 1
        if match := _EXECUTING.search(line):
            current = tasks[match["task"]] = TaskLog()
        elif match := _FINISHED.search(line):
            tasks.setdefault(match["task"], TaskLog()).status = match["status"]
            current = None
        elif current is not None and not _KFP_LOCAL_LINE.match(line):
            own = line[4:] if line.startswith("    ") else line
            if _KFP_EXECUTOR_LINE.match(own):
                if own.rstrip().endswith("Got executor_input:"):
                    i += _json_block_lines(lines, i)
            else:
                current.lines.append(own)
    return tasks


@dataclass
class Pipeline:
    """One `kale-trace run`: exit code, time, whether it compiled, each task's output."""

    command: list[str]
    seconds: float
    exit_code: int
    compiled: bool
    tasks: dict[str, TaskLog]
    error: str | None  # kale-trace's first `error:` line, if any
    output_tail: list[str]  # its last lines of output
    run_log: str | None = None
    output: str = ""  # all of it


def kale_trace_command() -> list[str]:
    """`kale-trace` as the user runs it: the script installed next to this Python."""
    script = Path(sys.executable).with_name("kale-trace")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kale_trace"]


def _run_with_timeout(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Exit code and merged output; on timeout or Ctrl-C its whole process group is ended."""
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", start_new_session=True,
    ) as child:  # fmt: skip
        try:
            output, _ = child.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            output, _ = child.communicate()
            return -1, output + f"\nerror: benchmark timeout: no result after {RUN_TIMEOUT} s\n"
        except BaseException:  # Ctrl-C does not reach a child in its own session
            os.killpg(child.pid, signal.SIGKILL)
            raise
    return child.returncode, output


def _headline(line: str, notebook: str) -> str:
    """kale-trace's `error: nb.ipynb, cell 3 (...): what` without the parts the row names."""
    return line.removeprefix("error:").strip().removeprefix(notebook).lstrip(":, ")


def run_kale_trace(notebook: Path, outdir: Path, env: dict[str, str]) -> Pipeline:
    """`kale-trace run NOTEBOOK -o OUTDIR` from the notebook's folder, timed."""
    command = [*kale_trace_command(), "run", notebook.name, "-o", str(outdir)]
    started = time.perf_counter()
    code, output = _run_with_timeout(command, notebook.parent, env)
    seconds = time.perf_counter() - started
    # Paths of the working copy mean nothing to the reader: the row names the notebook.
    output = _ANSI.sub("", output).replace(f"{notebook.parent}{os.sep}", "")
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    logs = sorted(outdir.glob("runs/*/run.log"))
    run_log = logs[-1].read_text(encoding="utf-8", errors="replace") if logs else None
    return Pipeline(
        command=command,
        seconds=seconds,
        exit_code=code,
        compiled=code == 0 or (outdir / "dataflow.json").exists(),
        tasks=task_logs(run_log) if run_log is not None else {},
        error=_headline(errors[0], notebook.name) if errors else None,
        output_tail=lines[-15:],
        run_log=str(logs[-1]) if logs else None,
        output=output,
    )


# --- Comparison ---------------------------------------------------------------------------


def normalise(text: str, drop: Iterable[str] = ()) -> list[str]:
    """The lines that must match (rules in the module docstring); `drop`: stderr lines."""
    dropped = set(drop)
    lines: list[str] = []
    after_warning = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if after_warning and line.startswith("  "):
            after_warning = False
            continue  # the source line Python prints under a warning
        after_warning = bool(_WARNING.match(line))
        if not line or after_warning or line in dropped:
            continue
        if any(rule.search(line) for rule in _TIMING):
            continue
        lines.append(line)
    return lines


@dataclass
class StepMatch:
    """One step of the notebook against its task: normalised texts and the verdict."""

    step: str
    task: str | None
    status: str  # the task's status, or "not run"
    matched: bool
    first_difference: dict[str, Any] | None
    notebook: list[str]
    pipeline: list[str]


def first_difference(expected: list[str], actual: list[str]) -> dict[str, Any] | None:
    """The first line (1-based, after normalising) where the two texts part, or None."""
    for i in range(max(len(expected), len(actual))):
        mine = expected[i] if i < len(expected) else None
        theirs = actual[i] if i < len(actual) else None
        if mine != theirs:
            return {"line": i + 1, "notebook": mine, "pipeline": theirs}
    return None


def match_steps(reference: Reference, tasks: dict[str, TaskLog]) -> list[StepMatch]:
    """Each reference step against the task KFP ran for it."""
    steps = list(reference.stdout)
    by_task = {task_name(step): step for step in steps}
    if len(steps) == 1 and len(tasks) == 1:
        by_task = {next(iter(tasks)): steps[0]}  # a notebook with one step: names may differ
    paired = {step: task for task, step in by_task.items() if task in tasks}
    matches = []
    for step in steps:
        expected = normalise(reference.stdout[step])
        task = paired.get(step)
        log = tasks[task] if task else None
        drop = normalise(reference.stderr.get(step, ""))
        actual = normalise("\n".join(log.lines), drop) if log else []
        difference = first_difference(expected, actual) if log else None
        matched = log is not None and log.status == "SUCCESS" and difference is None
        status = log.status if log else "not run"
        matches.append(StepMatch(step, task, status, matched, difference, expected, actual))
    return matches


# --- One notebook, the table --------------------------------------------------------------


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _short(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _is_output_folder(folder: Path) -> bool:
    return (folder / "dataflow.json").exists() or (folder / "run.log").exists()


def find_notebooks(root: Path) -> list[Path]:
    """Every notebook under `root`, not in checkpoints, hidden or kale-trace output folders."""
    found = []
    for path in sorted(root.rglob("*.ipynb")):
        folders = path.relative_to(root).parent.parts
        hidden = any(part.startswith(".") for part in folders)
        outputs = any(
            _is_output_folder(root.joinpath(*folders[: i + 1])) for i in range(len(folders))
        )
        if path.is_file() and not hidden and not outputs:
            found.append(path)
    return found


def _ignore(folder: str, names: list[str]) -> set[str]:
    """What a working copy leaves out: checkpoints, git, kale-trace outputs."""
    skipped = {".ipynb_checkpoints", ".git", ".kale"}
    return {n for n in names if n in skipped or _is_output_folder(Path(folder, n))}


def _fresh_copy(source: Path, work: Path, name: str, nb: NotebookNode | None) -> Path:
    """A pristine copy of the notebook's folder at `work`; `nb`, if given, as the notebook."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(source, work, ignore=_ignore, symlinks=True)
    for folder, _, files in os.walk(work):  # a read-only corpus gives a read-only copy
        for entry in [folder, *(os.path.join(folder, f) for f in files)]:
            if not os.path.islink(entry):
                os.chmod(entry, os.stat(entry).st_mode | stat.S_IWUSR)
    path = work / name
    if nb is not None:
        nbformat.write(nb, str(path))
    return path


def run_environment() -> dict[str, str]:
    """What both runs see: a non-interactive matplotlib and fixed string hashing."""
    return {**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}


def benchmark_notebook(path: Path, root: Path, work_root: Path) -> dict[str, Any]:
    """The notebook run as found (in Kale's order) and by `kale-trace run`, compared."""
    nb = nbformat.read(str(path), as_version=4)
    seed_at = None if seeds_itself(nb) else seed_position(nb)
    written = None
    if seed_at is not None:
        nb = written = with_seed_cell(nb, numpy=importlib.util.find_spec("numpy") is not None)
    env = run_environment()
    work = work_root / (path.parent.name or "notebook")  # the folder's own name, as found
    _fresh_copy(path.parent, work, path.name, written)
    reference = run_reference(nb, work, env, CELL_TIMEOUT)
    if seed_at is not None and reference.error_cell is not None:
        reference.error_cell -= reference.error_cell > seed_at  # the corpus file's numbering
    copied = _fresh_copy(path.parent, work, path.name, written)
    pipeline = run_kale_trace(copied, work_root / ".kale", env)
    steps = match_steps(reference, pipeline.tasks) if pipeline.run_log else []
    result = {
        "notebook": str(path.relative_to(root)),
        "seeded_at": seed_at,
        "reference": asdict(reference),
        "pipeline": {**asdict(pipeline), "tasks": sorted(pipeline.tasks)},
        "steps": [asdict(s) for s in steps],
    }
    result["row"] = table_row(result, reference, pipeline, steps)
    return result


def _run_cell(pipeline: Pipeline) -> str:
    if not pipeline.compiled:
        return "n/a"
    if pipeline.exit_code == 0:
        return "ok"
    failed = [name for name, task in pipeline.tasks.items() if task.status != "SUCCESS"]
    return f"failed: {failed[0]}" if failed else f"failed (exit {pipeline.exit_code})"


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b")


def _run_failure(pipeline: Pipeline) -> str:
    """The exception the failed task's own code raised, else kale-trace's message."""
    for name, task in pipeline.tasks.items():
        if task.status != "SUCCESS":
            raised = [line for line in task.lines if _EXCEPTION_LINE.match(line)]
            if raised:
                return f"{name} raised {_short(raised[-1], 80)}"
    last = pipeline.output_tail[-1] if pipeline.output_tail else "?"
    return f"kale-trace: {_short(pipeline.error or last, 80)}"


def _own_failure(reference: Reference, pipeline: Pipeline) -> list[str]:
    """The notebook's own error, and whether kale-trace failed with the same one."""
    where = ""
    if reference.error_cell is not None:
        where = f" (cell {reference.error_cell}, {reference.error_step})"
    notes = [f"notebook itself fails: {_short(reference.error or '', 80)}{where}"]
    if pipeline.exit_code == 0:
        notes.append("kale-trace does not fail")
    elif reference.error_name and reference.error_name in pipeline.output:
        notes.append(f"kale-trace fails with the same {reference.error_name}")
    else:
        notes.append(f"kale-trace fails otherwise: {_short(pipeline.error or '?', 80)}")
    return notes


def notes_of(
    reference: Reference, pipeline: Pipeline, steps: list[StepMatch], seeded_at: int | None
) -> list[str]:
    """What a reader needs beside the figures: seeding, whose failure it is, what differs."""
    notes = [] if seeded_at is None else [f"seeded (seed cell inserted at {seeded_at})"]
    if reference.error:
        notes += _own_failure(reference, pipeline)
    elif pipeline.compiled and pipeline.exit_code != 0:
        notes.append(_run_failure(pipeline))
    for step in steps:
        if step.first_difference and step.status == "SUCCESS":
            d = step.first_difference
            notes.append(
                f"{step.step} differs at line {d['line']}: "
                f"{_short(repr(d['notebook']), 40)} vs {_short(repr(d['pipeline']), 40)}"
            )
    extra = sorted(set(pipeline.tasks) - {s.task for s in steps})
    if extra:
        notes.append(f"tasks not in the notebook: {', '.join(extra)}")
    return notes


def table_row(
    result: dict[str, Any], reference: Reference, pipeline: Pipeline, steps: list[StepMatch]
) -> dict[str, str]:
    """One row of the table, as text."""
    compiled = "ok" if pipeline.compiled else f"error: {_short(pipeline.error or '?', 100)}"
    matching = f"{sum(s.matched for s in steps)}/{len(steps)}" if steps else "–"
    ran = pipeline.exit_code == 0 and reference.seconds > 0
    ratio = f"{pipeline.seconds / reference.seconds:.1f}x" if ran else "–"  # a failure: no ratio
    return {
        "notebook": result["notebook"],
        "compile": compiled,
        "run": _run_cell(pipeline),
        "steps matching": matching,
        "notebook s": f"{reference.seconds:.1f}",
        "kale-trace s": f"{pipeline.seconds:.1f}",
        "ratio": ratio,
        "notes": "; ".join(notes_of(reference, pipeline, steps, result["seeded_at"])),
    }


def table(rows: list[dict[str, str]]) -> str:
    """The rows as a Markdown table (pasteable into BENCHMARKS.md)."""
    if not rows:
        return "(no notebooks)"
    columns = list(rows[0])
    escape = [{k: v.replace("|", "\\|") for k, v in row.items()} for row in rows]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in escape]
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("kale-trace", "kfp", "nbclient", "ipykernel", "numpy", "pandas", "scikit-learn"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _guarded(path: Path, root: Path, work_root: Path) -> dict[str, Any]:
    """One notebook; a notebook that breaks the benchmark itself is a row, not the end."""
    try:
        return benchmark_notebook(path, root, work_root)
    except Exception as exc:
        traceback.print_exc()
        name = str(path.relative_to(root))
        row = dict.fromkeys(("compile", "run", "steps matching", "notebook s", "kale-trace s"), "–")
        note = f"benchmark failed: {type(exc).__name__}: {_short(_first_line(str(exc)), 80)}"
        return {"notebook": name, "row": {"notebook": name, **row, "ratio": "–", "notes": note}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.corpus",
        description="Run every notebook under DIR as found and as a kale-trace pipeline.",
    )
    parser.add_argument("dir", metavar="DIR", type=Path, help="a folder of notebooks")
    parser.add_argument("--out", type=Path, metavar="FILE.json", help="write every detail here")
    parser.add_argument("--keep", action="store_true", help="keep the working copies")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"{args.dir} is not a folder")
    root = args.dir.resolve()
    notebooks = find_notebooks(root)
    if not notebooks:
        parser.error(f"no notebooks under {args.dir}")
    work_root = Path(tempfile.mkdtemp(prefix="kale-trace-corpus-"))
    started = time.perf_counter()
    results = []
    try:
        for number, path in enumerate(notebooks, 1):
            print(f"corpus: [{number}/{len(notebooks)}] {path.relative_to(root)}", file=sys.stderr)
            results.append(_guarded(path, root, work_root / str(number)))
    finally:
        if args.keep:
            print(f"corpus: working copies kept in {work_root}", file=sys.stderr)
        else:
            shutil.rmtree(work_root, ignore_errors=True)
    seconds = time.perf_counter() - started
    print(table([r["row"] for r in results]))
    print(f"\n{len(results)} notebooks in {seconds:.0f} s", file=sys.stderr)
    if args.out:
        report = {
            "dir": str(root),
            "seconds": seconds,
            "versions": _versions(),
            "notebooks": results,
        }
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
