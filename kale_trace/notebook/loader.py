"""Read a notebook and its tags into the `Notebook` model, as Kale reads it.

Kale's rules, from every release: an untagged cell continues the last *real* cell above it
(a `skip` cell is not one, so the cell after a skip continues the step before it); untagged
cells before the first tag are left out, with a note; a notebook without step tags is one
step. No code cell is ever dropped without a note that names it. Every refusal names the
notebook, the cell (its index in the notebook's cell list, and first line) and the fix.

Kale 2.3's composition: a `notebook:<name>` cell stands for the notebook its `notebook_path`
metadata names (relative to the notebook holding the cell). That notebook is read by the
same rules and its cells take the reference's place, its steps named `<name>_<step>`; its
imports, functions and parameters cells join this pipeline's. The dry run then runs them all
in one kernel, in order, as if the notebooks ran one after the other (which is what the
composition means), and values cross between them by name, as observed. Untagged cells
after a reference belong to the next `step:` cell (a reference is not a step to continue).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nbformat
import networkx as nx

from kale_trace.cellcode import install_lines
from kale_trace.errors import KaleTraceError, display_path
from kale_trace.notebook.metadata import read_config, settings_of
from kale_trace.notebook.model import (
    Cell,
    CellRole,
    Note,
    Notebook,
    PipelineConfig,
    Step,
)
from kale_trace.notebook.parameters import read_parameters
from kale_trace.notebook.plan import make_plan
from kale_trace.notebook.tags import CellTags, normalise_step_name, parse_tags


@dataclass
class _RawCell:
    index: int
    source: str
    tags: tuple[str, ...]
    parsed: CellTags
    notebook_path: str | None = None  # a `notebook:` cell's metadata: the notebook it stands for


@dataclass
class _StepInfo:
    """What the cells of one step say about it, gathered in notebook order."""

    display: str
    prev: list[str] = field(default_factory=list)
    tags: list[CellTags] = field(default_factory=list)


@dataclass
class _Reading:
    cells: list[Cell] = field(default_factory=list)
    steps: dict[str, _StepInfo] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    pending: list[_RawCell] = field(default_factory=list)  # untagged, after a notebook: cell


@dataclass(frozen=True)
class _Source:
    """The notebook being read: its path, as messages show it, and the references above it."""

    path: Path
    where: str
    stack: tuple[Path, ...] = ()


def load_notebook(path: str | Path) -> Notebook:
    """Parse tags and metadata and build the step DAG; raises KaleTraceError on bad input."""
    path = Path(path)
    where = display_path(path)
    nb = _read(path)
    try:
        config, notes = read_config(nb.metadata.get("kubeflow_notebook"), path.stem)
    except KaleTraceError as error:
        raise error.located(notebook=where) from None
    raw = [_raw_cell(i, c, where) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]
    if not raw:
        raise KaleTraceError("the notebook has no code cells", notebook=where, fix="add code cells")
    reading = _assign(raw, _Source(path.resolve(), where, (path.resolve(),)))
    if not reading.cells:
        raise KaleTraceError(
            "no cell of the notebook runs in the pipeline (every code cell is skipped or empty)",
            notebook=where,
            fix="tag the cells of each step step:<name> (or Kale's block:<name>)",
        )
    parameters = read_parameters(reading.cells, where)
    plan = make_plan(reading.cells)
    steps = _steps(reading, plan, config, where)
    if not steps:
        raise KaleTraceError(
            "no cell is tagged as a pipeline step, and every untagged cell belongs to the "
            "imports, functions or parameters cells",
            notebook=where,
            fix="tag the cells of each step step:<name> (or Kale's block:<name>)",
        )
    return Notebook(
        path=path.resolve(),
        cells=tuple(reading.cells),
        steps=tuple(steps),
        dag=_dag(steps, where),
        metadata=dict(nb.metadata.get("kubeflow_notebook") or {}),
        config=config,
        plan=plan,
        parameters=parameters.specs,
        parameters_code=parameters.has_code,
        notes=tuple(notes + reading.notes + parameters.notes),
    )


def _read(path: Path) -> Any:
    where = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise KaleTraceError("the notebook does not exist", notebook=where) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KaleTraceError(f"cannot read the notebook: {exc}", notebook=where) from exc
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = f"{exc.msg} at line {exc.lineno}" if hasattr(exc, "msg") else "nested too deep"
        raise KaleTraceError(
            f"not a notebook: the file is not JSON ({reason})",
            notebook=where,
            fix="pass a .ipynb file saved by Jupyter",
        ) from exc
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        raise KaleTraceError(
            "not a notebook: the JSON has no cells",
            notebook=where,
            fix="pass a .ipynb file saved by Jupyter",
        )
    major = data.get("nbformat")
    if not isinstance(major, int) or major < 4:
        raise KaleTraceError(
            f"notebook format {major} is too old (kale-trace reads format 4)",
            notebook=where,
            fix=f"convert it: jupyter nbconvert --to notebook --inplace {path.name}",
        )
    try:
        return nbformat.from_dict(data) if major == 4 else nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises many types for malformed documents
        raise KaleTraceError(
            f"not a valid notebook: {exc}".splitlines()[0],
            notebook=where,
            fix="open and re-save it in Jupyter",
        ) from exc


def _raw_cell(index: int, cell: Any, where: str) -> _RawCell:
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else str(source)
    tags = (cell.get("metadata") or {}).get("tags", []) or []
    tags = tags if isinstance(tags, list) else [tags]
    try:
        parsed = parse_tags(tags)
    except KaleTraceError as error:
        raise error.located(notebook=where, cell=index, cell_source=source) from None
    reference = (cell.get("metadata") or {}).get("notebook_path")
    reference = reference if isinstance(reference, str) and reference.strip() else None
    return _RawCell(index, source, tuple(str(t) for t in tags), parsed, reference)


def _assign(raw: list[_RawCell], source: _Source) -> _Reading:
    """Give every code cell its role and steps, by Kale's continuation rules."""
    where = source.where
    reading = _Reading()
    has_steps = any(c.parsed.role is CellRole.STEP or c.parsed.notebook for c in raw)
    single = None if has_steps else _single_step_name(source.path.stem)
    current: tuple[CellRole, tuple[str, ...]] | None = None
    before_first: list[_RawCell] = []
    after_reference = False  # untagged cells wait for the next step: cell
    for cell in raw:
        parsed = cell.parsed
        if parsed.skip or parsed.injected:
            continue  # not a real cell: the cell after it continues the one before it
        _note_tags(cell, reading)
        if parsed.notebook is not None:
            _check_pending(reading, where)
            _compose(cell, reading, source)
            current, after_reference = None, True
            continue
        if parsed.role is CellRole.STEP:
            owner = _step_owner(cell, reading, where)
            current = (CellRole.STEP, owner[:1])
            for waiting in reading.pending:  # untagged cells after a reference: this step's
                reading.cells.append(_cell(waiting, current, source))
            reading.pending.clear()
            after_reference = False
        elif parsed.role is not None:
            _check_pending(reading, where)
            owner, current, after_reference = (), (parsed.role, ()), False
        elif single is not None:
            current = (CellRole.STEP, (single,))
            owner = current[1]
            reading.steps.setdefault(single, _StepInfo(single))
        elif current is None:
            if cell.source.strip():
                (reading.pending if after_reference else before_first).append(cell)
            continue
        else:
            owner = current[1]
        _continue_step(cell, current, reading, where)
        if cell.source.strip():  # a blank cell runs nothing; its prev: tags still count
            reading.cells.append(_cell(cell, (current[0], owner), source))
    _check_pending(reading, where)
    _assignment_notes(reading, raw, [c.index for c in before_first], single)
    return reading


