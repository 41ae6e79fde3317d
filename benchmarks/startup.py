"""Start-up: time until every variant of a manifest is callable, for a sweep of variant counts.

  jit  (CPU box, no GPU needed): for each count n, a fresh process imports the DSL and
       cute.compile()s the first n variants of ARCH in manifest order, as a server that
       JIT-compiles at start-up would. Writes --json.
  aot  (any box; primes on a GPU): for each count n, a fresh process imports the runtime, opens
       a store holding n of the store's ARCH entries (index + sha256 of every file + ABI + arch),
       loads every module through tvm-ffi and, with a GPU, primes each kernel once. Prints the
       ratio against --jit-json at the full count; writes --json.

--counts: comma-separated variant counts (default 1,4,16,41,all; counts above what the manifest /
store holds are clipped). Both JSON files: {"mode", "arch", "device", "machine", "date",
"command", "points": [{"variants", "seconds", ...}]}; scripts/plot_startup.py plots them.
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

JIT_CHILD = """
import os, sys, time, json
t0 = time.perf_counter()
import cutlass.cute as cute
from nvfp4_aot.build.manifest import load_manifest
from nvfp4_aot.build.keys import compile_options
from nvfp4_aot.kernels import get_family
arch = os.environ["CUTE_DSL_ARCH"]
n = 0
for v in [v for v in load_manifest(sys.argv[1]).variants() if v.arch == arch][: int(sys.argv[2])]:
    fam = get_family(v.family)
    fn, fake = fam.compile_args(fam.parse_params(v.params), arch)
    cute.compile(fn, *fake, options=compile_options(arch))
    n += 1
print(json.dumps({"variants": n, "seconds": time.perf_counter() - t0}))
"""

AOT_CHILD = """
import sys, time, json
t0 = time.perf_counter()
import torch
import nvfp4_aot.runtime as rt
gpu = torch.cuda.is_available()
if gpu:  # the CUDA context is the server's cost either way (JIT or AOT): not counted
    torch.zeros(1, device="cuda"); torch.cuda.synchronize()
t1 = time.perf_counter()
s = rt.open(sys.argv[1], **({} if gpu else {"arch": sys.argv[2]}))
t2 = time.perf_counter()
primed = s.prime() if gpu else 0
t3 = time.perf_counter()
print(json.dumps({"variants": len(s.kernels), "import_s": t1 - t0, "open_load_s": t2 - t1,
                  "prime_s": t3 - t2, "primed": primed, "seconds": t3 - t1,
                  "device": torch.cuda.get_device_name() if gpu else "cpu (no prime)"}))
