"""Tuning sweep of w4a16_grouped_gemm (L1 and L2, SWEEP_EXPERTS experts (48), tokens per expert
1/16/128 or argv[2:], unpadded groups as MoERunner lays them out; each store's act order is the one it
was built with, ACT_ORDER picks one when a store has several): one store per tuning
(scripts/sweep_w4a16.sh builds them), device time from graph replays, fraction of copy bandwidth on
weight bytes. The inputs of each (shape, token count) are made once and shared by every tuning
(weights do not depend on it).
ROUTING: "exact" (default) gives every expert t rows; a moe_glue routing mode (kernels/moe_glue/ref.py
make_routing: "local", "skewed", ...) routes t * E / 6 tokens top-6 as MoERunner would see them, so
the per-expert counts vary around t and a tiling whose token tile is smaller than an expert's count
pays one more pass over that expert's weights: the tables' row edges are chosen on such counts."""

import os
import sys
from pathlib import Path

import torch
from common import MOE_SHAPES, TOPK, copy_bandwidth, device_name, find_op, time_cuda

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.w4a16 import is_ring, ring_ctas, tail_units
from nvfp4_aot.kernels.moe_glue.ref import make_routing
from nvfp4_aot.runtime import open_store
from nvfp4_aot.runtime.layout import ACT_ORDERS

E = int(os.environ.get("SWEEP_EXPERTS", 48))
ROUTING = os.environ.get("ROUTING", "exact")
# SWEEP_SHAPES "L1=NxK,L2=NxK" (DeepSeek-V4 Pro's, common.MOE_SHAPES, by default; Flash: "L1=4096x4096,L2=4096x2048"),
# as the stores were built (scripts/sweep_w4a16.sh SWEEP_L1 / SWEEP_L2)
SHAPES = MOE_SHAPES
if "SWEEP_SHAPES" in os.environ:
    SHAPES = {name: tuple(int(x) for x in nk.split("x"))
              for name, nk in (kv.split("=") for kv in os.environ["SWEEP_SHAPES"].split(","))}
DENSE = {"gate_up": (6144, 7168), "q_a+kv": (2048, 7168), "o_b": (7168, 2048), "q_b": (65536, 1536)}


def dense(store, name, bw, dev) -> None:
    fam = get_family("w4a16_gemm")
    for shape, (n, k) in DENSE.items():
        op = find_op(store, "w4a16_gemm", n=n, k=k)
        res = []
        for m in (1, 16, 64):
            p = fam.parse_params(op.kernel_for(m).record["params"])
            b = fam.make_inputs(p, m, dev, seed=m)
            args = [b[a.name] for a in op.kernel_for(m).validator.args]
            tt = time_cuda(lambda: op(*args, check=False), reps=10)
            res.append(f"M={m}: {tt * 1e6:6.1f} us ({n * k * 9 // 16 / tt / bw:5.1%})")
        print(f"{name:20} {shape:8}: " + " | ".join(res))


_INPUTS: dict = {}


def inputs(fam, p, rows: int, seed: int, dev):
    """make_inputs once per (n, k, experts, act_order, word_order, rows, seed); the other tuning
    fields of p do not change what it makes. The output is re-poisoned for every use."""
    key = (p.n, p.k, p.experts, p.act_order, p.word_order, rows, seed)
    if key not in _INPUTS:
        _INPUTS[key] = fam.make_inputs(p, rows, dev, seed=seed)
    b = _INPUTS[key]
    b["out"].fill_(float("nan"))
    return b


def grouped_op(store, n: int, k: int):
    """The store's w4a16_grouped_gemm op of (n, k, E): ACT_ORDER's act order first, then any."""
    want = os.environ.get("ACT_ORDER", "natural")
    for order in (want, *[o for o in ACT_ORDERS if o != want]):
        try:
            return find_op(store, "w4a16_grouped_gemm", n=n, k=k, experts=E, act_order=order)
        except SystemExit:  # not built with this order (the store's word order is the tilings' own)
            continue
    raise SystemExit(f"{store.root}: no w4a16_grouped_gemm n={n} k={k} experts={E} in any act order {ACT_ORDERS}")


