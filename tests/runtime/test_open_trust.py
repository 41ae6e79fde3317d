"""Store trust at open: records bound to their content, malformed indexes refused cleanly,
no path leaves the store (issue 13). Every refusal is a StoreFormatError naming file and field."""

import json
import os

import pytest
from store_edit import load, save, swap_entries, two_keys

from nvfp4_aot.runtime import StoreFormatError, TamperedArtifactError, open_store
from nvfp4_aot.runtime.store_format import (
    ENTRIES_DIR,
    INDEX_NAME,
    EntryRecord,
    StoreIndex,
    entry_symbol,
    load_index,
    store_digest,
)


def _open(store, load=False):
    return open_store(store, arch="sm_90a", load=load)


@pytest.mark.parametrize("load_modules", [False, True])
def test_swapped_entries_with_rewritten_fields_refused(store_copy, load_modules):
    # The attack of issue 13: swap two entries' .so files, rewrite sha256, size and symbol.
    a, b = two_keys(load(store_copy))
    swap_entries(store_copy, a, b)
    with pytest.raises(StoreFormatError, match=r"entries\.[0-9a-f]{32}\.symbol: is 'nvfp4aot_test_scale_[0-9a-f]{32}', must be"):
        _open(store_copy, load_modules)


@pytest.mark.parametrize("load_modules", [False, True])
def test_plain_swap_with_hashes_rewritten_refused(store_copy, load_modules):
    a, b = two_keys(load(store_copy))
    swap_entries(store_copy, a, b, rewrite=("sha256", "size"))
    with pytest.raises(TamperedArtifactError, match="meta.json: disagrees with the index record"):
        _open(store_copy, load_modules)
    # ... and with each meta.json rewritten to match, the exported symbol gives it away
    for k, rec in load(store_copy)["entries"].items():
        (store_copy / ENTRIES_DIR / k / "meta.json").write_text(json.dumps(rec))
    with pytest.raises(TamperedArtifactError, match=r"does not export __tvm_ffi_nvfp4aot_test_scale_"):
        _open(store_copy, load_modules)


def test_relabelled_params_refused_and_key_recomputable(store_copy):
    idx = load(store_copy)
    for rec in idx["entries"].values():  # every record's key is the one its own fields give
        assert EntryRecord.from_json(rec).expected_key() == rec["key"]
        assert rec["symbol"] == entry_symbol(rec["family"], rec["key"])
    a, _ = two_keys(idx)
    idx["entries"][a]["params"]["n"] = 128
    save(store_copy, idx)
    with pytest.raises(StoreFormatError, match=rf"entries\.{a}\.key: does not match the record's own fields"):
        _open(store_copy)


def test_table_redirected_to_another_entry_refused(store_copy):
    idx = load(store_copy)
    a, b = two_keys(idx)
    op = idx["manifests"]["small"]["ops"]["test_scale.alpha=2.0.n=64"]
    assert op["buckets"][0]["variants"]["sm_90a"] == a
    op["buckets"][0]["variants"]["sm_90a"] = b  # n=64 calls would run the n=128 kernel
    save(store_copy, idx)
    with pytest.raises(StoreFormatError, match=rf"variants.sm_90a: entry {b} is test_scale sm_90a .*not this op's"):
        _open(store_copy)


def test_digest_detects_an_edit_and_is_stable(store_copy, built_store):
    d = store_digest(built_store)
    assert d == store_digest(store_copy) == load(built_store)["digest"] and len(d) == 64
    idx = load(store_copy)
    idx["manifests"]["small"]["path"] = "/elsewhere/small.toml"  # informational: not in the digest
    save(store_copy, idx, redigest=False)
    assert store_digest(store_copy) == d
    del idx["manifests"]["small"]["ops"]["test_scale.alpha=2.0.n=64"]
    save(store_copy, idx, redigest=False)
    with pytest.raises(StoreFormatError, match=r"index.json: digest: is '[0-9a-f]{8}.*the records give"):
        store_digest(store_copy)


def _records(idx):
    return next(iter(idx["entries"].values()))


