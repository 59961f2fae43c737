"""Static facts about a step's code: the names it reads before binding them, and every
name it could bind.

The dry run knows what a step *did*; this module fills in what it could not see (branches
not taken) and gives the read side, which the namespace diff cannot observe. Code is
analysed after IPython's own cell transformation, so magics are seen as the calls they are.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from kale_trace.cellcode import plain_python_lenient


@dataclass
class NameFacts:
    """What one piece of code reads and binds at module level."""

    reads: set[str] = field(default_factory=set)  # read before any definite binding
    binds: set[str] = field(default_factory=set)  # bound on some path (including `global` writes)
    # bound name -> (module, attribute): `import a.b as c` is ("a.b", None), `from a import b`
    # is ("a", "b")
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    definitions: set[str] = field(default_factory=set)  # names bound by def/class statements
    deferred_reads: set[str] = field(default_factory=set)  # globals read by functions defined here


def analyse(source: str, *, transformed: bool = False) -> NameFacts:
    """Analyse code as one module-level block, in statement order."""
    code = source if transformed else plain_python_lenient(source)
    tree = ast.parse(code)
    facts = NameFacts()
    _Block(facts, bound=set()).run(tree.body)
    return facts


class _Block:
    """Walks module-level statements, tracking which names are definitely bound so far."""

    def __init__(self, facts: NameFacts, bound: set[str]) -> None:
        self.facts = facts
        self.bound = bound

    def run(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.statement(stmt)

    def read(self, names: set[str]) -> None:
        self.facts.reads |= names - self.bound

    def bind(self, names: set[str], *, definite: bool = True) -> None:
        self.facts.binds |= names
        if definite:
            self.bound |= names

    def branch(self, body: list[ast.stmt]) -> None:
        """A body that may not run: its bindings are not definite afterwards."""
        _Block(self.facts, set(self.bound)).run(body)

    def statement(self, stmt: ast.stmt) -> None:
        facts = self.facts
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for expr in [*stmt.decorator_list, *_arg_defaults(stmt.args)]:
                self.read(_loads(expr))
            facts.deferred_reads |= _function_globals(stmt)
            facts.binds |= _declared_globals(stmt)
            facts.definitions.add(stmt.name)
            self.bind({stmt.name})
        elif isinstance(stmt, ast.ClassDef):
            for expr in [*stmt.decorator_list, *stmt.bases, *(k.value for k in stmt.keywords)]:
                self.read(_loads(expr))
            class_bound: set[str] = set()
            for item in stmt.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    for expr in [*item.decorator_list, *_arg_defaults(item.args)]:
                        self.read(_loads(expr) - class_bound)
                    facts.deferred_reads |= _function_globals(item)
                    class_bound.add(item.name)
                else:
                    self.read(_loads(item) - class_bound)
                    class_bound |= _stores(item)
            facts.definitions.add(stmt.name)
            self.bind({stmt.name})
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                if alias.name == "*":
                    continue  # star imports: the dry run sees what they bind
                name = alias.asname or alias.name.split(".")[0]
                if isinstance(stmt, ast.Import):
                    module = alias.name if alias.asname else name
                    facts.imports[name] = (module, None)
                elif stmt.level == 0 and stmt.module:
                    facts.imports[name] = (stmt.module, alias.name)
                self.bind({name})
        elif isinstance(stmt, ast.AugAssign):
            self.read(_loads(stmt.value) | _loads(stmt.target) | _target_root(stmt.target))
            self.bind(_stores(stmt.target))
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            value = stmt.value
            if value is not None:
                self.read(_loads(value))
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                self.read(_loads(target))  # subscripts/attributes read their base
                self.bind(_stores(target))
        elif isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                # `del x` needs x to exist: a read, never a binding (`del d[k]` reads d).
                deleted = {
                    n.id
                    for n in ast.walk(target)
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Del)
                }
                self.read(_loads(target) | deleted)
                self.bound -= deleted
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            self.read(_loads(stmt.iter))
            targets = _stores(stmt.target)
            self.bind(targets, definite=False)
            _Block(self.facts, self.bound | targets).run(stmt.body)
            self.branch(stmt.orelse)
        elif isinstance(stmt, ast.While):
            self.read(_loads(stmt.test))
            self.branch([*stmt.body, *stmt.orelse])
        elif isinstance(stmt, ast.If):
            self.read(_loads(stmt.test))
            self.branch(stmt.body)
            self.branch(stmt.orelse)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                self.read(_loads(item.context_expr))
                if item.optional_vars is not None:
                    self.bind(_stores(item.optional_vars))
            self.run(stmt.body)
        elif isinstance(stmt, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            self.branch(stmt.body)
            for handler in stmt.handlers:
                if handler.type is not None:
                    self.read(_loads(handler.type))
                if handler.name:
                    self.bind({handler.name}, definite=False)
                self.branch(handler.body)
            self.branch(stmt.orelse)
            self.run(stmt.finalbody)
        elif isinstance(stmt, ast.Match):
            self.read(_loads(stmt.subject))
            for case in stmt.cases:
                self.bind(_stores(case.pattern), definite=False)
                if case.guard is not None:
                    self.read(_loads(case.guard))
                self.branch(case.body)
        elif isinstance(stmt, ast.Global):
            pass  # module level `global` is a no-op
        else:
            self.read(_loads(stmt))
            self.bind(_stores(stmt))


def _arg_defaults(args: ast.arguments) -> list[ast.expr]:
    return [*args.defaults, *(d for d in args.kw_defaults if d is not None)]


class _LoadCollector(ast.NodeVisitor):
    """Names loaded by an expression or simple statement, respecting nested scopes."""

    def __init__(self) -> None:
        self.loads: set[str] = set()
        self.stores: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.loads.add(node.id)
        else:
            self.stores.add(node.id)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.stores.add(node.target.id)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in _arg_defaults(node.args):
            self.visit(expr)
        params = {a.arg for a in _all_args(node.args)}
        self.loads |= _loads(node.body) - params

    def _comprehension(self, node: ast.AST, elements: list[ast.expr]) -> None:
        generators: list[ast.comprehension] = node.generators  # type: ignore[attr-defined]
        local: set[str] = set()
        for index, gen in enumerate(generators):
            iter_loads = _loads(gen.iter)
            # The first iterable is evaluated in the enclosing scope.
            self.loads |= iter_loads if index == 0 else iter_loads - local
            local |= _stores(gen.target)
            for cond in gen.ifs:
                self.loads |= _loads(cond) - local
        for element in elements:
            inner = _LoadCollector()
            inner.visit(element)
            self.loads |= inner.loads - local
            self.stores |= inner.stores - local  # walrus in a comprehension binds outside

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_ListComp  # type: ignore[assignment]
    visit_GeneratorExp = visit_ListComp  # type: ignore[assignment]

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node, [node.key, node.value])

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.stores.add(node.name)  # nested defs inside simple statements do not occur

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stores.add(node.name)


def _loads(node: ast.AST) -> set[str]:
    collector = _LoadCollector()
    collector.visit(node)
    return collector.loads


def _stores(node: ast.AST) -> set[str]:
    if isinstance(node, ast.pattern):
        return {
            n.name for n in ast.walk(node) if isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name
        } | {n.rest for n in ast.walk(node) if isinstance(n, ast.MatchMapping) and n.rest}
    collector = _LoadCollector()
    collector.visit(node)
    return collector.stores


def _target_root(node: ast.expr) -> set[str]:
    return {node.id} if isinstance(node, ast.Name) else set()


def _all_args(args: ast.arguments) -> list[ast.arg]:
    found = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    if args.vararg:
        found.append(args.vararg)
    if args.kwarg:
        found.append(args.kwarg)
    return found


def _function_globals(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    """Module-level names a function body may read when called (over-approximated)."""
    local = {a.arg for a in _all_args(node.args)}
    declared_global: set[str] = set()
    loads: set[str] = set()
    body = node.body if isinstance(node.body, list) else [node.body]
    for stmt in body:
        for sub in ast.walk(stmt):
            if isinstance(sub, ast.Global):
                declared_global |= set(sub.names)
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            loads |= _function_globals(stmt)
            local.add(stmt.name)
            continue
        collector = _LoadCollector()
        collector.visit(stmt)
        loads |= collector.loads
        local |= collector.stores
        for sub in ast.walk(stmt):
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                loads |= _function_globals(sub)
            elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                local |= {(a.asname or a.name.split(".")[0]) for a in sub.names}
            elif isinstance(sub, ast.ClassDef):
                local.add(sub.name)
    return (loads - (local - declared_global)) | (declared_global & loads)


def _declared_globals(node: ast.AST) -> set[str]:
    """Names a function declares `global`: calling it may bind them (pattern 6)."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Global):
            names |= set(sub.names)
    return names
