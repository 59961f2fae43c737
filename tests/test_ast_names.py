"""Static reads and binds of step code: the read side the dry run cannot observe."""

from kale_trace.tracer.ast_names import analyse


def test_reads_before_binding_only():
    facts = analyse("x = df['a'] + 1\ny = x * 2\nprint(y, z)")
    assert facts.reads == {"df", "print", "z"}
    assert facts.binds == {"x", "y"}


def test_augmented_assignment_is_read_and_write():
    facts = analyse("total += 10\narr += 1\nlst += [1]")
    assert {"total", "arr", "lst"} <= facts.reads
    assert {"total", "arr", "lst"} <= facts.binds


def test_rebinding_before_reading_is_not_an_input():
    facts = analyse("df = load()\ndf.head()")
    assert "df" not in facts.reads


def test_comprehension_and_loop_variables_do_not_leak_as_reads():
    facts = analyse("y = [r for r in rows if r > t]\nfor row in rows:\n    acc.append(row)")
    assert facts.reads == {"rows", "t", "acc"}
    assert "r" not in facts.binds
    assert "row" in facts.binds  # loop targets are module-level rebinds


def test_branch_bindings_are_potential_not_definite():
    facts = analyse("if flag:\n    maybe = 1\nprint(maybe)")
    assert "maybe" in facts.binds
    assert "maybe" in facts.reads  # may still come from an earlier step


def test_function_globals_are_deferred_reads_and_global_writes_are_binds():
    facts = analyse(
        "def score(v, k=default_k):\n    global a\n    a = 9\n    local = v\n"
        "    return local > threshold\n"
    )
    assert facts.reads == {"default_k"}
    assert facts.deferred_reads == {"threshold"}
    assert {"score", "a"} <= facts.binds
    assert facts.definitions == {"score"}


def test_class_bodies_read_immediately_methods_later():
    facts = analyse("class M(Base):\n    size = n\n    def f(self):\n        return limit\n")
    assert facts.reads == {"Base", "n"}
    assert facts.deferred_reads == {"limit"}


def test_imports_are_recorded_with_their_modules():
    facts = analyse(
        "import numpy as np\nimport os.path\nfrom math import sqrt as s\nfrom x import *"
    )
    assert facts.imports == {"np": ("numpy", None), "os": ("os", None), "s": ("math", "sqrt")}


def test_magics_are_analysed_after_transformation():
    facts = analyse("%time z = f(x)\n!ls\n%matplotlib inline")
    assert {"f", "x"} <= facts.reads
    assert "z" in facts.binds


def test_lambda_parameters_are_local():
    facts = analyse("key = lambda r: r['score'] + bonus")
    assert facts.reads == {"bonus"}


def test_del_unbinds():
    facts = analyse("tmp = 1\ndel tmp\nprint(tmp)")
    assert "tmp" in facts.reads
