"""CLI side of issue 13: exit codes and one-line messages for malformed stores and manifests,
gc confined to the store, symlinks refused, workers dying with their parent."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from store_edit import load, save, swap_entries, two_keys

from conftest import run_cli
from nvfp4_aot.build.cli import main
from nvfp4_aot.runtime.store_format import ENTRIES_DIR, INDEX_NAME, TMP_DIR, store_digest


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), f"traceback: {r.exc_info}"
    return r


def _victim(store: Path) -> Path:
    v = store.parent / "gc_victim"
    v.mkdir(exist_ok=True)
    (v / "precious").write_text("keep me")
    return v


@pytest.mark.parametrize("bad_key", ["../../gc_victim", "../gc_victim", ".", "..", "entries", "/tmp"])
def test_gc_cannot_leave_the_store(store_copy, small_manifest, tmp_path, bad_key):
    victim = _victim(store_copy)
    idx = load(store_copy)
    rec = dict(next(iter(idx["entries"].values())))
    idx["entries"][bad_key] = rec
    save(store_copy, idx)
    other = tmp_path / "other.toml"  # a manifest that keeps nothing: gc wants to drop every entry
    other.write_text(small_manifest.read_text().replace("n = [64, 128]", "n = [256]"))
    r = cli("gc", other, "-o", store_copy)
    assert r.exit_code == 5 and "is not an entry key" in r.output and r.output.count("\n") == 1, r.output
    assert (victim / "precious").read_text() == "keep me"
    assert len(list((store_copy / ENTRIES_DIR).iterdir())) == 8  # nothing removed


def test_verify_and_ls_exit_5_naming_the_field(store_copy):
    pristine = load(store_copy)
    idx = load(store_copy)
    key = sorted(idx["entries"])[0]
    idx["entries"][key]["size"] = "big"
    save(store_copy, idx)
    for cmd in ("ls", "verify"):
        r = cli(cmd, store_copy)
        assert r.exit_code == 5, r.output
        assert f"entries.{key}.size: must be an integer >= 1, got 'big'" in r.output and r.output.count("\n") == 1
    idx["entries"][key] = ["not", "an", "object"]
    save(store_copy, idx)
    assert cli("ls", store_copy, "--json").exit_code == 5
    idx = pristine
    idx["manifests"] = {"small": {"path": "x", "ops": []}}
    save(store_copy, idx)
    r = cli("verify", store_copy, "--json")
    assert r.exit_code == 5 and "manifests.small.ops: must be an object" in r.output


def test_swapped_entries_refused_by_verify(store_copy):
    a, b = two_keys(load(store_copy))
    swap_entries(store_copy, a, b, rewrite=("sha256", "size"))  # .so swapped, hashes rewritten, digest recomputed
    r = cli("verify", store_copy)
    assert r.exit_code == 1 and r.output.count("meta.json: disagrees with the index record") == 2, r.output
    swap_entries(store_copy, a, b, rewrite=("symbol",), files=False)  # the symbols rewritten to match too
    r = cli("verify", store_copy)
    assert r.exit_code == 5 and ".symbol: is 'nvfp4aot_test_scale_" in r.output and r.output.count("\n") == 1


def test_digest_printed_by_verify_and_ls(built_store):
    d = store_digest(built_store)
    r = cli("verify", built_store, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["digest"] == d
    assert json.loads(cli("ls", built_store, "--json").stdout)["digest"] == d
    assert f"digest {d}" in cli("ls", built_store).output


def test_symlinks_refused_and_never_followed(store_copy, small_manifest, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    os.symlink(outside, store_copy / TMP_DIR / "leftover")  # a link among the staging leftovers
    os.symlink(outside, store_copy / ENTRIES_DIR / ("0" * 32))  # and one among the entry dirs
    r = run_cli("compile", str(small_manifest), "-o", str(store_copy), "--json")
    assert len(json.loads(r.stdout)["manifests"]["small"]["cleaned"]) == 2
    assert (outside / "precious").read_text() == "keep me"  # the links went, not their targets
    assert not (store_copy / TMP_DIR / "leftover").is_symlink()
    key = sorted(load(store_copy)["entries"])[0]
    lib = store_copy / ENTRIES_DIR / key / "kernel.so"
    (outside / "kernel.so").write_bytes(lib.read_bytes())
    lib.unlink()
    os.symlink(outside / "kernel.so", lib)
    r = cli("verify", store_copy)
    assert r.exit_code == 1 and "kernel.so: symlinks are refused inside a store" in r.output
    os.rename(store_copy / ENTRIES_DIR, tmp_path / "real_entries")
    os.symlink(tmp_path / "real_entries", store_copy / ENTRIES_DIR)
    r = cli("gc", small_manifest, "-o", store_copy)
    assert r.exit_code == 5 and "entries: symlinks are refused inside a store" in r.output


def test_malformed_manifests_exit_3(tmp_path, built_store):
    cases = {
        "utf8.toml": (b'archs = ["sm_90a"]\n# caf\xe9\n', "utf8.toml:2: not valid UTF-8"),
        "empty.toml": (b'[[op]]\nfamily = "test_scale"\nproblem = { n = [] }\n',
                       "empty.toml:1: op[0].problem.n: is an empty list: the op would expand to 0 variants"),
        "multiline.toml": (b'description = """\n[[op]]\n"""\n\n[[op]]\nfamily = "test_scale"\nproblem = { n = 64 }\n'
                           b'\n[[op]]\nfamily = "test_scale"\nproblem = { n = 66 }\n',
                           "multiline.toml:9: op[1].buckets[0]: test_scale cannot implement"),
        "nested.toml": (b'[[op]]\nfamily = "test_scale"\nproblem = { n = [[64]] }\n', "op[0].buckets[0]: test_scale: parameter 'n' must be a single value"),
    }  # fmt: skip
    for name, (text, needle) in cases.items():
        p = tmp_path / name
        p.write_bytes(text)
        for args in (("cache-key", p), ("compile", p, "-o", tmp_path / "o"), ("gc", p, "-o", tmp_path / "o")):
            r = cli(*args)
            assert r.exit_code == 3 and needle in r.output and r.output.count("\n") == 1, (args, r.output)
    assert not (tmp_path / "o").exists()


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """Pids of the multiprocessing workers (spawn_main) whose parent is `pid`."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmd:
                out.append(int(d.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_workers_die_with_their_parent(tmp_path, small_manifest):
    out = tmp_path / "artifacts"
    cmd = [sys.executable, "-m", "nvfp4_aot.build.cli", "compile", str(small_manifest), "-o", str(out), "-j", "2"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        workers = []
        while not workers and time.time() < deadline and p.poll() is None:
            workers = _children(p.pid)
            time.sleep(0.02)
        assert workers, "no worker process seen"
        os.kill(p.pid, signal.SIGKILL)  # the parent only, not its process group
        p.wait()
        deadline = time.time() + 30
        while time.time() < deadline and any(map(_running, workers)):
            time.sleep(0.05)
        alive = [w for w in workers if _running(w)]  # (a zombie waiting for init to reap it is dead)
        assert not alive, f"workers {alive} outlived their parent"
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    r = run_cli("compile", str(small_manifest), "-o", str(out), "--json")
    assert json.loads(r.stdout)["manifests"]["small"]["variants"] == 8
    assert not any((out / TMP_DIR).iterdir()) and cli("verify", out).exit_code == 0
