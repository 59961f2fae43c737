"""Cells become plain Python for steps; magics that would change meaning are refused."""

import pytest

from kale_trace.cellcode import plain_python
from kale_trace.errors import KaleTraceError


def test_plain_cells_are_kept_verbatim():
    source = "x = 1  # a comment\n\n\ny = x"
    assert plain_python(source) == source


def test_timing_and_setup_magics_become_plain_code():
    code = plain_python("%matplotlib inline\n%time z = f(x)\nw = %timeit -n 3 g(1)\n!pip install a")
    assert "get_ipython" not in code
    assert "z = f(x)" in code and "w = g(1)" in code


def test_time_cell_magic_keeps_the_body():
    assert plain_python("%%time\na = 1\nb = a + 1").split() == [
        "a",
        "=",
        "1",
        "b",
        "=",
        "a",
        "+",
        "1",
    ]


@pytest.mark.parametrize("source", ["%cd data", "!wget http://x", "%%bash\nls", "x = !ls"])
def test_meaningful_magics_are_refused_with_a_fix(source):
    with pytest.raises(KaleTraceError) as raised:
        plain_python(source)
    assert raised.value.fix


def test_env_magic_sets_the_environment_as_ipython_does():
    namespace: dict = {}
    exec(plain_python("%env KT_CELLCODE_A=1\n%env KT_CELLCODE_B two words"), namespace)
    import os

    assert os.environ.pop("KT_CELLCODE_A") == "1"
    assert os.environ.pop("KT_CELLCODE_B") == "two words"


def test_capture_cell_magic_keeps_the_output_in_its_variable():
    namespace: dict = {}
    exec(plain_python("%%capture out --no-stderr\nprint('hi')\nx = 2"), namespace)
    assert namespace["out"].stdout == "hi\n" and namespace["x"] == 2


def test_steps_run_magics_as_written_and_keep_a_plain_form_where_one_exists():
    from kale_trace.cellcode import step_cell

    timed = step_cell("%time s = sum(v)")
    assert timed.code == "%time s = sum(v)" and timed.plain is not None
    assert "s = sum(v)" in timed.plain and "get_ipython" not in timed.plain
    for source in ("!echo hello", "files = !ls", "%%writefile helper.py\nx = 1", "%cd data"):
        cell = step_cell(source)
        assert cell.code == source and cell.plain is None  # only IPython runs these


def test_install_lines_become_requirements_and_comments():
    from kale_trace.cellcode import step_cell

    cell = step_cell(
        "%pip install -q 'pandas>=2' numpy -i https://x.invalid\n"
        "!{sys.executable} -m pip install six\n  !pip install $name -r reqs.txt\nx = 1"
    )
    assert cell.packages == ("pandas>=2", "numpy", "six")
    lines = cell.code.splitlines()
    assert lines[0].startswith("# %pip install -q 'pandas>=2'") and lines[-1] == "x = 1"
    assert lines[2].startswith("  # !pip install $name") and "not run in the step" in lines[2]
    # A cell magic's body is its own language: %%writefile keeps its text.
    body = "%%writefile setup.sh\n!pip install six"
    assert step_cell(body).code == body and step_cell(body).packages == ()


@pytest.mark.parametrize(
    "source",
    ["%connect_info", "%qtconsole", "%gui qt", "%matplotlib ipympl", "%debug", "%load x.py"],
)
def test_kernel_only_magics_are_refused_with_why(source):
    from kale_trace.cellcode import step_cell

    with pytest.raises(KaleTraceError) as raised:
        step_cell(source)
    assert "cannot run in a pipeline step: " in raised.value.message and raised.value.fix
