"""Nsight Compute target (docs/PERFORMANCE.md "session 8, ncu"): one warm-up and one profiled launch (between
torch.cuda.profiler.start / stop, so run ncu with --profile-from-start off) of each dense kernel Nvfp4Linear serves or could serve
for gate+up (6144x7168), o_b (7168x2048) and the two-scale q_a+kv (2048x7168) at M = 256 and 1024 (PROF_M: a
comma list): ours (w4a16_ws_gemm), quack, torch bf16.

    ncu --clock-control none --profile-from-start off --section SpeedOfLight ... python3 scripts/ncu_dense.py STORE
    PROF_ONLY=gate+up ncu ... (one shape only)"""
import os
import sys

import torch
from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime import open_store
from nvfp4_aot.runtime.linear import WORD_ORDER
from nvfp4_aot.runtime.scratch import OpScratch

store = open_store(sys.argv[1] if len(sys.argv) > 1 else ".gpu/artifacts")
dev = torch.device("cuda")
fam = get_family("w4a16_gemm")
MS = [int(m) for m in os.environ.get("PROF_M", "256,1024").split(",")]
for name, n, k, fq in (("gate+up", 6144, 7168, "quack_w4a16_gemm"), ("o_b", 7168, 2048, "quack_w4a16_gemm"),
                       ("q_a+kv", 2048, 7168, "quack_w4a16_rowalpha_gemm")):
    if os.environ.get("PROF_ONLY") and name != os.environ["PROF_ONLY"]:
        continue
    op = store.op("w4a16_gemm", n=n, k=k, act_order="natural", word_order=WORD_ORDER)
    p = fam.parse_params(op.kernel_for(1).record["params"])
    b = fam.make_inputs(p, max(MS), dev, seed=n)
    wop = store.op("w4a16_ws_gemm", n=n, k=k, word_order=WORD_ORDER)
    qop = store.op(fq, n=n, k=k)
    ws, qs = OpScratch(wop, max(MS), dev), OpScratch(qop, max(MS), dev)
    w16 = torch.randn((n, k), device=dev, dtype=torch.bfloat16)
    for m in MS:
        a, o = b["act"][:m], b["out"][:m]
        qa = b["alpha"] if fq.endswith("rowalpha_gemm") else b["alpha"][:1].contiguous()
        for tag, fn in (("ws " + str(wop.kernel_for(m).record["params"]), lambda: wop(a, b["blob"], b["sf"], b["alpha"], o, *ws(m), check=False)),
                        ("quack", lambda: qop(a, b["blob"], b["sf"], qa, o, *qs(m), check=False)),
                        ("torch", lambda: torch.matmul(a, w16.T))):
            fn()
            torch.cuda.synchronize()
            print(f"PROF {name} M={m} {tag}", flush=True)
            torch.cuda.profiler.start()
            fn()
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
