"""Turn a notebook cell into plain Python that runs without IPython.

Pipeline steps run in a bare interpreter. Magics that only change how a cell is timed or
displayed become their plain code; setup magics (`%matplotlib`, `%pip install`, ...) are
dropped; anything else would silently change meaning, so it is refused with a clear fix.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache

from IPython.core.inputtransformer2 import TransformerManager

from kale_trace.errors import KaleTraceError

# Line magics that change timing or display only: the statement runs as plain code.
_CODE_MAGICS = {"time", "timeit", "prun"}
# Line magics with no effect on what a step computes: dropped.
_NOOP_MAGICS = {
    "matplotlib", "load_ext", "reload_ext", "autoreload", "aimport", "config", "pip",
    "conda", "who", "whos", "who_ls", "lsmagic", "pylab_off", "precision", "xmode",
}  # fmt: skip
_NOOP_CELL_MAGICS = {"capture_off"}


_TRANSFORMER = TransformerManager()


@lru_cache(maxsize=4096)
def python_source(cell_source: str) -> str:
    """The Python that IPython would run for this cell (magics become `get_ipython()` calls)."""
    return _TRANSFORMER.transform_cell(cell_source)


@lru_cache(maxsize=4096)
def plain_python_lenient(source: str) -> str:
    """Like `plain_python`, but keeps refused magics as calls: for analysis, never fails."""
    try:
        return _rewrite(source, strict=False)
    except SyntaxError:
        return python_source(source)


@lru_cache(maxsize=4096)
def plain_python(source: str) -> str:
    """The cell as plain Python: unchanged when it has no magics."""
    return _rewrite(source, strict=True)


def _rewrite(source: str, *, strict: bool) -> str:
    transformed = python_source(source)
    if "get_ipython" not in transformed:
        # IPython's own rewrites without magics (`;f a` autoquotes): the cell as IPython runs it.
        return source if _parses(source) else transformed
    tree = ast.parse(transformed)
    if not any(_magic_call(node) for node in ast.walk(tree)):
        return source
    tree = _Rewriter(strict).visit(tree)
    for node in ast.walk(tree) if strict else ():
        leftover = _magic_call(node)
        if leftover is not None:
            _refuse(f"get_ipython().{leftover[0]}({_constant(leftover[1], 0)!r})")
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n"


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def _magic_call(node: ast.AST) -> tuple[str, list[ast.expr]] | None:
    """`get_ipython().<method>(...)` as (method, args), else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    owner = node.func.value
    if (
        isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Name)
        and owner.func.id == "get_ipython"
    ):
        return node.func.attr, list(node.args)
    return None


def _constant(args: list[ast.expr], index: int) -> str:
    node = args[index] if index < len(args) else None
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""


