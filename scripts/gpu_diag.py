"""Step-by-step smoke of a store on the GPU, each selected kernel in its own process with a
time limit (so a hang names its kernel and does not stop the others).

  gpu_diag.py STORE                 # driver: one child per (op, first bucket)
  gpu_diag.py STORE OP_NAME M       # child: one call, checked against the reference
"""

import faulthandler
import subprocess
import sys
import time

t0 = time.perf_counter()


def say(msg):
    print(f"[{time.perf_counter() - t0:7.3f}s] {msg}", flush=True)


def child(store_dir: str, op_name: str, m: int) -> None:
    faulthandler.dump_traceback_later(25, exit=True)
    import torch

    import nvfp4_aot.runtime as rt
    from nvfp4_aot.kernels import get_family

    store = rt.open(store_dir)
    op = store.ops[op_name]
    fam = get_family(op.spec["family"])
    kern = op.kernel_for(m)
    p = fam.parse_params(kern.record["params"])
    inputs = fam.make_inputs(p, m, torch.device("cuda"), seed=m)
    torch.cuda.synchronize()
    say(f"call {op_name} M={m} {kern.record['params']}")
    kern(*[inputs[a.name] for a in kern.validator.args])
    torch.cuda.synchronize()
    bad = fam.check(p, inputs, fam.reference(p, inputs))
    say(f"  -> {'OK' if not bad else bad}")


def driver(store_dir: str, picks: list[str]) -> int:
    import nvfp4_aot.runtime as rt

    store = rt.open(store_dir, arch="sm_90a", load=False)
    rc = 0
    for name, op in sorted(store.ops.items()):
        if picks and not any(p in name for p in picks):
            continue
        for lo, hi, _ in op._buckets:
            m = min(hi, lo + 3)
            r = subprocess.run([sys.executable, __file__, store_dir, name, str(m)], capture_output=True, text=True, timeout=60)
            tail = (r.stdout + r.stderr).strip().splitlines()[-6:]
            say(f"{name} M={m}: rc={r.returncode} | " + " | ".join(tail))
            rc |= r.returncode != 0
    return rc


if __name__ == "__main__":
    if len(sys.argv) == 4:
        child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(driver(sys.argv[1], sys.argv[2:]))
