"""Content keys: stable across processes, sensitive to exactly the family whose source changed."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

from conftest import PLUGIN_DIR

KEYS_SCRIPT = textwrap.dedent("""
    import json, sys
    from nvfp4_aot.build.manifest import load_manifest, default_manifest_path
    from nvfp4_aot.build.keys import variant_key
    out = {}
    for path in sys.argv[1:]:
        for v in load_manifest(path).variants():
            out[f"{v.family}|{sorted(v.params.items())}|{v.arch}"] = variant_key(v)
    print(json.dumps(out))
""")


def keys_in_new_process(manifests, pythonpath):
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    r = subprocess.run([sys.executable, "-c", KEYS_SCRIPT, *map(str, manifests)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_keys_stable_and_family_scoped(tmp_path, small_manifest):
    from nvfp4_aot.build.manifest import default_manifest_path

    plugin = tmp_path / "plugin"
    shutil.copytree(PLUGIN_DIR, plugin)
    manifests = [small_manifest, default_manifest_path()]
    a = keys_in_new_process(manifests, plugin)
    b = keys_in_new_process(manifests, plugin)
    assert a == b and len(set(a.values())) == len(a)  # stable, and distinct per variant

    kernel = plugin / "nvfp4aot_testfam" / "kernel.py"
    kernel.write_text(kernel.read_text() + "\n# an edit to the test family's kernel source\n")
    c = keys_in_new_process(manifests, plugin)
    changed = {v for v in a if a[v] != c[v]}
    assert changed == {v for v in a if v.startswith("test_scale|")}

    # params and arch enter the key
    assert len({a[v] for v in a if v.startswith("nvfp4_quantize|")}) == len([v for v in a if v.startswith("nvfp4_quantize|")])


def test_source_closure_follows_imports():
    from nvfp4_aot.build.keys import source_closure

    closure = source_closure(["nvfp4_aot.kernels.nvfp4_quantize"], ("nvfp4_aot.",))
    assert "nvfp4_aot.kernels.family" in closure  # imported by the family module
    assert "nvfp4_aot.kernels.nvfp4_quantize.ref" in closure  # imported inside a method
    assert not any(m.startswith("nvfp4_aot.build") for m in closure)


def test_third_party_version_and_sources_enter_the_key(monkeypatch):
    from nvfp4_aot.build import keys

    fp = keys.third_party_fingerprint("quack-kernels")
    assert fp.startswith("quack-kernels==0.6.5:")
    before = {f: keys.family_fingerprint(f) for f in ("quack_w4a16_gemm", "nvfp4_quantize")}
    keys.family_fingerprint.cache_clear()
    monkeypatch.setattr(keys, "third_party_fingerprint", lambda dist: f"{dist}==9.9.9:feedface")
    try:
        after = {f: keys.family_fingerprint(f) for f in before}
    finally:
        keys.family_fingerprint.cache_clear()
    assert after["quack_w4a16_gemm"] != before["quack_w4a16_gemm"]  # a quack upgrade rebuilds it
    assert after["nvfp4_quantize"] == before["nvfp4_quantize"]  # and nothing else
