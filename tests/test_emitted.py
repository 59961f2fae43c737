"""Components carry only the emitted definitions they call."""

import pytest

from kale_trace.codegen.emitted import select_definitions
from kale_trace.marshal.sources import ARROW_SOURCE, ARTIFACT_IO_SOURCE


def _names(code: str) -> set[str]:
    import ast

    return {n.name for n in ast.parse(code).body}


def test_a_consumer_gets_the_load_side_and_its_helpers_only():
    code = select_definitions(
        [ARTIFACT_IO_SOURCE, ARROW_SOURCE], {"_kale_read_artifact", "_kale_load_arrow"}
    )
    names = _names(code)
    assert {"_kale_read_artifact", "_kale_load_arrow", "_kale_arrow_frame"} <= names
    assert not {"_kale_save_arrow", "_kale_arrow_table", "_kale_write_artifact"} & names


def test_a_producer_gets_the_save_side_and_its_helpers_only():
    code = select_definitions(
        [ARTIFACT_IO_SOURCE, ARROW_SOURCE], {"_kale_write_artifact", "_kale_save_arrow"}
    )
    names = _names(code)
    assert {"_kale_save_arrow", "_kale_arrow_table", "_kale_arrow_check"} <= names
    assert not {"_kale_load_arrow", "_kale_read_artifact"} & names


def test_an_unknown_entry_is_a_bug_not_a_silent_gap():
    with pytest.raises(ValueError, match="_kale_nothing"):
        select_definitions([ARTIFACT_IO_SOURCE], {"_kale_nothing"})
