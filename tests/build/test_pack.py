"""`nvfp4-build pack`: reproducible wheel/tarball of a verified store, metadata, refusals; stores
found by name through the `nvfp4_aot.stores` entry-point group (in-process; the fresh-venv
install is tests/test_ship.py)."""

import hashlib
import base64
import json
import shutil
import sys
import tarfile
import zipfile

import pytest

from conftest import run_cli, tamper_lib
from nvfp4_aot.runtime import TamperedArtifactError, open_store
from nvfp4_aot.runtime.installed import PACKAGE_META, resolve
from nvfp4_aot.runtime.store_format import INDEX_NAME, StoreFormatError, StoreIndex, load_index, read_index, store_digest


def _drop_tables(root):
    """Rewrite a store's index without its dispatch tables, digest recomputed (a valid store)."""
    index = load_index(root)
    (root / INDEX_NAME).write_text(json.dumps(StoreIndex.build(index.entries, {}).to_json()))


def _pack(store, out, *extra):
    return json.loads(run_cli("pack", str(store), "--name", "small", "-o", str(out), "--json", *extra).stdout)


def test_pack_twice_gives_identical_bytes(built_store, tmp_path):
    for fmt in ("wheel", "tar"):
        a = _pack(built_store, tmp_path / "a", "--format", fmt)
        b = _pack(built_store, tmp_path / "b", "--format", fmt)
        assert (tmp_path / "a").joinpath(a["path"].rsplit("/", 1)[1]).read_bytes() == open(b["path"], "rb").read()
        assert a["store_digest"] == b["store_digest"] == store_digest(built_store)
    # a copy of the store elsewhere, with a leftover staging dir, packs to the same bytes
    copy = tmp_path / "copy"
    shutil.copytree(built_store, copy)
    (copy / "tmp" / "leftover.123").mkdir(parents=True)
    c = _pack(copy, tmp_path / "c")
    assert open(c["path"], "rb").read() == open(_pack(built_store, tmp_path / "d")["path"], "rb").read()


