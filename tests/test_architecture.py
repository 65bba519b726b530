"""The package's shape, checked from its source: sub-packages along the data flow, imports only downward, no
cycles, no private names across modules, no oversized files. `python -m pytest tests/test_architecture.py -q`
prints what breaks a rule; `python tests/test_architecture.py` prints the import graph's figures."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lazarus_nb"
# Each sub-package may import only from those before it in this order (the data flow: a model, its prompts and
# tokens, measurements on them, training, typed results, text and figures of results, the steps, front ends).
ORDER = ("exports", "errors", "files", "model", "data", "measure", "train", "results", "show", "run", "app")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _imports(path: Path) -> list[tuple[ast.ImportFrom | ast.Import, str, str, bool]]:
    """(node, imported module, imported name, function-local) for every import of this package in ``path``."""
    tree = ast.parse(path.read_text())
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lazarus_nb"):
            assert not node.level, f"{path}: use absolute imports"
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                out.append((node, target if target in MODULES else node.module, alias.name, id(node) in local))
        elif isinstance(node, ast.Import):
            out += [(node, a.name, "", id(node) in local) for a in node.names if a.name.startswith("lazarus_nb")]
    return out


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for _, target, _, _ in _imports(path):
            if target in MODULES and target != mod and not mod.startswith(target + "."):
                edges[mod].add(target)
    return edges


def _rank(module: str) -> int | None:
    parts = module.split(".")
    return ORDER.index(parts[1]) if len(parts) > 1 and parts[1] in ORDER else None


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def levels(edges: dict[str, set[str]]) -> int:
    memo: dict[str, int] = {}

    def depth(v: str) -> int:
        if v not in memo:
            memo[v] = 1 + max((depth(w) for w in edges[v]), default=0)
        return memo[v]

    return max(depth(v) for v in edges)


def test_no_import_cycles():
    assert _cycles(_edges()) == []


def test_imports_only_go_down_the_data_flow():
    upward = []
    for mod, targets in _edges().items():
        for target in targets:
            a, b = _rank(mod), _rank(target)
            if a is not None and b is not None and b > a:
                upward.append(f"{mod} imports {target}")
    assert upward == []


def test_every_module_sits_in_a_known_sub_package():
    loose = [m for m in MODULES if m != "lazarus_nb" and m not in ("lazarus_nb.__main__",) and _rank(m) is None]
    assert loose == []


def test_no_private_names_across_modules():
    crossing = [f"{mod}: {name} from {target}" for mod, path in MODULES.items()
                for _, target, name, _ in _imports(path) if name.startswith("_") and target != mod]
    assert crossing == []


def test_function_local_imports_say_why():
    """A function-local import is allowed only to keep a heavy library (mlx, mlx-lm, matplotlib) off a fast path;
    each says so in a comment on its line or the line above."""
    silent = []
    for path in MODULES.values():
        lines = path.read_text().splitlines()
        for node, _, _, local in _imports(path):
            if local and "#" not in lines[node.lineno - 1] and not lines[node.lineno - 2].strip().startswith("#"):
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert sorted(set(silent)) == []


@pytest.mark.parametrize("folder", ["lazarus_nb", "bench"])
def test_no_file_over_the_size_limit(folder):
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}


def test_sub_package_inits_stay_light():
    """The CLI checks a request before it loads mlx: no sub-package ``__init__`` imports anything but the lazy
    exporter when imported (their public names resolve on first use)."""
    eager = [str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*/__init__.py")
             for node in ast.parse(path.read_text()).body if isinstance(node, (ast.Import, ast.ImportFrom))
             and getattr(node, "module", None) != "lazarus_nb.exports"]
    assert eager == []


def test_the_cli_checks_requests_without_loading_mlx_lm():
    """Importing the command line (what `lazarus-nb --help` and every pre-load check pay) keeps mlx-lm and
    matplotlib unloaded."""
    code = "import sys, lazarus_nb.app.cli; print(sorted(m for m in ('mlx_lm', 'matplotlib') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_public_surface_resolves():
    """The names the notebooks use (``import lazarus_nb as L``; ``L.run.probe_family``, ...) all exist."""
    code = ("import lazarus_nb as L\n"
            "for pkg in ('run', 'show', 'app'):\n"
            "    sub = getattr(L, pkg)\n"
            "    [getattr(sub, n) for n in sub.__all__]\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


if __name__ == "__main__":
    e = _edges()
    largest = max((len(p.read_text().splitlines()), str(p.relative_to(ROOT))) for p in MODULES.values())
    print(f"modules {len(MODULES)}; cycles {len(_cycles(e))}; levels {levels(e)}; largest {largest[1]}:{largest[0]}")