def group_counts(t: float):
    """Rows per expert at t slots per expert on average (ROUTING, module docstring); sum <= t * E.
    Routed, t may be a fraction (t * E / 6 tokens, at least 1: t = 0.125 at 48 experts is one token,
    six active experts, as MoERunner sees a single-token decode step)."""
    if ROUTING == "exact":
        return torch.full((E,), int(t), dtype=torch.int64)
    tokens = max(1, round(t * E / TOPK))
    ids, start = make_routing(tokens, TOPK, E, seed=t if isinstance(t, int) else tokens, mode=ROUTING)
    local = ids.flatten().long() - start
    return torch.bincount(local[(local >= 0) & (local < E)], minlength=E)


def waves(p, n: int, active: int, sms: int) -> str:
    """Split "n" ring tilings: the launch's CTAs (one per 16 rb warps weight rows of each expert with
    rows) over the SMs' slots at ring_ctas(p) CTAs per SM (the residency the launch is built for), so
    a tail wave shows next to the time (docs/PERFORMANCE.md "session 21": 4.36 / 5.09 waves)."""
    if not is_ring(p):
        return ""
    ctas = n // (16 * p.rb * p.warps) * active
    line = f", {ctas} CTAs = {ctas / (sms * ring_ctas(p)):.2f} waves at {ring_ctas(p)}/SM"
    if p.tail:  # W4A16Params.tail: the last wave's units as two half CTAs each (tail_item)
        line += f", tail {p.tail} SMs: {tail_units(ctas, p.tail * ring_ctas(p), min, max)} units halved"
    return line


def main(root: str, tokens: tuple[float, ...] = (1, 16, 128)) -> None:
    fam = get_family("w4a16_grouped_gemm")
    bw = copy_bandwidth()
    dev = torch.device("cuda")
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    print(f"device: {device_name()}; copy {bw / 1e12:.2f} TB/s; {E} experts, routing {ROUTING}")
    for d in sorted(Path(root).iterdir()):
        store = open_store(d)
        store.prime()
        if d.name.startswith("dense_"):
            dense(store, d.name, bw, dev)
            continue
        if d.name.startswith("quack_"):  # benchmarks/quack_w4a16_sweep.py
            continue
        for name, (n, k) in SHAPES.items():
            op = grouped_op(store, n, k)
            res = []
            if name == "L2":  # correctness of every tuning: a ragged tile count (20 tokens/expert)
                p = fam.parse_params(op.kernel_for(20 * E).record["params"])
                b = inputs(fam, p, 20 * E, 20, dev)
                op(*[b[a.name] for a in op.kernel_for(20 * E).validator.args])
                bad = fam.check(p, b, fam.reference(p, b))
                res.append("CHECK OK" if not bad else f"CHECK FAILED {bad}")
            for t in tokens:
                counts = group_counts(t)
                rows, active = int(counts.sum()), int((counts > 0).sum())  # weight bytes: experts with rows
                p = fam.parse_params(op.kernel_for(rows).record["params"])
                b = inputs(fam, p, rows, hash(t) % 1000, dev)
                b["offsets"].copy_(torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(dev, torch.int32))
                b["counts"].copy_(counts.to(dev, torch.int32))
                args = [b[a.name] for a in op.kernel_for(rows).validator.args]
                tt = time_cuda(lambda: op(*args, check=False), reps=10)
                res.append(f"t={t}: {tt * 1e6:6.0f} us ({active * (n * k * 9 // 16) / tt / bw:5.1%} of copy, "
                           f"{2.0 * rows * n * k / tt / 1e12:.0f} TFLOP/s{waves(p, n, active, sms)})")
            print(f"{d.name:14} {name}: " + " | ".join(res))


if __name__ == "__main__":
    main(sys.argv[1], tuple(float(x) if "." in x else int(x) for x in sys.argv[2:]) or (1, 16, 128))
