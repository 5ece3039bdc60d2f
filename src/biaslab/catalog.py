"""The catalog's names, titles, references and presets, read from the experiment modules' source without importing them.

`biaslab list` and `biaslab.catalog()` need four strings per experiment. Importing the
experiments (`biaslab.experiments`) to get them pulls in torch, scipy, pandas and every
module: seconds on a small machine. So this module parses each module of
`biaslab/experiments/` with `ast` (it never executes a line of it; parsing them all takes
about 0.1 s on this 2-core machine, the whole cost of the index) and reads what the
module registers: `CATALOG.add(KEY, SomeExperiment())` at module level, and on that class
the string attributes `title` and `reference`. Like `experiments.base.module_defaults`, it takes
`name` and `presets` from the class body where it sets them, else from the module: its `NAME` and
its functions named `tiny`, `quick` and `paper`.

Values may be string literals (implicitly concatenated or joined with `+`) or names bound to
one (a module-level `NAME = "..."`, or a class attribute). Anything else, such as a title
built by a call, raises `CatalogSourceError` naming the module and the attribute:
`tests/test_catalog_index.py` reads every module and checks the result against the live
catalog, so such a module fails there, not in a user's `biaslab list`. Modules that call no
`CATALOG.add` (the framework's helpers) contribute nothing. Adding an experiment is therefore
one new module and nothing else.
"""

from __future__ import annotations

import ast
import functools
import pkgutil
from pathlib import Path
from typing import NamedTuple

EXPERIMENTS_DIR = Path(__file__).with_name("experiments")  # the package whose modules register the catalog
STRING_ATTRIBUTES = ("title", "reference")  # what an entry states, each a str on its class
PRESET_NAMES = ("tiny", "quick", "paper")  # preset functions a module defines (experiments.base.PRESET_NAMES)
REGISTRATION = "CATALOG.add"  # the call by which a module registers an experiment


class IndexEntry(NamedTuple):
    """What `biaslab list` prints for one experiment (a tuple, so `title, reference, presets = entry` works)."""

    title: str
    reference: str
    presets: tuple[str, ...]  # preset names in the order the class's `presets` dict lists them


Index = dict[str, IndexEntry]  # experiment name -> entry, in catalog order


class CatalogSourceError(ValueError):
    """An experiment module's catalog attributes cannot be read from its source without running it."""


def __getattr__(name: str) -> Index:
    """`INDEX`, the index of the installed experiments: read on first use, so importing this module costs nothing."""
    if name == "INDEX":
        return index()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def index(directory: Path | None = None) -> Index:
    """The catalog of the experiment modules in `directory` (default: biaslab's own), in the order the package
    registers them: module name order, as `pkgutil.iter_modules` yields them, then `CATALOG.add` order."""
    return dict(_read_index(directory or EXPERIMENTS_DIR))


@functools.cache
def _read_index(directory: Path) -> tuple[tuple[str, IndexEntry], ...]:
    """The (name, entry) pairs of every module in `directory`; cached because the files do not change in a run."""
    pairs: list[tuple[str, IndexEntry]] = []
    for module in pkgutil.iter_modules([str(directory)]):
        path = _source_path(directory, module.name, module.ispkg)
        pairs.extend(read_entries(path.read_text(encoding="utf-8"), str(path)))
    return tuple(pairs)


def _source_path(directory: Path, module: str, is_package: bool) -> Path:
    """The source file of one module of the experiments package; a module that ships without source is an error."""
    path = directory / module / "__init__.py" if is_package else directory / f"{module}.py"
    if not path.is_file():
        raise CatalogSourceError(f"{directory / module}: no Python source to read its catalog entry from")
    return path


def read_entries(source: str, filename: str = "<source>") -> list[tuple[str, IndexEntry]]:
    """The catalog entries one module's source registers, in the order of its `CATALOG.add` calls (usually one;
    none for a helper module). `filename` names the module in errors."""
    if REGISTRATION not in source:  # a helper module; skipping its parse keeps `biaslab list` quick
        return []
    tree = ast.parse(source, filename)
    constants = _string_bindings(tree.body)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    functions = tuple(node.name for node in tree.body if isinstance(node, ast.FunctionDef))
    return [_entry(call, constants, classes, functions, filename) for call in _catalog_additions(tree)]


def _catalog_additions(tree: ast.Module) -> list[ast.Call]:
    """The module-level statements `CATALOG.add(...)`: what the module registers when it is imported."""
    calls = [node.value for node in tree.body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)]
    return [call for call in calls if _is_catalog_add(call.func)]


def _is_catalog_add(func: ast.expr) -> bool:
    """Whether a call's target is `CATALOG.add`."""
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
        return False
    return f"{func.value.id}.{func.attr}" == REGISTRATION