def _cell(cell: _RawCell, current: tuple[CellRole, tuple[str, ...]], source: _Source) -> Cell:
    origin = source.where if len(source.stack) > 1 else None  # a referenced notebook's cell
    return Cell(cell.index, cell.source, current[0], current[1], cell.tags, origin)


def _check_pending(reading: _Reading, where: str) -> None:
    """Untagged cells after a `notebook:` cell need a `step:` cell to join: refuse otherwise."""
    if reading.pending:
        first = reading.pending[0]
        raise KaleTraceError(
            "this untagged cell follows a notebook: cell, which is not a step to continue "
            "(Kale 2.3 gives such cells to the next step: cell, and none follows)",
            notebook=where,
            cell=first.index,
            cell_source=first.source,
            fix="tag the cell step:<name>, or skip",
        )


def _compose(cell: _RawCell, reading: _Reading, source: _Source) -> None:
    """Put the referenced notebook's cells and steps where its `notebook:` cell stands."""
    name = str(cell.parsed.notebook)
    located = {"notebook": source.where, "cell": cell.index, "cell_source": cell.source}
    path = _referenced(cell, name, source, located)
    try:
        prefix = normalise_step_name(name)
        nb = _read(path)
    except KaleTraceError as error:
        raise error.located(**located) from None
    sub = _Source(path, display_path(path), (*source.stack, path))
    raw = [
        _raw_cell(i, c, sub.where) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"
    ]
    inner = _assign(raw, sub)
    rename = {step: normalise_step_name(f"{prefix}_{step}") for step in inner.steps}
    for step, info in inner.steps.items():
        if rename[step] in reading.steps:
            raise KaleTraceError(
                f"notebook:{name} brings step '{step}' from {sub.where}, which becomes "
                f"'{rename[step]}', a step this notebook already has",
                fix="rename one of the two steps, or give the notebook: cell another name",
                **located,
            )
        display = f"{name}-{info.display}"
        reading.steps[rename[step]] = replace(
            info, display=display, prev=[rename.get(p, p) for p in info.prev]
        )
    reading.cells.extend(
        replace(c, steps=tuple(rename.get(s, s) for s in c.steps)) for c in inner.cells
    )
    reading.notes.extend(
        replace(n, message=f"{sub.where}: {n.message}", cell=None) for n in inner.notes
    )
    if nb.metadata.get("kubeflow_notebook"):
        reading.notes.append(
            Note(
                f"the pipeline settings (kubeflow_notebook) of {sub.where} are not used: "
                "this notebook's apply to the whole pipeline",
                cell=cell.index,
            )
        )
    steps = ", ".join(rename[s] for s in inner.steps) or "no steps"
    reading.notes.append(
        Note(f"notebook:{name} is {sub.where}: its steps {steps}", cell=cell.index)
    )