"""


def subset_store(src: Path, n: int, arch: str, dst: Path) -> int:
    """A copy of `src` holding its first n `arch` entries (by family, params) and the dispatch
    tables those entries complete; the copy is a valid store (the runtime opens it)."""
    from nvfp4_aot.runtime.store_format import ENTRIES_DIR, INDEX_NAME, ManifestTable, StoreIndex, load_index, write_json_atomic

    index = load_index(src)
    mine = sorted((k for k, r in index.entries.items() if r.arch == arch),
                  key=lambda k: (index.entries[k].family, json.dumps(dict(index.entries[k].params), sort_keys=True), k))[:n]  # fmt: skip
    keep = set(mine)
    (dst / ENTRIES_DIR).mkdir(parents=True)
    for k in mine:
        shutil.copytree(src / ENTRIES_DIR / k, dst / ENTRIES_DIR / k)
    tables = {}
    for name, m in index.manifests.items():
        # only this arch's rows: the other archs' entries are not in the copy
        ops = {o: dataclasses.replace(t, buckets=tuple(dataclasses.replace(b, variants={arch: b.variants[arch]}) for b in t.buckets))
               for o, t in m.ops.items() if all(b.variants.get(arch) in keep for b in t.buckets)}  # fmt: skip
        if ops:
            tables[name] = ManifestTable(m.path, ops)
    sub = StoreIndex.build({k: index.entries[k] for k in mine}, tables)
    write_json_atomic(dst / INDEX_NAME, sub.to_json())
    return len(mine)


def counts_arg(text: str, available: int) -> list[int]:
    out = sorted({available if c == "all" else min(int(c), available) for c in text.split(",") if c})
    return [c for c in out if c >= 1]


def child(code: str, *args: str, env=None) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"child failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["jit", "aot"])
    ap.add_argument("--manifest", default=None)
    ap.add_argument("--store", default="artifacts")
    ap.add_argument("--arch", default="sm_90a")
    ap.add_argument("--counts", default="1,4,16,41,all", help="variant counts of the sweep (all: every variant)")
    ap.add_argument("--json", default=None, help="where to write the sweep")
    ap.add_argument("--jit-json", default=None, help="aot: the jit result to compare against")
    a = ap.parse_args()
    meta = {"mode": a.mode, "arch": a.arch, "date": datetime.date.today().isoformat(),
            "command": "benchmarks/startup.py " + " ".join(sys.argv[1:]), "points": []}  # fmt: skip
    if a.mode == "jit":
        from nvfp4_aot.build.manifest import default_manifest_path, load_manifest

        manifest = a.manifest or str(default_manifest_path())
        total = sum(v.arch == a.arch for v in load_manifest(manifest).variants())
        # A cold container start: no DSL disk cache to hit.
        env = {**os.environ, "CUTE_DSL_ARCH": a.arch, "CUDA_VISIBLE_DEVICES": "", "CUTE_DSL_NO_CACHE": "1"}
        meta.update(device=f"CPU: {_cpu_name()}, {os.cpu_count()} cores",
                    machine="CPU build box, DSL disk cache off (cute.compile needs no GPU)", manifest=Path(manifest).name,
                    load_avg_at_start=[round(x, 2) for x in os.getloadavg()])  # fmt: skip
        for n in counts_arg(a.counts, total):
            res = child(JIT_CHILD, manifest, str(n), env=env)
            meta["points"].append(res)
            print(f"JIT: {res['variants']} {a.arch} variants compiled in {res['seconds']:.1f} s (incl. DSL import)")
        # the full count at the top level, as before (tests/gpu/run.sh compares against it)
        meta.update(variants=meta["points"][-1]["variants"], seconds=meta["points"][-1]["seconds"])
    else:
        from nvfp4_aot.runtime.store_format import read_index

        total = sum(r["arch"] == a.arch for r in read_index(Path(a.store))["entries"].values())
        with tempfile.TemporaryDirectory() as tmp:
            for n in counts_arg(a.counts, total):
                root = Path(a.store) if n == total else Path(tmp) / f"n{n}"
                if n != total:
                    subset_store(Path(a.store), n, a.arch, root)
                res = child(AOT_CHILD, str(root), a.arch)
                meta["points"].append(res)
                print(
                    f"AOT on {res['device']}: {res['variants']} variants callable in {res['seconds'] * 1e3:.0f} ms "
                    f"(open+verify+load {res['open_load_s'] * 1e3:.0f} ms, prime {res['prime_s'] * 1e3:.0f} ms; "
                    f"not counted: import + CUDA context {res['import_s'] * 1e3:.0f} ms, which a JIT server pays too)"
                )
        res = meta["points"][-1]
        meta.update(device=res["device"], machine=f"{res['device']}, {platform.node() or 'GPU machine'}",
                    variants=res["variants"], seconds=res["seconds"])  # fmt: skip
        if a.jit_json:
            with open(a.jit_json) as f:
                jit = json.load(f)
            print(f"JIT ({jit['machine']}): {jit['variants']} variants in {jit['seconds']:.1f} s")
            print(f"start-up ratio JIT / AOT: {jit['seconds'] / res['seconds']:.0f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(meta, f, indent=1)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
