"""Fuzz (issue 13): random mutations of a small store's index.json and of a manifest never
give a traceback, never touch anything outside the store, and are either refused with the
documented exit code (1 verify failure, 3 manifest, 5 malformed store) or still verify."""

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from store_edit import save

from nvfp4_aot.build.cli import main
from nvfp4_aot.build.verify import verify_store
from nvfp4_aot.runtime import Nvfp4AotError, StoreFormatError, open_store
from nvfp4_aot.runtime.store_format import INDEX_NAME

# CI: 60 fixed examples each (~10 s); NVFP4_AOT_FUZZ=N runs N fresh random ones to hunt for bugs.
_N = int(os.environ.get("NVFP4_AOT_FUZZ", "0"))
FUZZ = settings(max_examples=_N or 60, deadline=None, derandomize=not _N, suppress_health_check=list(HealthCheck))

SPICY = st.sampled_from(["../../gc_victim", "../gc_victim", ".", "..", "", "/", "entries", "0" * 32, "f" * 31,
                         "sm_90a", "sm_100a", "M // 0", "round_up(M, 0)", "__import__('os')", "\x00", "é" * 40])  # fmt: skip
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8), SPICY)
VALUES = st.recursive(SCALARS, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.one_of(st.text(max_size=4), SPICY), c, max_size=3)), max_leaves=6)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _mutate(obj, data):
    """One random edit: replace a node, delete or add a key, rename a key (an entry key, often)."""
    paths = list(_paths(obj))
    path = data.draw(st.sampled_from(paths))
    op = data.draw(st.sampled_from(["replace", "delete", "add", "rename"]))
    if not path:
        return data.draw(VALUES) if op == "replace" else obj
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if op == "replace":
        parent[last] = data.draw(VALUES)
    elif op == "delete":
        del parent[last]
    elif op == "add" and isinstance(parent[last], dict):
        parent[last][data.draw(st.one_of(st.text(max_size=6), SPICY))] = data.draw(VALUES)
    elif op == "rename" and isinstance(parent, dict):
        parent[data.draw(SPICY)] = parent.pop(last)
    return obj


def _invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), f"traceback from {args}: {r.exc_info}"
    return r.exit_code


def _snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() if p.is_file() else None for p in sorted(d.rglob("*"))}


@pytest.fixture(scope="module")
def fuzz_root(built_store, tmp_path_factory, small_manifest):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "gc_victim").mkdir()
    (root / "gc_victim" / "precious").write_text("keep me")  # a sentinel beside the store
    drop_all = root / "drop_all.toml"  # keeps nothing: gc tries to remove every listed entry
    drop_all.write_text(small_manifest.read_text().replace("n = [64, 128]", "n = [256]"))
    return root, built_store, drop_all


@FUZZ
@given(data=st.data(), redigest=st.booleans(), n_edits=st.integers(1, 3))
def test_fuzzed_index_is_refused_or_verifies(fuzz_root, data, redigest, n_edits):
    root, built, drop_all = fuzz_root
    store = root / "artifacts"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(built, store)
    outside = _snapshot(root / "gc_victim")
    idx = json.loads((store / INDEX_NAME).read_text())
    for _ in range(n_edits):
        idx = _mutate(idx, data)
    save(store, idx, redigest=redigest)

    rep = verify_store(store)
    try:
        open_store(store, arch="sm_90a", load=False)
        refused = None
    except (StoreFormatError, Nvfp4AotError) as e:  # every refusal of open is one of these
        refused = e
    event(f"verify {'ok' if rep.ok else 'malformed' if rep.malformed else 'failed'}, open {type(refused).__name__}")
    if rep.ok:  # a verified store opens (or names an op defined twice, say: not a store error)
        assert not isinstance(refused, StoreFormatError), refused
    else:
        assert refused is not None, rep.errors
    assert _invoke("verify", store) in ((0,) if rep.ok else (1, 5))
    assert _invoke("ls", store, "--json") in ((0, 5))
    assert _invoke("gc", drop_all, "-o", store) in (0, 5)
    assert _snapshot(root / "gc_victim") == outside
    assert sorted(p.name for p in root.iterdir()) == ["artifacts", "drop_all.toml", "gc_victim"]


MANIFEST = """\
archs = ["sm_90a"]
description = \"\"\"multi-line
[[op]]
\"\"\"

[[op]]
family = "test_scale"
problem = { n = [64, 128], alpha = 2.0 }
buckets = [
  { m = [1, 16], tuning = { threads = 64 } },
  { m = [17, 4096] },
]
"""
TOKENS = st.sampled_from(["[[op]]", "[", "]", "{", "}", '"""', "'''", "=", ",", "[]", "{}", "\n", "-1", "0", "1e999",
                          "nan", "inf", "true", "k", "n", "family", "problem", "buckets", "tuning", "archs", "m",
                          '"sm_90a"', '"test_scale"', "\xff", "\x00", "é", "#"])  # fmt: skip


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(MANIFEST)), st.integers(0, 8), TOKENS), min_size=1, max_size=4),
       raw_byte=st.booleans())  # fmt: skip
def test_fuzzed_manifest_is_refused_or_parses(tmp_path_factory, edits, raw_byte):
    text = MANIFEST
    for pos, cut, tok in edits:
        text = text[:pos] + tok + text[pos + cut :]
    p = tmp_path_factory.mktemp("m") / "fuzzed.toml"
    data = text.encode("utf-8", "surrogatepass")
    p.write_bytes(data.replace("ÿ".encode(), b"\xff") if raw_byte else data)
    code = _invoke("cache-key", p)
    event(f"cache-key exit {code}")
    assert code in (0, 3)


@FUZZ
@given(data=st.data(), n_edits=st.integers(1, 3))
def test_fuzzed_manifest_tables_are_refused_or_parse(data, n_edits):
    """Structured edits of the parsed manifest (types, keys, values) reach the semantic checks."""
    import sys

    from nvfp4_aot.build.keys import variant_key
    from nvfp4_aot.build.manifest import ManifestError, _parse

    tomllib = __import__("tomllib" if sys.version_info >= (3, 11) else "tomli")
    doc = tomllib.loads(MANIFEST)
    for _ in range(n_edits):
        doc = _mutate(doc, data)
    assume(isinstance(doc, dict))  # TOML's top level is always a table
    try:
        m = _parse(doc, Path("fuzzed.toml"), [6])
    except ManifestError as e:
        assert str(e).startswith("fuzzed.toml:"), e
        event("refused")
        return
    event("parsed")
    assert all(len(variant_key(v)) == 32 for v in m.variants())
