"""Process state a step inherits from earlier steps in the notebook, but not in a pipeline.

Global RNG states, the working directory, environment variables and pyplot's current figure
are shared by every cell of a notebook; each pipeline step starts a fresh process. These
checks turn such hidden dependencies into warnings naming the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kale_trace.executor.dryrun import PARAMETERS, PROLOGUE, DryRun

_RNG_KEYS = ("random", "numpy.random", "torch.random")  # global generators a step may draw from
_RNG_FIX = "seed inside this step, or use an explicit generator (np.random.default_rng(seed))"


def check_hidden_state(run: DryRun, warnings: list[dict[str, str]]) -> None:
    """Global state a step inherits from earlier steps in the notebook but not in a pipeline."""
    before: dict[str, Any] = dict(run.baseline.get("hidden", {}))
    touched: dict[str, str] = {}  # hidden key -> last step (or prologue) that changed it
    for segment in run.segments:
        hidden = segment.probe.get("hidden", {})
        for key, value in hidden.items():
            if key in before and before[key] != value:
                previous = touched.get(key)
                step = segment.step
                if key in _RNG_KEYS and previous and previous != step:
                    if step not in (PROLOGUE, PARAMETERS):
                        warnings.append(
                            {
                                "step": step,
                                "variable": key,
                                "message": f"step '{step}' draws from the global {key} state that "
                                f"'{previous}' left behind; in the pipeline it starts from a fresh "
                                f"state, so its numbers differ from the notebook's ({_RNG_FIX})",
                            }
                        )
                elif key in ("cwd", "environ") and step not in (PROLOGUE, PARAMETERS):
                    warnings.append(
                        {
                            "step": step,
                            "variable": key,
                            "message": f"step '{step}' changes the process's "
                            f"{'working directory' if key == 'cwd' else 'environment variables'}; "
                            "later steps run in fresh processes and will not see the change",
                        }
                    )
                touched[key] = step
            before[key] = value


def check_split_steps(run: DryRun, warnings: list[dict[str, str]]) -> None:
    seen: list[str] = []
    for segment in run.segments:
        if segment.step in (PROLOGUE, PARAMETERS):
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
        if inherited and step not in (PROLOGUE, PARAMETERS):
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
