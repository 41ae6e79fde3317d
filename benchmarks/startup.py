"""Start-up: time until every variant of a manifest is callable.

  jit  (CPU box, no GPU needed): a fresh process imports the DSL and cute.compile()s every
       variant of ARCH, as a server that JIT-compiles at start-up would. Writes --json.
  aot  (any box; primes on a GPU): a fresh process imports the runtime, opens the store
       (index + sha256 of every file + ABI + arch), loads every module through tvm-ffi and,
       with a GPU, primes each kernel once. Prints the ratio against --jit-json.
"""

import argparse
import json
import os
import subprocess
import sys
import time

JIT_CHILD = """
import os, sys, time, json
t0 = time.perf_counter()
import cutlass.cute as cute
from nvfp4_aot.build.manifest import load_manifest
from nvfp4_aot.build.keys import compile_options
from nvfp4_aot.kernels import get_family
arch = os.environ["CUTE_DSL_ARCH"]
n = 0
for v in load_manifest(sys.argv[1]).variants():
    if v.arch != arch:
        continue
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
    ap.add_argument("--json", default=None, help="jit: where to write the result")
    ap.add_argument("--jit-json", default=None, help="aot: the jit result to compare against")
    a = ap.parse_args()
    if a.mode == "jit":
        from nvfp4_aot.build.manifest import default_manifest_path

        # A cold container start: no DSL disk cache to hit.
        env = {**os.environ, "CUTE_DSL_ARCH": a.arch, "CUDA_VISIBLE_DEVICES": "", "CUTE_DSL_NO_CACHE": "1"}
        res = child(JIT_CHILD, a.manifest or str(default_manifest_path()), env=env)
        res.update(arch=a.arch, machine="CPU build box, 2 cores, DSL disk cache off (cute.compile needs no GPU)")
        print(f"JIT: {res['variants']} {a.arch} variants compiled in {res['seconds']:.1f} s (incl. DSL import)")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
        return
    res = child(AOT_CHILD, a.store, a.arch)
    print(
        f"AOT on {res['device']}: {res['variants']} variants callable in {res['seconds'] * 1e3:.0f} ms "
        f"(open+verify+load {res['open_load_s'] * 1e3:.0f} ms, prime {res['prime_s'] * 1e3:.0f} ms; "
        f"not counted: import + CUDA context {res['import_s'] * 1e3:.0f} ms, which a JIT server pays too)"
    )
    if a.jit_json:
        with open(a.jit_json) as f:
            jit = json.load(f)
        print(f"JIT ({jit['machine']}): {jit['variants']} variants in {jit['seconds']:.1f} s")
        print(f"start-up ratio JIT / AOT: {jit['seconds'] / res['seconds']:.0f}x")


if __name__ == "__main__":
    main()
