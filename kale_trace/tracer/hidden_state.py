"""Process state a step inherits from earlier steps in the notebook, but not in a pipeline.

Global random generators travel with the data: a step that draws from a generator an
earlier step left behind receives that step's final state and restores it before its own
cells, so it draws the notebook's numbers (a step that seeds before drawing needs nothing).
Where that cannot hold (a step split around another one that draws), and for the working
directory, environment variables and pyplot's current figure, a warning names the step.

Settings (pandas options, numpy print options, the decimal context, torch's defaults) are
values, not state that moves: each step is given the ones in effect when it started in the
notebook, and sets them after its imports cells.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kale_trace.executor.dryrun import PARAMETERS, PROLOGUE, DryRun, Segment
from kale_trace.marshal import RNG_STATE
from kale_trace.tracer.flows import Flow, StepFlow
from kale_trace.tracer.process_state import KERNEL_DEFAULTS

RNG_KEYS = ("random", "numpy.random", "torch.random")  # global generators a step may draw from
_SETUP = (PROLOGUE, PARAMETERS)  # rerun by every step, so never a producer


def rng_flows(run: DryRun, steps: dict[str, StepFlow], warnings: list[dict[str, str]]) -> None:
    """Give each step that draws from a global generator the state the notebook left it."""
    before: dict[str, Any] = dict(run.baseline.get("hidden", {}))
    changer: dict[str, tuple[str, int]] = {}  # generator -> (owner, segment index) last to move it
    for index, segment in enumerate(run.segments):
        hidden = segment.probe.get("hidden", {})
        for key in (k for k in RNG_KEYS if k in hidden):
            moved = key in before and before[key] != hidden[key]
            if moved and segment.step not in _SETUP:
                depends = key not in segment.probe.get("seeded_first", [])
                if depends and key in changer:
                    _receive(run, steps, key, changer[key], index, warnings)
            if moved or key not in before:
                changer[key] = (segment.step, index)
            before[key] = hidden[key]


def carry_settings(run: DryRun, steps: dict[str, StepFlow]) -> None:
    """Give each step the settings the kernel had when the step's first cell ran."""
    before = run.baseline.get("hidden", {}).get("settings", {})
    started: set[str] = set()
    for segment in run.segments:
        after = segment.probe.get("hidden", {}).get("settings", before)
        step = steps.get(segment.step)
        if step is not None and segment.step not in started:
            step.settings = {name: dict(values) for name, values in before.items()}
            # A module the step imports itself gets the kernel's defaults where a plain
            # process would choose others: set before the step's cells, the import is then
            # a no-op and the option holds.
            for module, keys in KERNEL_DEFAULTS.items():
                if module in after and module not in before:
                    kept = {k: after[module][k] for k in keys if k in after[module]}
                    step.settings[module] = kept
            step.settings = {m: values for m, values in step.settings.items() if values}
            started.add(segment.step)
        before = after


def _receive(
    run: DryRun,
    steps: dict[str, StepFlow],
    key: str,
    producer: tuple[str, int],
    index: int,
    warnings: list[dict[str, str]],
) -> None:
    owner, at = producer
    consumer = run.segments[index].step
    if owner in _SETUP:
        return  # the prologue runs again in the step: it leaves the same state there
    if owner == consumer:
        return  # the step's own earlier cells, run just before these in its container
    if _moved_later(run, key, owner, at) or _moved_earlier(run, key, consumer, index):
        warnings.append(_split_warning(consumer, owner, key))
        return
    flow = Flow(key, owner, consumer, _rng_info(key), RNG_STATE.name, "trace")
    if all(f.variable != key for f in steps[consumer].inputs):
        steps[consumer].inputs.append(flow)


def _moved_later(run: DryRun, key: str, owner: str, at: int) -> bool:
    """The producer moves the generator again after the consumer read it: its final state,
    the one it can pass on, is not the one the consumer saw."""
    return any(_moves(run, s, key) for s in run.segments[at + 1 :] if s.step == owner)


