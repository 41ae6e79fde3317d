"""MoE-layer checks shared by the GPU tests of MoERunner (test_moe_runner_gpu.py at DeepSeek-V4 sizes,
test_rot_runners_gpu.py in word order "rot"): fresh routed inputs, one call into a NaN-poisoned output
against the float64 reference, and graph replays with new tokens and routings."""

import torch

from nvfp4_aot.kernels.moe_glue.ref import make_routing

from .graphs import capture, replay_without_allocating

DEV = torch.device("cuda")


def moe_inputs(m: int, seed: int, mode: str, experts: int, hidden: int, top_k: int):
    """x [m, hidden] bf16, topk ids (routing `mode`, kernels/moe_glue/ref.py), normalized weights, expert_start."""
    ids, start = make_routing(m, top_k, experts, seed, mode)
    g = torch.Generator(device=DEV).manual_seed(seed)
    x = torch.randn((m, hidden), generator=g, device=DEV).to(torch.bfloat16)
    w = torch.rand((m, top_k), generator=g, device=DEV)
    return x, ids.to(DEV), (w / w.sum(1, keepdim=True)).float().contiguous(), start


def check_moe(runner, expert_weights, m: int, seed: int, mode: str, tol: float) -> str | None:
    """One runner call at M = m into a NaN-poisoned output against moe_ref (float64); None or what failed."""
    from nvfp4_aot.runtime.moe import moe_ref

    e, h = runner.num_experts, runner.hidden
    x, ids, w, start = moe_inputs(m, seed, mode, e, h, runner.top_k)
    runner.expert_start.fill_(start)
    out = torch.full((m, h), float("nan"), dtype=torch.bfloat16, device=DEV)
    runner(x, ids, w, out=out)
    torch.cuda.synchronize()
    want = moe_ref(x, ids, w, expert_weights, e, start)
    got = out.double()
    if not torch.isfinite(got).all():
        return f"M={m} {mode}: {int((~torch.isfinite(got)).sum())} non-finite outputs"
    if want.norm() == 0:
        return None if bool((got == 0).all()) else f"M={m} {mode}: nonzero output with no local slot"
    err = ((got - want).norm() / want.norm()).item()
    print(f"M={m:5} {mode:14} tier {runner.tier_for(m)} rel err {err:.2e}")
    return None if err <= tol else f"M={m} {mode} (tier {runner.tier_for(m)}): relative Frobenius error {err:.3e} > {tol}"


def check_replays(runner, m: int, seed: int, modes) -> None:
    """Capture the runner at M = m, replay with fresh tokens and routings of each mode (this rank's
    expert_start kept), nothing allocated; each replay bitwise equal to an eager call."""
    e, h = runner.num_experts, runner.hidden
    x, ids, w, start = moe_inputs(m, seed, "local", e, h, runner.top_k)
    runner.expert_start.fill_(start)
    out = torch.empty((m, h), dtype=torch.bfloat16, device=DEV)
    runner(x, ids, w, out=out)  # warm
    graph, _ = capture(lambda: runner(x, ids, w, out=out))
    for r, mode in enumerate(modes):
        x2, ids2, w2, _ = moe_inputs(m, seed + 1000 + r, mode, e, h, runner.top_k)
        ids2 = ids2 % e + start if mode != "uniform" else ids2  # keep this rank's start fixed
        x.copy_(x2), ids.copy_(ids2), w.copy_(w2)
        out.fill_(float("nan"))
        replay_without_allocating(graph, f"M={m} {mode}")
        eager = runner(x, ids, w)
        torch.cuda.synchronize()
        assert torch.equal(out, eager), f"M={m} {mode}: replay != eager"