class _Rewriter(ast.NodeTransformer):
    def __init__(self, strict: bool) -> None:
        self.strict = strict

    def _refuse(self, node: ast.AST, what: str) -> ast.AST:
        if self.strict:
            _refuse(what)
        return node

    def visit_Expr(self, node: ast.Expr) -> ast.AST | list[ast.stmt]:
        call = _magic_call(node.value)
        if call is None:
            return self.generic_visit(node)
        method, args = call
        name = _constant(args, 0)
        if method == "run_line_magic":
            if name in _CODE_MAGICS:
                return self._parse_body(_strip_flags(_constant(args, 1)))
            if name in _NOOP_MAGICS:
                return ast.Pass()
            if name == "env":
                return self._env(node, _constant(args, 1))
            return self._refuse(node, f"%{name}")
        if method == "run_cell_magic":
            if name in _CODE_MAGICS or (name == "capture" and not _constant(args, 1).strip()):
                return self._parse_body(_constant(args, 2))
            if name == "capture":
                return self._capture(node, _constant(args, 1).split(), _constant(args, 2))
            return self._refuse(node, f"%%{name}")
        if method == "system":
            command = name.strip()
            if command.startswith(("pip install", "pip3 install", "conda install")):
                return ast.Pass()
            return self._refuse(node, f"!{command.split()[0] if command else ''}")
        return self._refuse(node, f"get_ipython().{method}")

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        call = _magic_call(node.value)
        if call is not None:
            method, args = call
            if method == "run_line_magic" and _constant(args, 0) in _CODE_MAGICS:
                node.value = ast.parse(_strip_flags(_constant(args, 1)), mode="eval").body
                return node
            return self._refuse(node, f"{method}({_constant(args, 0)!r}) in an assignment")
        return self.generic_visit(node)

    def _env(self, node: ast.AST, line: str) -> ast.AST | list[ast.stmt]:
        """`%env NAME=value` (or `%env NAME value`) sets an environment variable, as here."""
        text = line.strip()
        name, _, value = text.partition("=") if "=" in text else text.partition(" ")
        name, value = name.strip(), value.strip()
        if not name or not value or not name.replace("_", "a").isalnum():
            return self._refuse(node, f"%env {text}")
        return ast.parse(f"__import__('os').environ[{name!r}] = {value!r}").body

    def _capture(self, node: ast.AST, words: list[str], body: str) -> ast.AST | list[ast.stmt]:
        """`%%capture out` keeps the cell's output in `out`, as IPython's own helper does."""
        names = [w for w in words if not w.startswith("-")]
        if len(names) != 1 or not names[0].isidentifier():
            return self._refuse(node, f"%%capture {' '.join(words)}")
        streams = ("stdout", "stderr", "display")
        options = ", ".join(f"{stream}={f'--no-{stream}' not in words}" for stream in streams)
        header = ast.parse(
            "from IPython.utils.capture import capture_output as _kale_capture_output\n"
            f"with _kale_capture_output({options}) as {names[0]}:\n    pass"
        ).body
        header[1].body = self._parse_body(body)  # type: ignore[attr-defined]
        return header

    def _parse_body(self, code: str) -> list[ast.stmt]:
        tree = ast.parse(python_source(code))
        return _Rewriter(self.strict).visit(tree).body or [ast.Pass()]


def _strip_flags(line: str) -> str:
    """`%timeit -n 10 -r 2 f()` → `f()`: drop leading option flags of timing magics."""
    words = line.split(" ")
    while words and words[0].startswith("-"):
        flag = words.pop(0)
        if flag in {"-n", "-r", "-p", "-s", "-l", "-T", "-D"} and words:
            words.pop(0)
    return " ".join(words)


def _refuse(what: str) -> None:
    raise KaleTraceError(
        f"{what} cannot run inside a pipeline step (steps run as plain Python, without IPython)",
        fix="do it in plain Python (os.chdir, os.environ, subprocess.run), "
        "or move the line to a cell tagged `skip`",
    )


# --- cells as pipeline steps run them -------------------------------------------------------

# Magics that need a kernel's frontend, a GUI or a terminal: in a step they would hang, do
# nothing, or fail, so the compile refuses them (docs/errors.md says why, one by one).
KERNEL_ONLY_MAGICS = {
    "connect_info": "it prints how to connect to the notebook's kernel; a step has none",
    "qtconsole": "it opens a Qt console on the notebook's kernel; a step has no kernel or screen",
    "gui": "it runs a GUI event loop; a step has no screen",
    "edit": "it opens an editor; a step has no terminal",
    "ed": "it opens an editor; a step has no terminal",
    "debug": "it starts the interactive debugger; a step has no one to type at it",
    "pdb": "it starts the interactive debugger on errors; a step has no one to type at it",
    "load": "it replaces the cell's text in the notebook's frontend; a step has no frontend",
    "paste": "it reads the terminal's clipboard; a step has none",
    "cpaste": "it reads pasted text from a terminal; a step has none",
    "recall": "it edits the next input in the frontend; a step has no frontend",
    "rerun": "it reruns the notebook's input history; a step has a different history",
}
# `%matplotlib <backend>`: interactive backends draw into widgets or windows, not outputs.
_WIDGET_BACKENDS = {"widget", "ipympl", "notebook", "nbagg", "qt", "qt5", "qt6", "tk", "gtk",
                    "gtk3", "gtk4", "wx", "osx", "macosx"}  # fmt: skip