def _moved_earlier(run: DryRun, key: str, consumer: str, index: int) -> bool:
    """The consumer already drew in an earlier run of its cells, which its container runs
    right before these: they would continue that stream, not the producer's."""
    return any(_moves(run, s, key) for s in run.segments[:index] if s.step == consumer)


def _moves(run: DryRun, segment: Segment, key: str) -> bool:
    index = run.segments.index(segment)
    previous = run.segments[index - 1].probe if index else run.baseline
    return previous.get("hidden", {}).get(key) != segment.probe.get("hidden", {}).get(key)


def _rng_info(key: str) -> dict[str, Any]:
    return {"type": f"{key} global state", "mro": [], "kind": "rng", "generator": key}


def _split_warning(consumer: str, owner: str, key: str) -> dict[str, str]:
    return {
        "step": consumer,
        "variable": key,
        "message": f"steps '{owner}' and '{consumer}' draw from the global {key} generator "
        "in interleaved cells (one of them is split around the other), so the pipeline "
        "cannot give each the notebook's numbers; seed inside each step, or use an explicit "
        "generator (np.random.default_rng(seed))",
    }


def check_process_state(run: DryRun, warnings: list[dict[str, str]]) -> None:
    """The working directory and environment variables a step changes for later steps."""
    before: dict[str, Any] = dict(run.baseline.get("hidden", {}))
    for segment in run.segments:
        hidden = segment.probe.get("hidden", {})
        step = segment.step
        if step not in _SETUP and "cwd" in before and hidden.get("cwd") != before["cwd"]:
            warnings.append(_process_warning(step, "cwd", "changes the working directory"))
        old, new = before.get("environ", {}), hidden.get("environ", {})
        if step not in _SETUP and isinstance(old, dict) and isinstance(new, dict):
            changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
            changed -= set(segment.probe.get("env_set_by_imports", []))
            if changed:
                names = ", ".join(sorted(changed)[:10])
                warnings.append(
                    _process_warning(step, "environ", f"changes environment variables {names}")
                )
        added = set(hidden.get("builtins", [])) - set(before.get("builtins", []))
        if step not in _SETUP and added:
            names = ", ".join(sorted(added)[:10])
            warnings.append(_process_warning(step, "builtins", f"changes builtins {names}"))
        before.update(hidden)


def _process_warning(step: str, variable: str, what: str) -> dict[str, str]:
    return {
        "step": step,
        "variable": variable,
        "message": f"step '{step}' {what}; later steps run in fresh processes and will not "
        "see the change (do it in the imports cell, which every step runs)",
    }


def check_split_steps(run: DryRun, warnings: list[dict[str, str]]) -> None:
    seen: list[str] = []
    for segment in run.segments:
        if segment.step in _SETUP:
            continue
        if segment.step in seen and seen[-1] != segment.step:
            warnings.append(
                {
                    "step": segment.step,
                    "variable": "",
                    "message": f"the cells of step '{segment.step}' are not contiguous in the "
                    "notebook; the pipeline runs them together, after the cells in between",
                }
            )
        seen.append(segment.step)


def check_pyplot(
    run: DryRun,
    uses: Callable[[int, str], bool],
    warnings: list[dict[str, str]],
) -> None:
    """A step drawing on a figure that an earlier step opened: pyplot's current figure is
    process state, and in the pipeline each step starts with none. `uses(index, module)`
    says whether the code of segment `index` uses that module."""
    owners: dict[int, str] = {}  # open figure number -> step that opened it
    for index, segment in enumerate(run.segments):
        figures = segment.probe.get("hidden", {}).get("pyplot.figures")
        if figures is None:
            continue
        step = segment.step
        inherited = sorted({owner for owner in owners.values() if owner != step})
        if inherited and step not in _SETUP:
            if uses(index, "matplotlib.pyplot"):
                warnings.append(
                    {
                        "step": step,
                        "variable": "matplotlib.pyplot",
                        "message": f"step '{step}' uses pyplot while figures opened by step "
                        f"'{inherited[-1]}' are current; in the pipeline it starts with no "
                        "figure (draw and save each figure in one step, or pass the Figure "
                        "object: fig = plt.figure())",
                    }
                )
        owners = {number: owners.get(number, step) for number in figures}
