"""The corpus benchmark: Kale's order (the reference semantics), log reading, the command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, write_notebook
from nbformat.v4 import new_code_cell, new_notebook

from benchmarks.corpus import (
    WHOLE_NOTEBOOK,
    Pipeline,
    Reference,
    TaskLog,
    find_notebooks,
    kale_order,
    main,
    match_steps,
    normalise,
    seeds_itself,
    step_name,
    table,
    table_row,
    task_logs,
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


def test_normalise_drops_blank_timing_and_warning_lines_only():
    text = (
        "loss 0.25   \n\n"
        "CPU times: user 1 s\nWall time: 2 s\n100%|####| 3/3 [00:01<00:00, 2.1it/s]\n"
        "Training time: 0.285s\nit took 1.50 seconds\n"
        "/tmp/ipykernel_1/2.py:3: FutureWarning: old\n  df.append(x)\n"
        "time is money\nnoise from stderr\nthe end"
    )
    assert normalise(text, drop=["noise from stderr"]) == ["loss 0.25", "time is money", "the end"]
    assert normalise("  indented\nnoise from stderr") == ["  indented", "noise from stderr"]


_LOG = """\
07:25:49.622 - INFO - Running pipeline: 'p'
--------------------------------------------------------------------------------
07:25:49.633 - INFO - Executing task 'load-data'
07:25:49.633 - INFO - Streamed logs:

    [KFP Executor 2026-12-02 07:25:49,763 INFO]: Looking for component `load_data` in x.py
    [KFP Executor 2026-12-02 07:25:49,772 INFO]: Got executor_input:
    {
        "inputs": {"parameterValues": {"text": "} not the end {"}},
        "outputs": {}
    }
    (569, 31)
      indented by the step
    [KFP Executor 2026-12-02 07:25:52,565 INFO]: Wrote executor output file to x.json.

