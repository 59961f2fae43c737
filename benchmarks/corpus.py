"""Real notebooks, unchanged: the reference semantics of a notebook run in Kale's order.

`kale_order` is the order Kale runs a notebook's cells in, and which step each cell's output
belongs to: `skip` and papermill `injected-parameters` cells out; `imports`, `functions`,
parameters cells hoisted, in that order; then the other cells in notebook order;
`pipeline-metrics` cells last, as part of the last step.

Seeds: a notebook whose code calls no `seed(` gets a hidden `imports` cell first
(`random.seed(0)`, and `numpy.random.seed(0)` when numpy is importable), inserted just before its
first tagged cell so no untagged cell changes owner.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import nbformat
from nbformat import NotebookNode

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
