"""IPython 8's stand-in for IPython 9's `__main__` module type behaves as IPython 9's does.

The newest set runs IPython 9, the oldest (Python 3.10) IPython 8: both jobs run this, so the
stand-in is checked where IPython 9 can be compared with it, and used for real in the oldest.
"""

from __future__ import annotations

import sys
import types

import pytest

from kale_trace.compat import _main_module_type, make_main_module_type
from kale_trace.tracer import read_tracking
from kale_trace.tracer.read_tracking import TrackingNamespace


@pytest.mark.parametrize("make", [make_main_module_type, _main_module_type])
def test_the_main_module_reads_and_writes_through_the_namespace(make):
    namespace = TrackingNamespace({"__name__": "__main__", "x": 1})
    module = make(namespace)()
    assert isinstance(module, types.ModuleType) and module.__dict__ is namespace
    read_tracking.take_reads()
    assert module.x == 1 and "x" in read_tracking.take_reads()  # a read by attribute is seen
    module.y = 2
    del module.x
    assert namespace == {"__name__": "__main__", "y": 2}
    with pytest.raises(AttributeError):
        _ = module.x
    with pytest.raises(AttributeError):
        del module.x


def test_pickle_finds_classes_through_the_stand_in(monkeypatch):
    import pickle

    namespace = TrackingNamespace({"__name__": "__main__"})
    module = _main_module_type(namespace)()
    exec("class Point:\n    def __init__(self, x):\n        self.x = x", namespace)
    monkeypatch.setitem(sys.modules, "__main__", module)
    point = pickle.loads(pickle.dumps(namespace["Point"](3)))
    assert type(point) is namespace["Point"] and point.x == 3