07:25:53.219 - INFO - Task 'load-data' finished with status SUCCESS
07:25:53.220 - INFO - Task 'load-data' outputs:
    df: Dataset( name='df',
--------------------------------------------------------------------------------
07:25:53.229 - INFO - Executing task 'train'
07:25:53.230 - INFO - Streamed logs:

    [KFP Executor 2026-12-02 07:25:53,366 INFO]: Got executor_input:
    {}
    \x1b[31mTraceback (most recent call last):\x1b[0m
    ValueError: bad
07:25:58.393 - ERROR - Task 'train' finished with status FAILURE
"""


def test_task_logs_keep_only_what_each_step_printed():
    tasks = task_logs(_LOG)
    assert list(tasks) == ["load-data", "train"]
    assert tasks["load-data"].status == "SUCCESS"
    assert [line for line in tasks["load-data"].lines if line] == [
        "(569, 31)",
        "  indented by the step",
    ]
    assert tasks["train"].status == "FAILURE"
    assert [line for line in tasks["train"].lines if line] == [
        "Traceback (most recent call last):",
        "ValueError: bad",
    ]


def test_match_steps_pairs_by_task_name_and_reports_the_first_difference():
    reference = Reference(
        1.0,
        stdout={"load_data": "a\nb\n", "train": "c\n", "report": "d\n"},
        stderr={"load_data": "UserWarning text\n"},
    )
    tasks = {
        "load-data": TaskLog("SUCCESS", ["a", "UserWarning text", "b"]),
        "train": TaskLog("SUCCESS", ["c", "extra"]),
    }
    load, train, report = match_steps(reference, tasks)
    assert (load.matched, load.task, load.first_difference) == (True, "load-data", None)
    assert not train.matched
    assert train.first_difference == {"line": 2, "notebook": None, "pipeline": "extra"}
    assert (report.matched, report.status) == (False, "not run")
    one = Reference(1.0, stdout={WHOLE_NOTEBOOK: "x\n"}, stderr={})
    (only,) = match_steps(one, {"simple-execute": TaskLog("SUCCESS", ["x"])})
    assert only.matched and only.task == "simple-execute"


def _pipeline(code: int, compiled: bool, tasks: dict[str, TaskLog], error: str | None) -> Pipeline:
    lines = [f"error: {error}"]
    return Pipeline(["kale-trace"], 6.0, code, compiled, tasks, error, lines, output=lines[0])


def test_rows_say_whose_failure_it_is():
    fine = Reference(2.0, stdout={"a": "x\n", "b": "y\n"}, stderr={})
    tasks = {
        "a": TaskLog("SUCCESS", ["x"]),
        "b": TaskLog("FAILURE", ["y", "Traceback (most recent call last):", "OSError: gone"]),
    }
    failed = _pipeline(1, True, tasks, "step 'b': the pipeline failed in this step")
    row = table_row({"notebook": "n.ipynb", "seeded_at": None}, fine, failed,
                    match_steps(fine, failed.tasks))  # fmt: skip
    assert (row["compile"], row["run"], row["steps matching"]) == ("ok", "failed: b", "1/2")
    assert (row["ratio"], row["notes"]) == ("–", "b raised OSError: gone")
    broken = Reference(1.0, stdout={"a": ""}, stderr={}, error="KeyError: 'k'",
                       error_name="KeyError", error_cell=3, error_step="a")  # fmt: skip
    refused = _pipeline(1, False, {}, "cell 4: the cell raised KeyError: 'k'")
    row = table_row({"notebook": "m.ipynb", "seeded_at": 2}, broken, refused, [])
    assert (row["compile"], row["run"], row["steps matching"]) == (
        "error: cell 4: the cell raised KeyError: 'k'", "n/a", "–",
    )  # fmt: skip
    assert row["notes"] == (
        "seeded (seed cell inserted at 2); notebook itself fails: KeyError: 'k' (cell 3, a); "
        "kale-trace fails with the same KeyError"
    )
    ok = table_row({"notebook": "o|k.ipynb", "seeded_at": None}, fine,
                   _pipeline(0, True, {"a": tasks["a"]}, None), [])  # fmt: skip
    assert ok["ratio"] == "3.0x" and "o\\|k.ipynb" in table([ok])


def test_find_notebooks_skips_checkpoints_hidden_and_output_folders(tmp_path: Path):
    for rel in ("a/nb.ipynb", "a/.ipynb_checkpoints/nb-checkpoint.ipynb", "b/sub/deep.ipynb",
                "a/.kale/copy.ipynb", "out/x.ipynb"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    (tmp_path / "out" / "dataflow.json").write_text("{}")
    found = [p.relative_to(tmp_path).as_posix() for p in find_notebooks(tmp_path)]
    assert found == ["a/nb.ipynb", "b/sub/deep.ipynb"]


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    for argv in ([str(tmp_path / "missing")], [str(tmp_path)], []):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    assert "no notebooks under" in capsys.readouterr().err


def test_a_notebook_that_breaks_the_benchmark_is_a_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "broken.ipynb").write_text("not a notebook")
    assert main([str(tmp_path)]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if "broken.ipynb" in line]
    assert row.startswith("| broken/broken.ipynb | – | – | – |")
    assert "benchmark failed: NotJSONError" in row
    assert (tmp_path / "broken" / "broken.ipynb").read_text() == "not a notebook"


def _corpus(root: Path) -> dict[str, bytes]:
    """Two notebooks: one kale-trace runs, one whose own code raises."""
    (root / "good").mkdir(parents=True)
    (root / "good" / "numbers.txt").write_text("3 4 8\n")
    load = (
        'with open("numbers.txt") as f:\n'
        "    numbers = [int(v) for v in f.read().split()]\n"
        'print("read", len(numbers), "numbers")'
    )
    summary = 'print("mean", statistics.mean(numbers))\nprint("draw", random.randint(0, 10**6))'
    write_notebook(root / "good" / "good.ipynb", [
        ("step:load", load),
        ("imports", "import random\nimport statistics"),
        ("skip", 'print("not in the pipeline")'),
        (["step:summary", "prev:load"], summary),
    ])  # fmt: skip
    (root / "bad").mkdir()
    write_notebook(root / "bad" / "bad.ipynb", [
        ("step:first", 'print("fine so far")'),
        (["step:boom", "prev:first"], 'values = {}\nprint(values["missing"])'),
    ])  # fmt: skip
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_command_prints_the_table_and_leaves_the_corpus_alone(tmp_path: Path):
    corpus = tmp_path / "corpus"
    before = _corpus(corpus)
    out = tmp_path / "corpus.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.corpus", str(corpus), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ") for line in result.stdout.splitlines()
    }
    good, bad = rows["good/good.ipynb"], rows["bad/bad.ipynb"]
    assert good[1:4] == ["ok", "ok", "2/2"], good
    assert "seeded (seed cell inserted at 0)" in good[7]
    assert bad[1].startswith("error: ") and bad[2:4] == ["n/a", "–"], bad
    assert "notebook itself fails: KeyError: 'missing' (cell 1, boom)" in bad[7]
    assert "kale-trace fails with the same KeyError" in bad[7]
    assert {str(p): p.read_bytes() for p in sorted(corpus.rglob("*")) if p.is_file()} == before
    details = {n["notebook"]: n for n in json.loads(out.read_text())["notebooks"]}
    steps = {s["step"]: s for s in details["good/good.ipynb"]["steps"]}
    assert steps["load"]["pipeline"] == ["read 3 numbers"]
    assert steps["summary"]["notebook"][0] == "mean 5"
    assert steps["summary"]["pipeline"] == steps["summary"]["notebook"]
    assert details["bad/bad.ipynb"]["reference"]["stdout"]["first"] == "fine so far\n"
