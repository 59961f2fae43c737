"""The corpus benchmark: Kale's order (the reference semantics), log reading, the command."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from benchmarks.corpus import (
    WHOLE_NOTEBOOK,
    kale_order,
    seeds_itself,
    step_name,
    task_name,
    with_seed_cell,
)


def _nb(*cells: tuple[list[str], str]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [new_code_cell(source, metadata={"tags": tags}) for tags, source in cells]
    return nb


def _order(nb: nbformat.NotebookNode) -> list[tuple[int, str, tuple[str, ...]]]:
    return [(c.index, c.role, c.steps) for c in kale_order(nb)]


def test_kale_order_hoists_prologue_and_parameters_and_puts_metrics_last():
    nb = _nb(
        ([], "print('before any tag')"),  # before the first tag: dropped
        (["step:Load-Data"], "x = 1"),
        (["skip"], "print('skipped')"),
        ([], "y = x + 1"),  # after a skip cell: continues load_data, not the skip cell
        (["imports"], "import math"),
        ([], "import os"),  # continues the imports cell
        (["functions"], "def f(v):\n    return v"),
        (["pipeline-parameters"], "n = 3"),
        (["block:train", "prev:load_data"], "z = f(y) * n"),
        (["pipeline-metrics"], "print(z)"),
        ([], "print('metrics go on')"),
        (["injected-parameters"], "n = 4"),
        ([], "print('after the injected cell')"),  # continues the metrics cell
        (["step:"], "w = 0"),  # an empty step tag is no tag: continues the metrics cell
        (["imports"], "import sys"),
    )
    assert _order(nb) == [
        (4, "imports", ()),
        (5, "imports", ()),
        (14, "imports", ()),
        (6, "functions", ()),
        (7, "parameters", ()),
        (1, "step", ("load_data",)),
        (3, "step", ("load_data",)),
        (8, "step", ("train",)),
        (9, "metrics", ("train",)),
        (10, "metrics", ("train",)),
        (12, "metrics", ("train",)),
        (13, "metrics", ("train",)),
    ]


def test_a_notebook_without_step_tags_is_one_step_after_its_parameters():
    nb = _nb(
        ([], "print('first')"),
        (["parameters"], "msg = None"),
        ([], "print(msg)"),
        (["imports"], "import json"),
        ([], ""),
    )
    assert _order(nb) == [
        (3, "imports", ()),
        (1, "parameters", ()),
        (0, "step", (WHOLE_NOTEBOOK,)),
        (2, "step", (WHOLE_NOTEBOOK,)),
    ]


def test_step_names_are_normalised_and_a_cell_may_belong_to_several_steps():
    assert step_name(" Data Loading!! v2 ") == "data_loading_v2"
    assert task_name("data_loading_v2") == "data-loading-v2"
    nb = _nb((["block:Prep;train", "block:train"], "a = 1"), ([], "b = 2"))
    assert _order(nb) == [(0, "step", ("prep", "train")), (1, "step", ("prep", "train"))]


def test_the_seed_cell_goes_before_the_first_tagged_cell_and_changes_no_owner():
    nb = _nb(
        ([], "!pip install pandas"), (["skip"], "x = 0"), (["step:a"], "import random")
    )  # fmt: skip
    assert not seeds_itself(nb)
    seeded = with_seed_cell(nb, numpy=True)
    assert [c.source.splitlines()[0] for c in seeded.cells] == [
        "!pip install pandas", "x = 0", "import random", "import random",
    ]  # fmt: skip
    assert seeded.cells[2].metadata["tags"] == ["imports"]
    assert "numpy.random.seed(0)" in seeded.cells[2].source
    assert _order(seeded) == [(2, "imports", ()), (3, "step", ("a",))]
    assert len(nb.cells) == 3  # the notebook given is left alone
    untagged = with_seed_cell(_nb(([], "print(1)")), numpy=False)
    assert untagged.cells[-1].source == "import random\nrandom.seed(0)"
    assert _order(untagged) == [(1, "imports", ()), (0, "step", (WHOLE_NOTEBOOK,))]
    assert seeds_itself(_nb((["step:a"], "np.random.seed (1)")))
    assert seeds_itself(_nb((["skip"], "torch.manual_seed(1)")))
    assert not seeds_itself(_nb((["step:a"], "fit(random_state=42)")))
