"""
Tests of tchat's shape (see C{docs/architecture.md}): imports only go one
way, one node or many is decided in one place, and the hub stays a short
façade over modules and classes of a readable size.

They read the source, as a reviewer would; nothing is imported or run.
"""

import ast
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from functools import cache
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

PACKAGE = Path(__file__).resolve().parent.parent / "tchat"

HUB_LINES = 600
MODULE_LINES = 900
CLASS_LINES = 500

ONE_NODE_OR_MANY = ("tchat.cluster", "tchat.tap", "tchat.config")
"""Where cluster mode may be known of: the cluster's own code, where it is
chosen, and where it is configured."""


@cache
def _tree(path: Path) -> ast.Module:
    """The syntax tree of one module, parsed once for all the tests."""
    return ast.parse(path.read_text())


@cache
def _modules() -> dict[str, Path]:
    """Every module of tchat, by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


@cache
def _graph() -> dict[str, frozenset[str]]:
    """What each module of tchat imports of tchat, found once for all."""
    modules = _modules()
    return {
        name: frozenset(_imports(path, modules) - {name})
        for name, path in modules.items()
    }


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """
    The modules of tchat that C{path} imports, anywhere in it: at the top,
    inside functions, or under C{TYPE_CHECKING}.
    """
    found: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            # "from tchat.cluster import scripts" imports the submodule.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in modules
                else node.module
                for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def _cycle(graph: Mapping[str, AbstractSet[str]]) -> list[str] | None:
    """One import cycle of C{graph}, if it has any."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle is not None:
            return cycle
    return None


class ImportTests(SynchronousTestCase):
    """
    Imports only go down.
    """

    def setUp(self) -> None:
        self.modules = _modules()
        self.graph = _graph()

    def test_no_cycle(self) -> None:
        """
        No module of tchat imports, directly or not, one that imports it,
        counting imports inside functions and under C{TYPE_CHECKING}.
        """
        self.assertIn("tchat.presence", self.graph["tchat.concerns"])
        self.assertIsNone(_cycle(self.graph))

    def test_cycle_found(self) -> None:
        """
        The check above finds a cycle where there is one.
        """
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
        self.assertEqual(_cycle(graph), ["a", "b", "c", "a"])

    def test_cluster_chosen_once(self) -> None:
        """
        Outside the cluster's own code, C{tchat.tap} (which chooses the
        backplane) and C{tchat.config}, no module imports the cluster's
        code or C{txredisapi}.
        """
        offenders = []
        for name, path in self.modules.items():
            if name.startswith(ONE_NODE_OR_MANY):
                continue
            for node in ast.walk(_tree(path)):
                imported = []
                if isinstance(node, ast.Import):
                    imported = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module is not None:
                    imported = [node.module]
                for module in imported:
                    if module.startswith(("tchat.cluster", "txredisapi")):
                        offenders.append(f"{name} imports {module}")
        self.assertEqual(offenders, [])

    def test_no_cluster_branches(self) -> None:
        """
        Outside those modules, no code asks whether this node is in a
        cluster: no name, attribute or argument is called C{cluster}.
        """
        offenders = []
        for name, path in self.modules.items():
            if name.startswith(ONE_NODE_OR_MANY):
                continue
            for node in ast.walk(_tree(path)):
                word = None
                if isinstance(node, ast.Attribute):
                    word = node.attr
                elif isinstance(node, ast.Name):
                    word = node.id
                elif isinstance(node, ast.arg):
                    word = node.arg
                if word is not None and "cluster" in word.lower():
                    line = getattr(node, "lineno", 0)
                    offenders.append(f"{name}:{line}: {word}")
        self.assertEqual(offenders, [])


class SizeTests(SynchronousTestCase):
    """
    The hub is a short façade; modules and classes hold one concern each.
    """

    def test_hub(self) -> None:
        """C{tchat/hub.py} is at most 600 lines."""
        lines = len((PACKAGE / "hub.py").read_text().splitlines())
        self.assertLessEqual(lines, HUB_LINES)

    def test_modules(self) -> None:
        """No module of tchat is longer than 900 lines."""
        long = {
            name: count
            for name, path in _modules().items()
            if (count := len(path.read_text().splitlines())) > MODULE_LINES
        }
        self.assertEqual(long, {})

    def test_classes(self) -> None:
        """No class of tchat is longer than 500 lines."""
        long = {}
        for name, path in _modules().items():
            for node in ast.walk(_tree(path)):
                if isinstance(node, ast.ClassDef):
                    count = (node.end_lineno or node.lineno) - node.lineno + 1
                    if count > CLASS_LINES:
                        long[f"{name}.{node.name}"] = count
        self.assertEqual(long, {})