_PIP_LINE = re.compile(
    r"^(?P<indent>\s*)[%!]\s*(?:(?:\{sys\.executable\}|python3?) -m )?"
    r"(?:pip3?|conda|mamba) install\b(?P<args>.*)$"
)
# pip options followed by a value: the value is not a requirement.
_PIP_VALUE_OPTIONS = {
    "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url",
    "--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix", "--root",
    "--upgrade-strategy", "--python-version", "--platform", "--only-binary", "--no-binary",
    "-n", "--name", "--channel",
}  # fmt: skip


@dataclass(frozen=True)
class StepCell:
    """A cell as a pipeline step runs it.

    `code` is what IPython runs (the cell, its install lines turned into comments); `plain`
    is the cell as plain Python for a step without IPython (None: only IPython can run it;
    equal to `code` when the cell has no magics); `packages` are what its install lines
    installed, for the step's `packages_to_install`.
    """

    code: str
    plain: str | None
    packages: tuple[str, ...] = ()


@lru_cache(maxsize=4096)
def step_cell(source: str) -> StepCell:
    """The cell as a step runs it; refuses magics that cannot work outside a kernel."""
    check_runs_outside_a_kernel(source)
    code, packages = install_lines(source)
    try:
        plain: str | None = plain_python(code)
    except (KaleTraceError, SyntaxError):
        plain = None
    return StepCell(code, plain, packages)


def check_runs_outside_a_kernel(source: str) -> None:
    """Refuse a cell whose magics need the notebook's kernel, frontend or screen."""
    try:
        tree = ast.parse(python_source(source))
    except SyntaxError:
        return  # the dry run reports the notebook's own syntax errors, located
    for node in ast.walk(tree):
        call = _magic_call(node)
        if call is None or call[0] not in ("run_line_magic", "run_cell_magic"):
            continue
        name, line = _constant(call[1], 0), _constant(call[1], 1).strip()
        prefix = "%" if call[0] == "run_line_magic" else "%%"
        if name in KERNEL_ONLY_MAGICS:
            _refuse_kernel_magic(f"{prefix}{name}", KERNEL_ONLY_MAGICS[name])
        if name == "matplotlib" and line.split()[:1] and line.split()[0] in _WIDGET_BACKENDS:
            _refuse_kernel_magic(
                f"%matplotlib {line.split()[0]}",
                "an interactive backend draws into a widget or a window; a step has neither",
                fix="use `%matplotlib inline` (figures are kept as PNG in the step's outputs)",
            )


def _refuse_kernel_magic(what: str, why: str, fix: str | None = None) -> None:
    raise KaleTraceError(
        f"{what} cannot run in a pipeline step: {why}",
        fix=fix or "delete the line, or move it to a cell tagged `skip`",
    )


def install_lines(source: str) -> tuple[str, tuple[str, ...]]:
    """`%pip install a b` lines as comments, and the requirements they name.

    The dry run's kernel runs them; a step installs the packages before it starts instead
    (KFP's packages_to_install), so the cell does not reinstall them on every run.
    """
    first = source.lstrip().split("\n", 1)[0]
    if first.startswith("%%") and not first.startswith(("%%capture", "%%time")):
        return source, ()  # a cell magic's body is its own language (%%writefile, %%bash)
    lines, packages = [], []
    for line in source.split("\n"):
        match = _PIP_LINE.match(line)
        if match is None:
            lines.append(line)
            continue
        named = _requirements(match["args"])
        packages.extend(named)
        note = "installed before the step starts" if named else "not run in the step"
        lines.append(f"{match['indent']}# {line.strip()}  (kale-trace: {note})")
    return "\n".join(lines), tuple(packages)


def _requirements(args: str) -> list[str]:
    """The requirement words of a pip/conda install line, checked as pip reads them."""
    from packaging.requirements import InvalidRequirement, Requirement

    words = args.split("#", 1)[0].split()
    found, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in _PIP_VALUE_OPTIONS
        elif "{" not in word and "$" not in word:  # IPython expands {var} and $var: unknown here
            try:
                found.append(str(Requirement(word.strip("'\""))))
            except InvalidRequirement:
                continue
    return found