def _referenced(cell: _RawCell, name: str, source: _Source, located: dict[str, Any]) -> Path:
    """The notebook a reference stands for; it holds no code and makes no cycle."""
    if cell.source.strip():
        raise KaleTraceError(
            f"a notebook:{name} cell stands for another notebook and runs nothing, but it "
            "holds code",
            fix="move the code to a cell of its own, or into the referenced notebook",
            **located,
        )
    if cell.notebook_path is None:
        raise KaleTraceError(
            f"notebook:{name} names no notebook: the cell's metadata has no notebook_path",
            fix='set the cell metadata "notebook_path" to the notebook\'s path, relative to '
            "this notebook (Kale's panel writes it)",
            **located,
        )
    path = (source.path.parent / cell.notebook_path).resolve()
    if not path.is_file():
        raise KaleTraceError(
            f"notebook:{name} points at {display_path(path)}, which does not exist",
            fix="fix the cell's notebook_path metadata: a path relative to this notebook",
            **located,
        )
    if path in source.stack:
        chain = " -> ".join(p.name for p in (*source.stack, path))
        raise KaleTraceError(
            f"notebook:{name} makes a cycle of references: {chain}",
            fix="a notebook cannot contain itself: remove one of the references",
            **located,
        )
    return path


def _single_step_name(stem: str) -> str:
    try:
        return normalise_step_name(stem)
    except KaleTraceError:
        return "notebook"


def _step_owner(cell: _RawCell, reading: _Reading, where: str) -> tuple[str, ...]:
    names = []
    for display in cell.parsed.steps:
        try:
            name = normalise_step_name(display)
        except KaleTraceError as error:
            raise error.located(notebook=where, cell=cell.index, cell_source=cell.source) from None
        info = reading.steps.setdefault(name, _StepInfo(display))
        if display != info.display and display.strip() != info.display.strip():
            raise KaleTraceError(
                f"step names {info.display!r} and {display!r} both become {name!r}",
                notebook=where,
                cell=cell.index,
                cell_source=cell.source,
                fix="use one spelling for the step, or two clearly different names",
            )
        names.append(name)
    return tuple(names)


def _continue_step(
    cell: _RawCell, current: tuple[CellRole, tuple[str, ...]], reading: _Reading, where: str
) -> None:
    """A cell's prev: and step settings belong to every step it is in (or continues)."""
    role, owner = current
    parsed = cell.parsed
    names = [normalise_step_name(s) for s in parsed.steps] or list(owner)
    if role is not CellRole.STEP or not parsed.has_step_settings:
        return
    for name in names:
        info = reading.steps[name]
        info.tags.append(parsed)
        for display in parsed.prev:
            try:
                prev = normalise_step_name(display)
            except KaleTraceError as error:
                raise error.located(
                    notebook=where, cell=cell.index, cell_source=cell.source
                ) from None
            if prev != name and prev not in info.prev:
                info.prev.append(prev)


