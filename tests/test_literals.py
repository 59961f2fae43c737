"""Everything written into generated Python is an exact, inert literal."""

import ast

from hypothesis import given
from hypothesis import strategies as st

from kale_trace.codegen.literals import code_literal, value_literal

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.text())
def test_code_literal_round_trips_any_text(text):
    literal = code_literal(text)
    tree = ast.parse(literal, mode="eval")
    assert isinstance(tree.body, ast.Constant)
    assert tree.body.value == text


@given(json_values)
def test_value_literal_round_trips(value):
    literal = value_literal(value)
    assert ast.literal_eval(literal) == value


def test_code_literal_stays_readable():
    assert code_literal('print("hi")\n') == '"""print("hi\\")\n"""'.replace('\\")', '")')
    assert code_literal("x = 1\ny = 2\n") == '"""x = 1\ny = 2\n"""'


def test_hostile_text_cannot_escape_the_literal():
    hostile = '"""\nimport os; os.system("rm -rf /")\n"""'
    literal = code_literal(hostile)
    module = ast.parse(f"x = {literal}")
    assert len(module.body) == 1 and ast.literal_eval(literal) == hostile
