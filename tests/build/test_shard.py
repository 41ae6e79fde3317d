"""Sharded builds and merge: 3 shards merged == one build; conflicts, missing shards, tampered
shards refused; the merge commits its index last."""

import dataclasses
import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_cli, tamper_lib
from nvfp4_aot.build.shard import SHARD_NAME, MergeError, Shard, _check_toolchain, merge_stores
from nvfp4_aot.build.verify import verify_store
from nvfp4_aot.runtime.store_format import ENTRIES_DIR, INDEX_NAME, META_NAME, StoreIndex, load_index, read_index, sha256_file


def _records_without_timing(index):
    return {k: {f: v for f, v in r.items() if f != "compile_seconds"} for k, r in index["entries"].items()}


@given(st.lists(st.text("0123456789abcdef", min_size=32, max_size=32), max_size=50), st.integers(1, 7))
@settings(max_examples=50, deadline=None)
def test_shards_partition_the_keys(keys, n):
    owners = [[i for i in range(1, n + 1) if Shard(i, n).holds(k)] for k in keys]
    assert all(len(o) == 1 for o in owners)  # every key in exactly one shard


def test_shard_spec_parsing():
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    for bad in ("0/3", "4/3", "1/0", "x", "1-3"):
        with pytest.raises(ValueError, match="expected I/N"):
            Shard.parse(bad)
    r = run_cli("compile", "--shard", "4/3", "-o", "unused", check=False)
    assert r.returncode == 2 and "expected I/N" in r.stderr


@pytest.fixture(scope="module")
def shard_stores(tmp_path_factory, small_manifest):
    root = tmp_path_factory.mktemp("shards")
    outs = []
    for i in (1, 2, 3):
        out = root / f"shard{i}"
        r = run_cli("compile", str(small_manifest), "-o", str(out), "--shard", f"{i}/3", "--json")
        summary = json.loads(r.stdout)
        assert summary["shard"] == f"{i}/3"
        outs.append(out)
    return outs


def test_three_shards_merged_equal_a_single_build(shard_stores, built_store, tmp_path):
    full = read_index(built_store)
    per_shard = [set(read_index(s)["entries"]) for s in shard_stores]
    assert sum(map(len, per_shard)) == len(full["entries"]) and set().union(*per_shard) == set(full["entries"])
    for s in shard_stores:  # a shard is a verifiable store with its tables aside
        assert read_index(s)["manifests"] == {} and verify_store(s).ok
        assert json.loads((s / SHARD_NAME).read_text())["manifests"]["small"]["ops"] == full["manifests"]["small"]["ops"]
    out = tmp_path / "merged"
    r = run_cli("merge", *map(str, shard_stores), "-o", str(out), "--json")
    rep = json.loads(r.stdout)
    assert rep["entries"] == len(full["entries"]) and sorted(rep["added"]) == sorted(full["entries"])
    merged = read_index(out)
    assert _records_without_timing(merged) == _records_without_timing(full)
    assert merged["manifests"]["small"]["ops"] == full["manifests"]["small"]["ops"]
    rep = verify_store(out, load=True)
    assert rep.ok and not rep.notes, (rep.errors, rep.notes)
    # merging again (e.g. a restored cache) adds nothing; a full store merges too (identical records)
    again = json.loads(run_cli("merge", *map(str, shard_stores), str(built_store), "-o", str(out), "--json").stdout)
    assert again["added"] == [] and again["present"] == len(full["entries"])


def test_a_missing_shard_is_refused(shard_stores, tmp_path):
    r = run_cli("merge", str(shard_stores[0]), str(shard_stores[2]), "-o", str(tmp_path / "m"), check=False)
    assert r.returncode == 1 and "is a shard missing?" in r.stderr and "manifest 'small'" in r.stderr
    assert not (tmp_path / "m" / INDEX_NAME).exists()


def _rewrite_entry(store, key, data: bytes):
    """Replace an entry's library and make its record, meta.json and the index digest agree
    (a consistent store holding a different build of the same key)."""
    lib = store / ENTRIES_DIR / key / "kernel.so"
    lib.write_bytes(data)
    index = load_index(store)
    entries = {**index.entries, key: dataclasses.replace(index.entries[key], sha256=sha256_file(lib), size=len(data))}
    (store / INDEX_NAME).write_text(json.dumps(StoreIndex.build(entries, index.manifests).to_json()))
    (store / ENTRIES_DIR / key / META_NAME).write_text(json.dumps(entries[key].to_json()))


def test_conflicting_records_for_one_key_are_refused(built_store, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(built_store, other)
    key = sorted(read_index(other)["entries"])[0]
    _rewrite_entry(other, key, (other / ENTRIES_DIR / key / "kernel.so").read_bytes() + b"\0")
    assert verify_store(other).ok  # each store alone is consistent
    r = run_cli("merge", str(built_store), str(other), "-o", str(tmp_path / "m"), check=False)
    assert r.returncode == 1, r.stderr
    assert f"entry {key}" in r.stderr and "different records" in r.stderr and "sha256" in r.stderr
    # ... also against an entry already in the output store
    out = tmp_path / "out"
    shutil.copytree(built_store, out)
    r = run_cli("merge", str(other), "-o", str(out), check=False)
    assert r.returncode == 1 and "different records" in r.stderr


def test_a_tampered_shard_is_refused(store_copy, tmp_path):
    key = tamper_lib(store_copy, at=200)
    r = run_cli("merge", str(store_copy), "-o", str(tmp_path / "m"), check=False)
    assert r.returncode == 1 and "does not verify" in r.stderr and key in r.stderr


def test_mixed_toolchains_are_refused(tmp_path):
    rec = {"dsl_version": "4.8.0", "tvm_ffi_version": "0.1.11", "dsl_runtime_fingerprint": "a"}
    _check_toolchain({"k1": (rec, tmp_path / "a"), "k2": (dict(rec), tmp_path / "b")})
    with pytest.raises(MergeError, match="different toolchains.*dsl_version 4.8.0 vs 4.9.0"):
        _check_toolchain({"k1": (rec, tmp_path / "a"), "k2": ({**rec, "dsl_version": "4.9.0"}, tmp_path / "b")})


def test_merge_killed_before_its_index_leaves_the_output_readable(shard_stores, tmp_path, monkeypatch):
    from nvfp4_aot.build.store_writer import StoreWriter

    out = tmp_path / "m"

    def killed(self):
        raise KeyboardInterrupt("killed before the index")

    monkeypatch.setattr(StoreWriter, "_write_index", killed)
    with pytest.raises(KeyboardInterrupt):
        merge_stores(shard_stores, out)
    monkeypatch.undo()
    assert not (out / INDEX_NAME).exists() and any((out / ENTRIES_DIR).iterdir())  # renamed, unlisted
    rep = merge_stores(shard_stores, out)  # the next writer removes the orphans and completes
    assert rep.cleaned and len(rep.added) == rep.entries
    assert verify_store(out).ok and not verify_store(out).notes


def test_arch_and_shard_selection():
    from nvfp4_aot.build.manifest import Variant
    from nvfp4_aot.build.shard import selector

    assert selector(None, None) is None
    sel = selector(Shard(2, 2), ["sm_90a"])
    v90, v100 = Variant("f", {}, "sm_90a"), Variant("f", {}, "sm_100a")
    assert sel(v90, "1" * 32) and not sel(v90, "2" * 32) and not sel(v100, "1" * 32)
