"""Read a notebook and its tags into the `Notebook` model, refusing what cannot compile.

Every refusal names the notebook, the cell (its index as Jupyter shows it, and first line)
and what to do about it.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import networkx as nx

from kale_trace.errors import KaleTraceError
from kale_trace.notebook.model import Cell, CellRole, Notebook, Step, StepSettings
from kale_trace.notebook.settings import check_image, parse_volumes
from kale_trace.notebook.tags import CellTags, normalise_step_name, parse_tags

KNOWN_METADATA = {
    "pipeline_name", "pipeline_description", "experiment_name", "experiment", "base_image",
    "docker_image", "volumes", "katib_run", "katib_metadata", "steps_defaults", "autosnapshot",
    "snapshot_volumes", "storage_class_name", "volume_access_mode", "kfp_host",
    "enable_caching", "timeout",
}  # fmt: skip


def load_notebook(path: str | Path) -> Notebook:
    """Parse tags and metadata and build the step DAG; raises KaleTraceError on bad input."""
    path = Path(path)
    nb = _read(path)
    where = str(path)
    metadata = dict(nb.metadata.get("kubeflow_notebook", {}) or {})
    unknown = sorted(set(metadata) - KNOWN_METADATA)
    if unknown:
        raise KaleTraceError(
            f"unknown kubeflow_notebook metadata key(s): {', '.join(unknown)}",
            notebook=where,
            fix=f"use only: {', '.join(sorted(KNOWN_METADATA))}",
        )
    defaults = _check_settings_metadata(metadata, where)
    code_cells = [(i, c) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]
    if not code_cells:
        raise KaleTraceError(
            "the notebook has no code cells", notebook=where, fix="add tagged code cells"
        )

    cells: list[Cell] = []
    parsed_by_cell: dict[int, CellTags] = {}
    current: tuple[CellRole, str | None] | None = None
    for index, raw in code_cells:
        source = raw.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        tags = raw.get("metadata", {}).get("tags", []) or []
        if not isinstance(tags, list):
            tags = [tags]
        try:
            parsed = parse_tags(tags)
        except KaleTraceError as error:
            raise error.located(notebook=where, cell=index, cell_source=source) from None
        if parsed.role is not None:
            step = parsed.step
            if parsed.role is CellRole.STEP:
                try:
                    step = normalise_step_name(parsed.step or "")
                except KaleTraceError as error:
                    raise error.located(notebook=where, cell=index, cell_source=source) from None
            current = (parsed.role, step)
        elif not source.strip():
            continue
        elif current is None or current[0] in (
            CellRole.PARAMETERS,
            CellRole.METRICS,
            CellRole.INJECTED,
            CellRole.SKIP,
        ):
            if current is not None and current[0] in (CellRole.SKIP, CellRole.INJECTED):
                continue  # continuation of a skipped cell stays skipped
            raise KaleTraceError(
                "this untagged cell does not follow an imports, functions or step cell, so it "
                "belongs to no step",
                notebook=where,
                cell=index,
                cell_source=source,
                fix="tag it imports, functions, step:<name> or skip",
            )
        role, step = current
        if not source.strip() and parsed.role in (None, CellRole.STEP):
            if not parsed.prev:
                continue
        parsed_by_cell[index] = parsed
        cells.append(
            Cell(
                index, source, role, step if role is CellRole.STEP else None, tuple(map(str, tags))
            )
        )

    _check_parameters(cells, where)
    steps = _steps(cells, parsed_by_cell, where, defaults)
    if not steps:
        raise KaleTraceError(
            "no cell is tagged as a pipeline step",
            notebook=where,
            fix="tag the cells of each step step:<name> (or Kale's block:<name>)",
        )
    dag = nx.DiGraph()
    dag.add_nodes_from(s.name for s in steps)
    for step in steps:
        for prev in step.prev:
            dag.add_edge(prev, step.name)
    try:
        cycle = nx.find_cycle(dag)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        names = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise KaleTraceError(
            f"the prev: tags form a cycle: {names}",
            notebook=where,
            step=cycle[0][0],
            fix="remove one prev: tag of the cycle",
        )
    return Notebook(
        path=path.resolve(),
        cells=tuple(cells),
        steps=tuple(steps),
        dag=dag,
        metadata=metadata,
        pipeline_name=_pipeline_name(metadata.get("pipeline_name") or path.stem, where),
    )


def _read(path: Path) -> Any:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise KaleTraceError("the notebook does not exist", notebook=where) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KaleTraceError(f"cannot read the notebook: {exc}", notebook=where) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KaleTraceError(
            f"not a notebook: the file is not JSON ({exc.msg} at line {exc.lineno})",
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
        return nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises many types for malformed documents
        raise KaleTraceError(
            f"not a valid notebook: {exc}".splitlines()[0],
            notebook=where,
            fix="open and re-save it in Jupyter",
        ) from exc


def _check_parameters(cells: list[Cell], where: str) -> None:
    params = [c for c in cells if c.role is CellRole.PARAMETERS]
    if len(params) > 1:
        raise KaleTraceError(
            f"two parameters cells (cells {params[0].index} and {params[1].index})",
            notebook=where,
            cell=params[1].index,
            cell_source=params[1].source,
            fix="keep all parameters in one cell tagged pipeline-parameters (or parameters)",
        )
    for cell in params:
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as exc:
            raise KaleTraceError(
                f"the parameters cell is not valid Python: {exc.msg} (line {exc.lineno})",
                notebook=where,
                cell=cell.index,
                cell_source=cell.source,
                fix="write plain assignments such as `rows = 100`",
            ) from exc
        for stmt in tree.body:
            simple = isinstance(stmt, ast.Assign) and all(
                isinstance(t, ast.Name) for t in stmt.targets
            )
            annotated = isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            if not (simple or annotated):
                statement = ast.get_source_segment(cell.source, stmt)
                raise KaleTraceError(
                    "the parameters cell may only assign values to names (line "
                    f"{stmt.lineno} is not an assignment: {statement})",
                    notebook=where,
                    cell=cell.index,
                    cell_source=cell.source,
                    fix="move imports and other code to an imports cell or a step",
                )
            names = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for name in (t.id for t in names if isinstance(t, ast.Name)):
                if not _KFP_PARAMETER_NAME.fullmatch(name):
                    raise KaleTraceError(
                        f"parameter name '{name}' is not allowed by KFP (a pipeline parameter "
                        "name starts with an ASCII letter and has only letters, digits and _)",
                        notebook=where,
                        cell=cell.index,
                        cell_source=cell.source,
                        fix=f"rename '{name}' in the parameters cell, e.g. to 'p{name}'",
                    )


_KFP_PARAMETER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _check_settings_metadata(metadata: dict[str, Any], where: str) -> CellTags:
    """Validate the metadata that shapes every step; returns `steps_defaults` as tags.

    Kale's `steps_defaults` is a list of step tags (limit:, label:, annotation:, secret:,
    image:, cache:, retries:) applied to every step; a step's own tags win.
    """
    for key in ("base_image", "docker_image"):
        if metadata.get(key):
            try:
                check_image(metadata[key], f"kubeflow_notebook.{key}")
            except KaleTraceError as error:
                raise error.located(notebook=where) from None
    parse_volumes(metadata, where)
    caching = metadata.get("enable_caching")
    if caching is not None and not isinstance(caching, bool):
        raise KaleTraceError(
            f"kubeflow_notebook.enable_caching is {caching!r}",
            notebook=where,
            fix="set it to true or false",
        )
    raw = metadata.get("steps_defaults") or []
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise KaleTraceError(
            "kubeflow_notebook.steps_defaults must be a list of step tags",
            notebook=where,
            fix='write e.g. "steps_defaults": ["label:team:ml", "limit:memory:4Gi"]',
        )
    try:
        defaults = parse_tags(raw)
    except KaleTraceError as error:
        error.message = f"kubeflow_notebook.steps_defaults: {error.message}"
        raise error.located(notebook=where) from None
    if defaults.role is not None or defaults.prev:
        raise KaleTraceError(
            "kubeflow_notebook.steps_defaults may only hold limit:, label:, annotation:, "
            "secret:, image:, cache: and retries: tags",
            notebook=where,
            fix="tag steps and their order on the cells themselves",
        )
    return defaults


def _steps(
    cells: list[Cell], parsed: dict[int, CellTags], where: str, defaults: CellTags
) -> list[Step]:
    order: list[str] = []
    display: dict[str, str] = {}
    members: dict[str, list[Cell]] = {}
    prevs: dict[str, list[str]] = {}
    settings: dict[str, dict[str, Any]] = {}
    for cell in cells:
        tags = parsed[cell.index]
        if cell.role is not CellRole.STEP or cell.step is None:
            if tags.prev and cell.role is CellRole.FUNCTIONS:
                continue  # Kale allows prev: on functions cells; it orders nothing
            continue
        name = cell.step
        if name not in members:
            order.append(name)
            members[name] = []
            prevs[name] = []
            settings[name] = {"limits": {}, "labels": {}, "annotations": {}, "secrets": []}
            display[name] = tags.step or name
        elif tags.step and tags.step != display[name] and normalise_step_name(tags.step) == name:
            if tags.step not in (display[name],):
                raise KaleTraceError(
                    f"step names {display[name]!r} and {tags.step!r} both become {name!r}",
                    notebook=where,
                    cell=cell.index,
                    cell_source=cell.source,
                    fix="use one spelling for the step, or two clearly different names",
                )
        members[name].append(cell)
        for prev in tags.prev:
            try:
                normal = normalise_step_name(prev)
            except KaleTraceError as error:
                raise error.located(
                    notebook=where, cell=cell.index, cell_source=cell.source
                ) from None
            if normal not in prevs[name] and normal != name:
                prevs[name].append(normal)
        s = settings[name]
        s["limits"].update(tags.limits)
        s["labels"].update(tags.labels)
        s["annotations"].update(tags.annotations)
        s["secrets"].extend(tags.secrets)
        for key in ("image", "cache", "retries"):
            if getattr(tags, key) is not None:
                s[key] = getattr(tags, key)
    for name in order:
        for prev in prevs[name]:
            if prev not in members:
                cell = next(c for c in members[name] if prev in map(_norm, parsed[c.index].prev))
                raise KaleTraceError(
                    f"prev:{prev} names a step that does not exist",
                    notebook=where,
                    cell=cell.index,
                    cell_source=cell.source,
                    fix=f"use one of the steps: {', '.join(order)}",
                )
        accelerators = [r for r in {**defaults.limits, **settings[name]["limits"]} if "/" in r]
        if len(accelerators) > 1:  # KFP gives a task one accelerator type
            cell = members[name][0]
            raise KaleTraceError(
                f"step '{name}' asks for two accelerator types: {', '.join(accelerators)}",
                notebook=where,
                cell=cell.index,
                cell_source=cell.source,
                fix="keep one limit:<vendor>/<resource>:<count> tag per step",
            )
    return [
        Step(
            name=name,
            display_name=display[name],
            cells=tuple(members[name]),
            prev=tuple(prevs[name]),
            settings=StepSettings(
                limits={**defaults.limits, **settings[name]["limits"]},
                image=settings[name].get("image", defaults.image),
                labels={**defaults.labels, **settings[name]["labels"]},
                annotations={**defaults.annotations, **settings[name]["annotations"]},
                secrets=tuple(dict.fromkeys([*defaults.secrets, *settings[name]["secrets"]])),
                cache=settings[name].get("cache", defaults.cache),
                retries=settings[name].get("retries", defaults.retries),
            ),
        )
        for name in order
    ]


def _norm(name: str) -> str:
    try:
        return normalise_step_name(name)
    except KaleTraceError:
        return name


def _pipeline_name(raw: str, where: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", str(raw).lower()).strip("-")
    if not name:
        raise KaleTraceError(
            f"pipeline name {raw!r} has no letters or digits",
            notebook=where,
            fix="set kubeflow_notebook.pipeline_name in the notebook metadata",
        )
    return name
