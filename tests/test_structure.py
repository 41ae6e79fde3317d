"""Package structure rules (GUIDE.md): no module over 600 lines, no import cycle between modules
(module-level imports: the ones that run at import time), no production import of a test
reference (`ref.py`) from the runtime, the build or the vLLM plugin."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("build", "kernels", "runtime", "vllm_plugin")
MAX_LINES = 600
# Cycles to tolerate (none: issue 11 broke kernels/w4a16/kernel.py <-> wgmma.py).
KNOWN_CYCLES: set = set()


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            rel = p.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods["nvfp4_aot." + ".".join(parts)] = p
    return mods


def _edges(name: str, path: Path, mods: dict[str, Path], top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    pkg = name if is_pkg else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # statements at module level, including inside if / try blocks there
        stack, nodes = list(tree.body), []
        while stack:
            n = stack.pop()
            nodes.append(n)
            if isinstance(n, (ast.If, ast.Try)):
                stack += n.body + n.orelse + getattr(n, "finalbody", []) + [s for h in getattr(n, "handlers", []) for s in h.body]
    out = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                anchor = pkg.rsplit(".", n.level - 1)[0] if n.level > 1 else pkg
                base = f"{anchor}.{n.module}" if n.module else anchor
            out.add(base)
            out |= {f"{base}.{a.name}" for a in n.names if f"{base}.{a.name}" in mods}
    return {m for m in out if m in mods and m != name}


def test_no_module_over_600_lines():
    big = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert not {n: k for n, k in big.items() if k > MAX_LINES}


def _cycles(top_level_only: bool) -> list[list[str]]:
    mods = _modules()
    graph = {n: _edges(n, p, mods, top_level_only) for n, p in mods.items()}
    index, low, on, stack, comps = {}, {}, set(), [], []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def test_no_import_cycle():
    cycles = [c for c in _cycles(top_level_only=True) if frozenset(c) not in KNOWN_CYCLES]
    assert not cycles, cycles


def test_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    """The checker itself: a two-module cycle is reported."""
    pkg = tmp_path / "runtime"
    pkg.mkdir()
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("from .a import x\n")
    for p in PACKAGES:
        (tmp_path / p).mkdir(exist_ok=True)
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert _cycles(top_level_only=True) == [["nvfp4_aot.runtime.a", "nvfp4_aot.runtime.b"]]


def test_no_production_import_of_a_reference():
    """runtime/, build/ and vllm_plugin/ never import a kernels ref module (test references);
    family specs may, lazily, for make_inputs / reference / check (tests and `verify --run`)."""
    mods = _modules()
    bad = []
    for name, path in mods.items():
        if name.split(".")[1] not in ("runtime", "build", "vllm_plugin"):
            continue
        bad += [f"{name} -> {m}" for m in _edges(name, path, mods, top_level_only=False) if m.endswith(".ref")]
    assert not bad, bad
