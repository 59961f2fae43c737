"""Property tests: no notebook content can change the structure of the generated module.

Hypothesis writes notebooks with hostile step names, parameter names and values, and cell
code full of quotes, triple quotes, backslashes, newlines and unicode; each compiles (static
analysis, the real KFP compiler) to a module that defines exactly the expected components and
carries every value and every cell's code back exactly.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
import tempfile
from pathlib import Path

import yaml
from conftest import write_notebook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yaml.reader import Reader

from kale_trace.cellcode import step_cell
from kale_trace.compiler import CompileOptions, compile_notebook
from kale_trace.errors import KaleTraceError
from kale_trace.notebook.tags import normalise_step_name

_NOT_YAML = Reader.NON_PRINTABLE
HOSTILE = ['"""', "'''", "\\", "\n", "\r", "\t", '"', "'", "#", "{{", "}}", "{%", "\x1f", "\x7f",
           "é", "😀", "\u2028", "import os", "; ", ")", "\\n"]  # fmt: skip

hostile_text = (
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(min_size=0, max_size=4)), max_size=6)
    .map("".join)
    .filter(lambda s: "\x00" not in s)
)
identifiers = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s)
)
values = st.one_of(
    hostile_text,
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(hostile_text, max_size=3),
    st.dictionaries(hostile_text, hostile_text, max_size=3),
)
step_names = st.lists(
    st.text(alphabet="abcXYZ09-_ .\"'\\", min_size=1, max_size=12), min_size=1, max_size=3,
    unique=True,
)  # fmt: skip


def _texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    if isinstance(value, dict):
        return [t for pair in value.items() for item in pair for t in _texts(item)]
    return []


def _steps(names: list[str]) -> list[tuple[str, str]]:
    """(raw name, function name) for the names the tag language accepts, unique after
    normalisation."""
    kept: dict[str, str] = {}
    for raw in names:
        try:
            normal = normalise_step_name(raw)
        except KaleTraceError:
            continue
        kept.setdefault(normal, raw)
    return [(raw, normal) for normal, raw in kept.items()]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params=st.dictionaries(identifiers, values, min_size=1, max_size=4),
    names=step_names,
    texts=st.lists(hostile_text, min_size=1, max_size=3),
)
def test_hostile_notebooks_compile_to_exactly_the_expected_module(params, names, texts):
    steps = _steps(names) or [("plain", "plain")]
    cells: list[tuple[list[str] | str, str]] = [
        ("parameters", "\n".join(f"{name} = {value!r}" for name, value in params.items()))
    ]
    codes = []
    for index, (raw, _) in enumerate(steps):
        code = f"value_{index} = {texts[index % len(texts)]!r}  # {texts[0]!r}"
        codes.append(code)
        cells.append(([f"step:{raw}"] + ([f"prev:{steps[index - 1][0]}"] if index else []), code))
    # Lists and dicts travel as JSON text (escaped ASCII); a str default is written raw.
    unwritable = [n for n, v in params.items() if isinstance(v, str) and _NOT_YAML.search(v)]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_notebook(Path(tmp) / "nb.ipynb", cells)
        try:
            compiled = compile_notebook(
                path, Path(tmp) / "out", CompileOptions(overrides={}, samples={}, trace=False)
            )
        except KaleTraceError as error:
            # A value a YAML file cannot hold is refused by name, before anything is written.
            assert unwritable and "control character" in error.message, error.render()
            assert any(f"'{name}'" in error.message for name in unwritable)
            assert not (Path(tmp) / "out").exists()
            return
        assert not unwritable
        source = compiled.python_path.read_text(encoding="utf-8")
        pipeline_yaml = yaml.safe_load(compiled.yaml_path.read_text(encoding="utf-8"))

    tree = ast.parse(source)
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    components = [f for f in functions if f.name != "pipeline"]
    # Exactly one component per step plus the pipeline, and nothing else at module level.
    assert len(components) == len(steps) and functions[-1].name == "pipeline"
    assert all(
        isinstance(n, (ast.Expr, ast.ImportFrom, ast.Import, ast.Assign, ast.FunctionDef, ast.If))
        for n in tree.body
    )
    # Every parameter default comes back exactly, in the module and in the compiled YAML.
    pipeline = functions[-1]
    defaults = dict(
        zip(
            [a.arg for a in pipeline.args.args],
            [ast.literal_eval(d) for d in pipeline.args.defaults],
            strict=True,
        )
    )
    as_text = {k for k, v in params.items() if isinstance(v, (list, dict))}
    defaults = {k: json.loads(v) if k in as_text else v for k, v in defaults.items()}
    assert defaults == params
    assert {k: type(v) for k, v in defaults.items()} == {k: type(v) for k, v in params.items()}
    compiled_inputs = pipeline_yaml["root"]["inputDefinitions"]["parameters"]
    for name, value in params.items():
        default = compiled_inputs[name]["defaultValue"]
        default = json.loads(default) if name in as_text else default
        if isinstance(value, float) or type(value) is int:
            assert math.isclose(default, value, rel_tol=0, abs_tol=0) or default == value
        else:
            assert default == value
    # Every cell's code reaches its component exactly as the step runs it.
    for component, code in zip(components, codes, strict=True):
        runs = [
            node
            for node in ast.walk(component)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_kale_run"
        ]
        assert ast.literal_eval(runs[-1].args[1]) == step_cell(code).code