def _note_tags(cell: _RawCell, reading: _Reading) -> None:
    parsed = cell.parsed
    if parsed.ignored:
        reading.notes.append(
            Note(
                f"tags {', '.join(parsed.ignored)} ignored: the cell is "
                f"{parsed.role.value if parsed.role else 'special'}, as in Kale",
                cell=cell.index,
            )
        )
    if parsed.unknown:
        reading.notes.append(
            Note(f"unknown tag(s) ignored: {', '.join(parsed.unknown)}", cell.index, True)
        )
    code, packages = install_lines(cell.source)
    if code != cell.source:
        named = ", ".join(packages) or "nothing (no requirement kale-trace can read)"
        reading.notes.append(
            Note(
                "its install lines run in the dry run only; in the pipeline the step installs "
                f"{named} before it starts (packages_to_install) instead of running them",
                cell=cell.index,
            )
        )


def _assignment_notes(
    reading: _Reading, raw: list[_RawCell], before_first: list[int], single: str | None
) -> None:
    if before_first:
        cells = ", ".join(map(str, before_first))
        reading.notes.append(
            Note(
                f"cells {cells} come before the first tagged cell and are left out, as Kale "
                "does (tag them imports, functions or step:<name> to keep them)",
                cell=before_first[0],
                warning=True,
            )
        )
    skipped = [c.index for c in raw if c.parsed.skip and c.source.strip()]
    if skipped:
        reading.notes.append(Note(f"cells {', '.join(map(str, skipped))} are tagged skip"))
    if single is not None:
        reading.notes.append(
            Note(f"no cell has a step tag: the notebook compiles to one step, '{single}'")
        )


def _steps(reading: _Reading, plan: Any, config: PipelineConfig, where: str) -> list[Step]:
    cells: dict[str, list[Cell]] = {name: [] for name in reading.steps}
    for segment in plan:
        if segment.owner in cells:
            cells[segment.owner].extend(segment.cells)
    steps = []
    for name, info in reading.steps.items():
        merged = CellTags()
        for tags in info.tags:
            merged = _merge(merged, tags)
        settings = settings_of(merged, config.step_defaults)
        _check_accelerators(name, settings.limits, cells[name], where)
        steps.append(Step(name, info.display, tuple(cells[name]), tuple(info.prev), settings))
    return [s for s in steps if s.cells or s.prev or any(s.name in t.prev for t in steps)]


def _merge(into: CellTags, tags: CellTags) -> CellTags:
    into.limits.update(tags.limits)
    into.labels.update(tags.labels)
    into.annotations.update(tags.annotations)
    into.secrets.extend(s for s in tags.secrets if s not in into.secrets)
    for key in ("image", "cache", "retries", "report"):
        if getattr(tags, key) is not None:
            setattr(into, key, getattr(tags, key))
    return into


def _check_accelerators(name: str, limits: dict[str, str], cells: list[Cell], where: str) -> None:
    accelerators = [r for r in limits if "/" in r]
    if len(accelerators) > 1:  # KFP gives a task one accelerator type
        first = cells[0] if cells else None
        raise KaleTraceError(
            f"step '{name}' asks for two accelerator types: {', '.join(accelerators)}",
            notebook=where,
            cell=first.index if first else None,
            cell_source=first.source if first else None,
            fix="keep one limit:<vendor>/<resource>:<count> tag per step",
        )


def _dag(steps: list[Step], where: str) -> nx.DiGraph:
    dag = nx.DiGraph()
    dag.add_nodes_from(s.name for s in steps)
    known = {s.name for s in steps}
    for step in steps:
        for prev in step.prev:
            if prev not in known:
                cell = step.cells[0] if step.cells else None
                raise KaleTraceError(
                    f"prev:{prev} names a step that does not exist",
                    notebook=where,
                    step=step.name,
                    cell=cell.index if cell else None,
                    cell_source=cell.source if cell else None,
                    fix=f"use one of the steps: {', '.join(sorted(known))}",
                )
            dag.add_edge(prev, step.name)
    try:
        cycle = nx.find_cycle(dag)
    except nx.NetworkXNoCycle:
        return dag
    names = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
    raise KaleTraceError(
        f"the prev: tags form a cycle: {names}",
        notebook=where,
        step=cycle[0][0],
        fix="remove one prev: tag of the cycle",
    )