def _entry(
    call: ast.Call, constants: dict[str, str | None], classes: dict[str, ast.ClassDef], functions: tuple[str, ...], filename: str
) -> tuple[str, IndexEntry]:
    """One `CATALOG.add(KEY, SomeExperiment())`: the key and the entry read from that class's body and its module."""
    where = f"{filename}:{call.lineno}"
    if len(call.args) != 2 or call.keywords:
        raise CatalogSourceError(f"{where}: expected CATALOG.add(NAME, SomeExperiment()), two positional arguments")
    key = _string(call.args[0], constants, f"{where}: the name given to CATALOG.add")
    cls = _instantiated_class(call.args[1], classes, where)
    attributes = dict(_assignments(cls.body))  # the last assignment wins, as when the class body runs
    owner = f"{filename}:{cls.lineno}: {cls.name}"
    scope = constants | _string_bindings(cls.body, outer=constants)  # a class body sees its own names first
    strings = {a: _string(_required(attributes, a, owner), scope, f"{owner}.{a}") for a in STRING_ATTRIBUTES}
    name = _string(attributes["name"], scope, f"{owner}.name") if "name" in attributes else constants.get("NAME")
    if name != key:
        where_named = f"{owner}.name" if "name" in attributes else f"{owner}: its module's NAME"
        raise CatalogSourceError(f"{where_named} is {name!r} but CATALOG.add registers it as {key!r}")
    if "presets" in attributes:
        presets = _preset_names(attributes["presets"], scope, f"{owner}.presets")
    else:
        presets = tuple(p for p in PRESET_NAMES if p in functions)
        if not presets:
            raise CatalogSourceError(f"{owner}: no presets: define module functions {', '.join(PRESET_NAMES)} or set presets")
    return key, IndexEntry(strings["title"], strings["reference"], presets)


def _instantiated_class(node: ast.expr, classes: dict[str, ast.ClassDef], where: str) -> ast.ClassDef:
    """The class that `SomeExperiment()` instantiates, defined in the same module."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args and not node.keywords):
        raise CatalogSourceError(
            f"{where}: CATALOG.add's second argument must be SomeExperiment(), a class of this module called with "
            "no arguments"
        )
    if node.func.id not in classes:
        raise CatalogSourceError(f"{where}: class {node.func.id} is not defined at module level in this module")
    return classes[node.func.id]


def _required(attributes: dict[str, ast.expr], attr: str, owner: str) -> ast.expr:
    """The value a class body assigns to `attr`; an inherited value would need the import this module avoids."""
    if attr not in attributes:
        raise CatalogSourceError(
            f"{owner}.{attr} is not assigned in the class body: biaslab list reads it from there (an inherited value "
            "is not seen)"
        )
    return attributes[attr]


def _assignments(body: list[ast.stmt]) -> list[tuple[str, ast.expr]]:
    """(name, value) for each `name = value` and `name: type = value` directly in `body`, in order."""
    found: list[tuple[str, ast.expr]] = []
    for node in body:
        if isinstance(node, ast.Assign):
            found.extend((target.id, node.value) for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            found.append((node.target.id, node.value))
    return found


def _string_bindings(body: list[ast.stmt], outer: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """The names `body` binds to a string constant (reading names of its own, then of `outer`); None for a name
    bound to anything else or rebound to another value, so that using it is an error rather than a guess."""
    bindings: dict[str, str | None] = {}
    for name, value in _assignments(body):
        text = _literal_string(value, (outer or {}) | bindings)
        bindings[name] = text if name not in bindings or bindings[name] == text else None
    return bindings


def _literal_string(node: ast.expr, scope: dict[str, str | None]) -> str | None:
    """The string an expression evaluates to when it is made of string literals, `+` and names in `scope`; else None.
    (The parser has already joined implicitly concatenated literals into one constant.)"""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.Name):
        return scope.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal_string(node.left, scope), _literal_string(node.right, scope)
        return None if left is None or right is None else left + right
    return None


def _string(node: ast.expr, scope: dict[str, str | None], what: str) -> str:
    """`_literal_string`, or an error that names `what` and shows the expression it could not read."""
    text = _literal_string(node, scope)
    if text is None:
        raise CatalogSourceError(
            f"{what} = {ast.unparse(node)} cannot be read without importing the module: use a string literal or a "
            "name bound once, at module level or in the class body, to one"
        )
    return text


def _preset_names(node: ast.expr, scope: dict[str, str | None], what: str) -> tuple[str, ...]:
    """The keys of a `presets = {"tiny": tiny, ...}` dict literal, in order."""
    if not isinstance(node, ast.Dict):
        raise CatalogSourceError(
            f"{what} = {ast.unparse(node)} is not a dict literal: write {{'tiny': tiny, 'quick': quick, ...}}"
        )
    if any(key is None for key in node.keys):
        raise CatalogSourceError(f"{what}: a ** entry cannot be read without importing the module: list every preset")
    return tuple(_string(key, scope, f"{what} key") for key in node.keys if key is not None)