def test_wheel_layout_and_metadata(built_store, small_manifest, tmp_path):
    p = _pack(built_store, tmp_path, "--version", "1.2.0")
    assert p["path"].endswith("nvfp4_aot_store_small-1.2.0-py3-none-linux_x86_64.whl")
    cache_key = run_cli("cache-key", str(small_manifest)).stdout.strip()
    assert p["cache_key"] == cache_key
    z = zipfile.ZipFile(p["path"])
    names = z.namelist()
    info = "nvfp4_aot_store_small-1.2.0.dist-info"
    index = read_index(built_store)
    assert f"nvfp4_aot_store_small/store/{INDEX_NAME}" in names
    assert {n.split("/")[3] for n in names if "/entries/" in n} == set(index["entries"])
    assert not any("/tmp/" in n or n.endswith(".lock") for n in names)
    assert z.read(f"{info}/entry_points.txt").decode() == "[nvfp4_aot.stores]\nsmall = nvfp4_aot_store_small\n"
    meta = json.loads(z.read(f"{info}/{PACKAGE_META}"))
    assert meta["store_digest"] == p["store_digest"] and meta["cache_key"] == cache_key
    assert meta["archs"] == ["sm_100a", "sm_90a"] and meta["entries"] == len(index["entries"])
    md = z.read(f"{info}/METADATA").decode()
    assert "Name: nvfp4-aot-store-small\n" in md and "Version: 1.2.0\n" in md and f"cache-key: {cache_key}" in md
    assert "Requires-Dist: apache-tvm-ffi==" in md
    # RECORD lists every other member with its urlsafe sha256 and size
    rows = [r.split(",") for r in z.read(f"{info}/RECORD").decode().splitlines()]
    assert sorted(r[0] for r in rows) == sorted(names)
    for path, digest, size in rows:
        if path != f"{info}/RECORD":
            data = z.read(path)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={want}" and int(size) == len(data)
    assert {zi.date_time for zi in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_tarball_unpacks_to_an_openable_store(built_store, tmp_path):
    p = _pack(built_store, tmp_path, "--format", "tar")
    with tarfile.open(p["path"]) as t:
        assert {m.mtime for m in t.getmembers()} == {0} and {m.uid for m in t.getmembers()} == {0}
        t.extractall(tmp_path / "x", filter="data")
    root = tmp_path / "x" / "small"
    assert resolve(root)[1]["store_digest"] == p["store_digest"]
    s = open_store(root, arch="sm_90a", load=False)
    assert len(s.kernels) == 4
    # an index rewritten consistently (valid, own digest) is no longer the packaged store
    _drop_tables(root)
    with pytest.raises(TamperedArtifactError, match="differs from its package"):
        open_store(root, arch="sm_90a", load=False)
    r = run_cli("verify", str(root), check=False)
    assert r.returncode == 1 and "differs from its package" in r.stderr


def test_pack_refusals(built_store, store_copy, tmp_path):
    key = tamper_lib(store_copy, at=-1)
    r = run_cli("pack", str(store_copy), "--name", "small", "-o", str(tmp_path / "o"), check=False)
    assert r.returncode == 1 and "does not verify, refusing to pack" in r.stderr and key in r.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    shard = tmp_path / "shard"
    shutil.copytree(built_store, shard)
    _drop_tables(shard)
    r = run_cli("pack", str(shard), "--name", "small", "-o", str(tmp_path / "o"), check=False)
    assert r.returncode == 1 and "merge" in r.stderr
    for name in ("Bad", "a_b", "-x", "x" * 70):
        r = run_cli("pack", str(built_store), "--name", name, "-o", str(tmp_path / "o"), check=False)
        assert r.returncode == 2 and "--name" in r.stderr, (name, r.stderr)
    r = run_cli("pack", str(built_store), "--name", "ok", "--version", "v1", "-o", str(tmp_path / "o"), check=False)
    assert r.returncode == 2 and "PEP 440" in r.stderr


def test_open_and_verify_by_installed_name(built_store, tmp_path, monkeypatch):
    """An installed wheel, unzipped onto sys.path as pip would lay it out (site-packages)."""
    site = tmp_path / "site"
    zipfile.ZipFile(_pack(built_store, tmp_path / "w")["path"]).extractall(site)
    monkeypatch.syspath_prepend(str(site))
    s = open_store("small", arch="sm_90a", load=False)
    assert s.root == site / "nvfp4_aot_store_small" / "store" and len(s.kernels) == 4
    with pytest.raises(StoreFormatError, match="no installed store of that name.*installed stores: .*small"):
        open_store("smal", arch="sm_90a", load=False)
    env = {"PYTHONPATH": f"{site}:{':'.join(sys.path)}"}
    r = run_cli("verify", "small", "--json", env=env)
    assert json.loads(r.stdout)["checked"] == 8
    from nvfp4_aot.runtime.__main__ import main

    assert main(["verify", "small"]) == 0
    # the vLLM plugin's NVFP4_AOT_ARTIFACTS takes the name too
    from nvfp4_aot.vllm_plugin import artifacts

    monkeypatch.setenv(artifacts.ARTIFACTS_ENV, "small")
    opened = []
    monkeypatch.setattr(artifacts, "_open", lambda spec, device: opened.append(spec) or "store")
    artifacts.reset_stores()
    assert artifacts.get_store() == "store" and opened == ["small"]
    artifacts.reset_stores()
    # a flipped byte inside the installed store is refused by open and by both verifies
    key = tamper_lib(s.root, at=300, mask=4)
    with pytest.raises(TamperedArtifactError, match=key):
        open_store("small", arch="sm_90a", load=False)
    assert main(["verify", "small"]) == 1
    r = run_cli("verify", "small", env=env, check=False)
    assert r.returncode == 1 and key in r.stderr
