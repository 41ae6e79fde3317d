"""quack's serial split-K (quack_w4a16_gemm / _rowalpha_gemm buckets with split_k > 1) on a Hopper
GPU: every split-K bucket against the float64 reference (NaN-poisoned outputs, poisoned
workspace), bitwise-repeatable calls, the flags back at zero after every call, one flag buffer
shared by buckets of different tilings (as Nvfp4Linear shares it), and Nvfp4Linear(quack=True) captured into
CUDA graphs at several M replayed interleaved with fresh data: a flag left non-zero by any launch
would make a later one skip its wait (wrong sums) or spin (the run's timeout)."""

import pytest
import torch

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.quack_w4a16.prepare import dequantize, random_nvfp4_weights
from nvfp4_aot.runtime.linear import Nvfp4Linear
from nvfp4_aot.runtime.scratch import OpScratch

from .graphs import capture, replay_without_allocating

pytestmark = pytest.mark.gpu
DEV = torch.device("cuda")
FAMS = ("quack_w4a16_gemm", "quack_w4a16_rowalpha_gemm")


def split_ops(store):
    ops = [op for op in store.ops.values() if op.spec["family"] in FAMS and any(op.scratch(hi) for _, hi in op.bucket_edges())]
    assert ops, "no quack_w4a16 op with a split_k > 1 bucket in the store (manifests/default.toml has some)"
    return ops


def split_ms(op):
    """Token counts of the split-K buckets: both edges and a ragged middle."""
    return [m for lo, hi in op.bucket_edges() if op.scratch(hi) for m in sorted({lo, (lo + hi) // 2 + 1, hi})]


def test_split_k_buckets_match_reference_repeat_bitwise_and_clean_flags(store, seed):
    failures = []
    for op in split_ops(store):
        fam = get_family(op.spec["family"])
        ms = split_ms(op)
        scratch = OpScratch(op, max(ms), DEV)  # one flag buffer for every bucket, as Nvfp4Linear
        for i, m in enumerate(ms):
            kern = op.kernel_for(m)
            p = fam.parse_params(kern.record["params"])
            inputs = fam.make_inputs(p, m, DEV, seed + i)
            scratch.buffers["workspace"].fill_(float("nan"))  # never read before split 0 stores it
            inputs["flags"], inputs["workspace"] = scratch(m)
            want = fam.reference(p, inputs)
            op(*[inputs[a.name] for a in kern.validator.args])
            torch.cuda.synchronize()
            bad = fam.check(p, inputs, want)
            first = inputs["out"].clone()
            inputs["out"].fill_(float("nan"))
            op(*[inputs[a.name] for a in kern.validator.args])
            torch.cuda.synchronize()
            if not torch.equal(inputs["out"], first):
                bad.append("second call not bitwise equal (serial split-K is deterministic)")
            if scratch.buffers["flags"].any():
                bad.append(f"{int(scratch.buffers['flags'].count_nonzero())} flags non-zero after the calls")
            failures += [f"{op.name} M={m} ({p.tile_m}x{p.tile_n} split_k={p.split_k}): {b}" for b in bad]
    assert not failures, "\n".join(failures)


def test_linear_graphs_at_several_m_share_self_cleaning_flags(store, seed, monkeypatch):
    """For every layer shape whose quack op has split-K buckets (two global scales for the
    row-alpha family): Nvfp4Linear graphs at up to 4 split-K token counts + one unsplit bucket.
    Nvfp4Linear's default path serves w4a16_ws_gemm on some M ranges of some shapes
    (kernels/w4a16_ws/tiles.py WS_OVER_QUACK): emptied here, so that quack serves every M above 32."""
    import nvfp4_aot.runtime.linear as linear

    monkeypatch.setattr(linear, "WS_OVER_QUACK", {})
    for qop in split_ops(store):
        _linear_graphs(store, seed, qop)


def _linear_graphs(store, seed, qop):
    n, k = qop.spec["problem"]["n"], qop.spec["problem"]["k"]
    parts = (n - n // 4, n // 4) if qop.spec["family"] == "quack_w4a16_rowalpha_gemm" else None
    gen = torch.Generator(device=DEV).manual_seed(seed)
    q, sf = random_nvfp4_weights(n, k, gen, DEV)
    s2 = (torch.rand((len(parts) if parts else 1,), generator=gen, device=DEV) + 0.5) * 2.0**-7
    edges = qop.bucket_edges()
    last_split = max(i for i, (_, hi) in enumerate(edges) if qop.scratch(hi))
    unsplit = [edges[last_split + 1][0]] if last_split + 1 < len(edges) else []
    ms = [m for m in split_ms(qop) if m > 32][:4] + unsplit
    lin = Nvfp4Linear(store, q, sf.view(torch.float8_e4m3fn), s2, max_tokens=max(ms), part_sizes=parts, device=DEV,
                      quack=True)
    assert lin.upper_op is qop and lin.upper_scratch.buffers, f"{qop.name}: Nvfp4Linear(quack=True) did not open it with scratch"
    ms = [m for m in ms if m > lin.upper_from]
    rows = torch.repeat_interleave(s2.double(), torch.tensor(parts, device=DEV)) if parts else s2.double()
    w = dequantize(q, sf).double() * rows.reshape(-1, 1)
    assert ms and any(qop.scratch(m) for m in ms), (qop.name, ms)
    xs = {m: torch.empty((m, k), dtype=torch.bfloat16, device=DEV) for m in ms}
    outs = {m: torch.empty((m, n), dtype=torch.bfloat16, device=DEV) for m in ms}
    for m in ms:
        lin(xs[m].normal_(), outs[m])  # warm
    graphs = {m: capture(lambda m=m: lin(xs[m], outs[m]))[0] for m in ms}
    fam = get_family(qop.spec["family"])
    for r in range(3):
        for m in (ms if r % 2 == 0 else ms[::-1]):
            xs[m].normal_(generator=gen)
            outs[m].fill_(float("nan"))
            replay_without_allocating(graphs[m], f"M={m}")
            want = xs[m].double() @ w.T
            bad = fam.check(fam.parse_params(qop.kernel_for(m).record["params"]), {"out": outs[m]}, {"out": want})
            assert not bad, f"{qop.name} round {r} M={m}: {bad}"
    assert not lin.upper_scratch.buffers["flags"].any()