MALFORMED = [  # (edit of the index JSON, field named in the message)
    (lambda i: i["entries"].__setitem__(next(iter(i["entries"])), 7), r"entries\.[0-9a-f]{32}: must be an object, got 7"),
    (lambda i: i.__setitem__("manifests", {"small": []}), r"manifests\.small: must be an object, got \[\]"),
    (lambda i: i["manifests"]["small"].__setitem__("ops", {"x": {"family": "test_scale"}}), r"manifests\.small\.ops\.x\.buckets: missing"),
    (lambda i: _records(i).__setitem__("size", "53848"), r"\.size: must be an integer >= 1, got '53848'"),
    (lambda i: _records(i).__setitem__("signature", {"args": 3}), r"\.signature\.static: missing"),
    (lambda i: _records(i)["signature"].__setitem__("args", [{"name": "x"}]), r"\.signature\.args\[0\]\.dtype: missing"),
    (lambda i: _records(i)["signature"]["args"][0].__setitem__("shape", ["M // 0", "N"]), r"args\[0\]\.shape\[0\]: invalid shape expression 'M // 0'"),
    (lambda i: _records(i)["signature"]["args"][0].__setitem__("shape", ["__import__('os')"]), r"args\[0\]\.shape\[0\]: invalid shape expression"),
    (lambda i: _records(i)["signature"]["args"][0].__setitem__("dtype", "__class__"), r"args\[0\]\.dtype: must be one of"),
    (lambda i: _records(i).__setitem__("surprise", 1), r"entries\.[0-9a-f]{32}\.surprise: unknown field \(format 2 has"),
    (lambda i: i.__setitem__("extra", {}), r"index.json\.extra: unknown field"),
    (lambda i: i.__setitem__("format", 1), r"format 1 is not 2 \(rebuild"),
    (lambda i: i["entries"].__setitem__("../../gc_victim", _records(i)), r"entries: '\.\./\.\./gc_victim' is not an entry key"),
    (lambda i: i["entries"].__setitem__(".", _records(i)), r"entries: '\.' is not an entry key"),
    (lambda i: i["entries"].__setitem__("A" * 32, _records(i)), r"is not an entry key \(32 lowercase hex digits\)"),
]


@pytest.mark.parametrize("edit, needle", MALFORMED)
def test_malformed_index_refused_naming_the_field(store_copy, edit, needle):
    idx = load(store_copy)
    edit(idx)
    save(store_copy, idx)
    with pytest.raises(StoreFormatError, match=needle):
        _open(store_copy)


def test_not_json_object_and_not_utf8(store_copy):
    (store_copy / INDEX_NAME).write_text("[1, 2]")
    with pytest.raises(StoreFormatError, match="format None is not 2"):
        _open(store_copy)
    (store_copy / INDEX_NAME).write_bytes(b'{"format": 2, "x": "\xff"}')
    with pytest.raises(StoreFormatError, match="unreadable index"):
        _open(store_copy)
    (store_copy / INDEX_NAME).write_text("[" * 100000)
    with pytest.raises(StoreFormatError, match="unreadable index"):
        _open(store_copy)


def test_symlinks_inside_the_store_refused(store_copy, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    key = sorted(load(store_copy)["entries"])[0]
    d = store_copy / ENTRIES_DIR / key
    (outside / "kernel.so").write_bytes((d / "kernel.so").read_bytes())
    os.unlink(d / "kernel.so")
    os.symlink(outside / "kernel.so", d / "kernel.so")  # same bytes, but outside the store
    with pytest.raises(StoreFormatError, match=r"kernel.so: symlinks are refused inside a store"):
        _open(store_copy)
    os.unlink(d / "kernel.so")
    os.rename(d, outside / key)
    os.symlink(outside / key, d)  # the whole entry dir
    with pytest.raises(StoreFormatError, match=rf"{key}: symlinks are refused inside a store"):
        _open(store_copy)


def test_typed_index_round_trips(built_store):
    index = load_index(built_store)
    assert StoreIndex.from_json(json.loads(json.dumps(index.to_json()))) == index
    rec = next(iter(index.entries.values()))
    assert rec["params"] == rec.params and rec.to_json()["key"] == rec.key
