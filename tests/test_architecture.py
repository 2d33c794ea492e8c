"""The dependency rules of docs/architecture.md, checked on every run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_import_contracts_are_kept():
    result = subprocess.run([str(LINT_IMPORTS)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


PRODUCT_PACKAGES = ("core", "supply", "models", "library", "devicekeys", "provisioning", "transport", "tufrepo",
                    "websession", "webserver", "appliance", "central", "firmware", "testbed", "bench")


def _import_cycles(graph) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """Strongly connected groups of more than one module (Tarjan), iteratively: the tree is deep."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))
    return cycles


def test_no_module_imports_itself_round_a_circle_type_only_imports_included():
    import grimp

    # grimp reads every import statement, those under ``if TYPE_CHECKING:`` too.
    graph = grimp.build_graph(*PRODUCT_PACKAGES, include_external_packages=False)
    assert _import_cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    class Graph:
        def __init__(self) -> None:
            self.modules = {"a", "b", "c", "d"}
            self.edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

        def find_modules_directly_imported_by(self, module: str) -> set[str]:
            return self.edges[module]

    assert _import_cycles(Graph()) == [["a", "b", "c"]]


def _importers_of(module: str) -> set[str]:
    pattern = re.compile(rf"^\s*(from|import)\s+{re.escape(module)}\b", re.MULTILINE)
    found = set()
    for package in ("core", "supply", "models", "library", "devicekeys", "provisioning", "transport", "appliance",
                    "central", "firmware"):
        for path in (ROOT / package).rglob("*.py"):
            if pattern.search(path.read_text()):
                found.add(str(path.relative_to(ROOT)))
    return found


def test_paho_is_imported_in_one_module():
    assert _importers_of("paho") == {"transport/mqtt.py"}


def test_topics_are_built_only_in_core_topics():
    offenders = [
        str(p.relative_to(ROOT))
        for package in ("appliance", "central")
        for p in (ROOT / package).rglob("*.py")
        if re.search(r"['\"]rfr/v1/", p.read_text())
    ]
    assert offenders == []
