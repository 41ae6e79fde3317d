"""Torch references for the MoE glue families (they define the results; see the package
docstring) and their random inputs. Imported lazily: the build CLI never needs torch.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from nvfp4_aot.runtime.layout import capacity

from .spec_silu_mul import silu_mul as silu_mul_ref  # noqa: F401  (the definition lives with its family)

RANKS = 8  # expert-parallel ranks: global experts = RANKS * local experts
PAD = 128  # grouped-layout padding of combine's inputs (the GEMM tile M)
# Routing distributions; make_inputs picks one from the seed (seed % len(ROUTINGS)).
ROUTINGS = ("uniform", "local", "skewed", "one_expert", "empty_experts", "nonlocal")


def routing_mode(seed: int) -> str:
    return ROUTINGS[seed % len(ROUTINGS)]


def make_routing(m: int, topk: int, experts: int, seed: int, mode: str | None = None):
    """(topk_ids int32 [m, topk] of GLOBAL expert ids on the CPU, expert_start) for a rank of
    RANKS. Per token the ids are distinct (sampling without replacement by Gumbel top-k over
    expert weights), except "one_expert" (every slot on one local expert, duplicates within a
    token included) and where fewer experts than topk have weight (then with replacement).
      uniform        every global expert alike (~1/RANKS of the slots local)
      local          only this rank's experts
      skewed         heavy-tailed expert popularity, a few hot local experts
      empty_experts  half of the local experts never chosen (empty groups), the rest uniform
      nonlocal       no local expert at all (every slot dropped here)
    """
    mode = mode or routing_mode(seed)
    if mode not in ROUTINGS:
        raise ValueError(f"unknown routing {mode!r}; known: {ROUTINGS}")
    g = torch.Generator().manual_seed(seed)
    n_global = experts * RANKS
    start = int(torch.randint(RANKS, (1,), generator=g)) * experts
    local = slice(start, start + experts)
    if mode == "one_expert":
        e = int(torch.randint(experts, (1,), generator=g))
        return torch.full((m, topk), start + e, dtype=torch.int32), start
    w = torch.ones(n_global)
    if mode == "local":
        w.zero_()
        w[local] = 1.0
    elif mode == "skewed":
        w = torch.rand(n_global, generator=g).pow(6) + 1e-3
        hot = start + torch.randperm(experts, generator=g)[: max(1, experts // 8)]
        w[hot] *= 50.0
    elif mode == "empty_experts":
        w[start + torch.randperm(experts, generator=g)[: experts // 2]] = 0.0
    elif mode == "nonlocal":
        w[local] = 0.0
    if int((w > 0).sum()) >= topk:
        u = torch.rand((m, n_global), generator=g).clamp_min(1e-12)
        ids = (w.log() - (-u.log()).log()).topk(topk, dim=1).indices
    else:
        ids = torch.multinomial(w.expand(m, -1), topk, replacement=True, generator=g)
    return ids.to(torch.int32).contiguous(), start


# ----------------------------------------------------------------------------- route


def route_ref(topk_ids: torch.Tensor, expert_start: Any, experts: int, pad: int) -> dict[str, torch.Tensor]:
    """Grouped layout of the package docstring: counts, offsets, slot_of, src_token (int32)."""
    dev = topk_ids.device
    m, topk = topk_ids.shape
    start = int(expert_start.reshape(-1)[0]) if isinstance(expert_start, torch.Tensor) else int(expert_start)
    n = m * topk
    loc = topk_ids.reshape(-1).long() - start
    is_local = (loc >= 0) & (loc < experts)
    key = torch.where(is_local, loc, torch.full_like(loc, experts))  # non-local slots sort last
    counts = torch.bincount(key, minlength=experts + 1)[:experts]
    rows = (counts + pad - 1) // pad * pad
    offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=dev), rows.cumsum(0)])
    order = torch.sort(key, stable=True).indices  # slot order kept inside each expert
    n_local = int(counts.sum())
    slots = order[:n_local]
    e = key[slots]
    first = counts.cumsum(0) - counts  # index in `order` of each expert's first slot
    dest = offsets[e] + (torch.arange(n_local, device=dev) - first[e])
    slot_of = torch.full((n,), -1, dtype=torch.long, device=dev)
    slot_of[slots] = dest
    src_token = torch.full((capacity(m, topk, experts, pad),), -1, dtype=torch.long, device=dev)
    src_token[dest] = slots // topk
    i32 = torch.int32
    return {
        "counts": counts.to(i32),
        "offsets": offsets.to(i32),
        "slot_of": slot_of.view(m, topk).to(i32),
        "src_token": src_token.to(i32),
    }


def route_inputs(experts: int, topk: int, pad: int, m: int, device: Any, seed: int, poison: int = -7, mode=None):
    ids, start = make_routing(m, topk, experts, seed, mode)
    full = lambda shape: torch.full(shape, poison, dtype=torch.int32, device=device)  # noqa: E731
    return {
        "topk_ids": ids.to(device),
        "expert_start": torch.tensor([start], dtype=torch.int32, device=device),
        "counts": full((experts,)),
        "offsets": full((experts + 1,)),
        "slot_of": full((m, topk)),
        "src_token": full((capacity(m, topk, experts, pad),)),
    }


# ----------------------------------------------------------------------------- silu_mul


# ----------------------------------------------------------------------------- combine


def combine_ref(y: torch.Tensor, slot_of: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """acc = 0; for k ascending: acc = acc + w[:, k] * float(y[slot]) (two fp32 roundings, the
    kernel's exact op order), skipping slots outside [0, R); one RNE rounding to bf16."""
    r, h = y.shape
    m, topk = slot_of.shape
    acc = torch.zeros((m, h), dtype=torch.float32, device=y.device)
    if r == 0:
        return acc.to(torch.bfloat16)
    yf = y.float()
    for k in range(topk):
        s = slot_of[:, k].long()
        valid = ((s >= 0) & (s < r)).unsqueeze(1)
        p = weights[:, k : k + 1].float() * yf[s.clamp(0, r - 1)]
        acc = torch.where(valid, acc + p, acc)
    return acc.to(torch.bfloat16)


def combine_inputs(h: int, topk: int, m: int, device: Any, seed: int, poison: float = float("nan"), mode=None):
    """Expert outputs y in the grouped layout of a route call (E = 32 or 48 local experts, pad
    128, routing from the seed); padding rows of y are NaN, so reading one shows."""
    experts = (32, 48)[(seed // len(ROUTINGS)) % 2]
    ids, start = make_routing(m, topk, experts, seed, mode)
    r = route_ref(ids, start, experts, PAD)
    g = torch.Generator().manual_seed(seed + 1)
    gd = torch.Generator(device=device).manual_seed(seed + 2)  # the large y is drawn on the device
    rows = r["src_token"].shape[0]
    y = torch.randn((rows, h), generator=gd, device=device)
    y = y * torch.exp2(torch.randint(-4, 5, (rows, 1), generator=g).float()).to(device)
    y[(r["src_token"] < 0).to(device)] = float("nan")
    w = torch.rand((m, topk), generator=g) + 0.01
    w = w / w.sum(dim=1, keepdim=True)
    return {
        "y": y.to(torch.bfloat16),
        "slot_of": r["slot_of"].to(device),
        "weights": w.to(device),
        "out": torch.full((m, h), poison, dtype=torch.bfloat16, device=device),
    }


# ----------------------------------------------------------------------------- checks


def exact_errors(got: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor]) -> list[str]:
    bad = []
    for n, w in want.items():
        g = got[n]
        if g.shape != w.shape or g.dtype != w.dtype:
            bad.append(f"{n}: {g.dtype} {tuple(g.shape)} != {w.dtype} {tuple(w.shape)}")
        elif not torch.equal(g, w):
            diff = (g != w).nonzero()
            i = tuple(diff[0].tolist())
            bad.append(f"{n}: {diff.shape[0]} of {w.numel()} differ, first at {list(i)}: got {g[i].item()} want {w[i].item()}")
    return bad


# ----------------------------------------------------------------------------- permute (+ quantize)


def _routed_src_token(m: int, topk: int, experts: int, pad: int, seed: int, mode=None) -> torch.Tensor:
    """route_ref's src_token (CPU, int32) for a routing drawn from the seed, with a few padding
    entries replaced by other out-of-range values (M, -5, 2^31 - 1): a kernel must treat any
    index outside [0, M) as padding, not only -1."""
    ids, start = make_routing(m, topk, experts, seed, mode)
    src = route_ref(ids, start, experts, pad)["src_token"]
    pads = (src < 0).nonzero().flatten()
    if pads.numel():
        g = torch.Generator().manual_seed(seed + 3)
        pick = pads[torch.randperm(pads.numel(), generator=g)[:3]]
        src[pick] = torch.tensor([m, -5, 2**31 - 1], dtype=torch.int32)[: pick.numel()]
    return src


def permute_ref(x: torch.Tensor, src_token: torch.Tensor) -> torch.Tensor:
    """xg[r] = x[src_token[r]] where 0 <= src_token[r] < M, else a zero row (bit copy)."""
    m, h = x.shape
    s = src_token.to(x.device).long()
    valid = (s >= 0) & (s < m)
    xg = torch.zeros((s.shape[0], h), dtype=x.dtype, device=x.device)
    xg[valid] = x[s[valid]]
    return xg


def permute_quantize_ref(x: torch.Tensor, src_token: torch.Tensor, global_scale: torch.Tensor):
    """quantize_ref of the gathered rows (zero padding rows), scales swizzled over all CAP rows."""
    from ..nvfp4_quantize.ref import quantize_ref

    return quantize_ref(permute_ref(x, src_token), global_scale, "swizzled")


def permute_inputs(h: int, topk: int, experts: int, pad: int, m: int, device: Any, seed: int,
                   poison: float = float("nan"), mode=None):
    """x with per-row magnitudes over 9 octaves, src_token from a routing of the seed, xg NaN."""
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn((m, h), generator=g, device=device)
    x = x * torch.exp2(torch.randint(-4, 5, (m, 1), generator=g, device=device).float())
    src = _routed_src_token(m, topk, experts, pad, seed, mode)
    return {
        "x": x.to(torch.bfloat16),
        "src_token": src.to(device),
        "xg": torch.full((src.shape[0], h), poison, dtype=torch.bfloat16, device=device),
    }


def _scale_factor(seed: int) -> float:
    """Global scale multiplier from 0.3x to 3x the amax-derived one (as nvfp4_quantize's
    make_inputs): the large ones drive the E4M3 / E2M1 saturation paths."""
    return float(torch.empty(()).uniform_(-1.7, 1.6, generator=torch.Generator().manual_seed(seed)).exp2())


def permute_quantize_inputs(h: int, topk: int, experts: int, pad: int, m: int, device: Any, seed: int,
                            poison: int = 0xFF, mode=None):
    from ..nvfp4_quantize.ref import global_scale_ref, random_activations

    gen = torch.Generator(device=device).manual_seed(seed)
    x = random_activations(m, h, device, gen)
    src = _routed_src_token(m, topk, experts, pad, seed, mode)
    cap = src.shape[0]
    return {
        "x": x,
        "src_token": src.to(device),
        "global_scale": global_scale_ref(x) * _scale_factor(seed),
        "q": torch.full((cap, h // 2), poison, dtype=torch.uint8, device=device),
        "sf": torch.full((cap, h // 16), poison, dtype=torch.uint8, device=device),
    }


# ----------------------------------------------------------------------------- silu_mul + quantize

SILU_MUL_QUANTIZE_MODES = ("random", "exact")


def silu_mul_quantize_inputs(i: int, m: int, device: Any, seed: int, poison: int = 0xFF, mode: str | None = None,
                             limit: float = 0.0):
    """x [m, 2i] bf16 (gate | up), a global scale, poisoned q / sf.

    random  gate N(0,1) * 2^[-3, 3] per row (silu's saturating regions, |g| up to ~24), up with
            block magnitudes over many octaves and some all-zero blocks (random_activations).
    exact   gate = c * 2^e with c in [9, 15], e in [1, 3] (so g >= 18: 1 + e^-g rounds to 1 in
            fp32 for torch and for ex2.approx + add, rcp.approx(1) = 1, silu(g) = g exactly) and
            up = +-c' * 2^e' with c' in [8, 15]: g * u has <= 8 significant bits, exact in bf16,
            so kernel and torch agree on h bit for bit (even a 1-ulp fp32 error could not move
            the bf16 rounding) and the quantized output must be bit-exact.
    The default mode alternates with the seed (seed % 2); with a clamp (limit > 0) it is always
    "random", whose gate (|g| up to ~24) and up (block octaves up to 2^5) cross both clamps at
    DeepSeek-V4's limit 10: "exact" has no clamped form (silu(g) == g in fp32 needs 1 + e^-g to
    round to 1, g >= ~16.6, so a clamped gate g <= L = 10 is never exact) and is refused with a limit.
    gs: 2688 / amax(silu_mul_ref(x, limit)) times 0.3x .. 3x (saturation paths)."""
    from ..nvfp4_quantize.ref import SF_BLOCK, global_scale_ref, random_activations

    mode = mode or ("random" if limit > 0 else SILU_MUL_QUANTIZE_MODES[seed % 2])
    if mode == "exact" and limit > 0:
        raise ValueError(f"mode 'exact' has no clamped form (limit={limit}): silu(min(g, limit)) is not exact in fp32")
    gen = torch.Generator(device=device).manual_seed(seed)
    if mode == "random":
        gate = torch.randn((m, i), generator=gen, device=device)
        gate = gate * torch.exp2(torch.randint(-3, 4, (m, 1), generator=gen, device=device).float())
        up = random_activations(m, i, device, gen).float()
    elif mode == "exact":
        c = torch.randint(9, 16, (m, i), generator=gen, device=device).float()
        gate = c * torch.exp2(torch.randint(1, 4, (m, i), generator=gen, device=device).float())
        c2 = torch.randint(8, 16, (m, i), generator=gen, device=device).float()
        sign = torch.randint(0, 2, (m, i), generator=gen, device=device).float() * 2 - 1
        octave = torch.randint(-14, 4, (m, i // SF_BLOCK, 1), generator=gen, device=device).float()
        up = (sign * c2).view(m, -1, SF_BLOCK) * torch.exp2(octave)
        zero = torch.rand((m, i // SF_BLOCK, 1), generator=gen, device=device) < 0.02
        up = up.masked_fill(zero, 0.0).view(m, i)
    else:
        raise ValueError(f"unknown mode {mode!r}; known: {SILU_MUL_QUANTIZE_MODES}")
    x = torch.cat([gate, up], dim=1).to(torch.bfloat16).contiguous()
    gs = global_scale_ref(silu_mul_ref(x, limit)) * _scale_factor(seed)
    mp = -(-m // 128) * 128
    return {
        "x": x,
        "global_scale": gs,
        "q": torch.full((m, i // 2), poison, dtype=torch.uint8, device=device),
        "sf": torch.full((mp, i // 16), poison, dtype=torch.uint8, device=device),
    }


def silu_mul_quantize_ref(x: torch.Tensor, global_scale: torch.Tensor, limit: float = 0.0):
    """quantize_ref(silu_mul_ref(x, limit), gs, "swizzled"): torch's (clamped) silu * up, rounded
    to bf16, quantized."""
    from ..nvfp4_quantize.ref import quantize_ref

    return quantize_ref(silu_mul_ref(x, limit), global_scale, "swizzled")


def nvfp4_rel_error(q: torch.Tensor, sf: torch.Tensor, global_scale: torch.Tensor, exact: torch.Tensor) -> float:
    """Relative Frobenius error of the dequantized NVFP4 data (swizzled scales) vs `exact`
    (float64); NaN if anything dequantizes to NaN (a 0xFF scale byte is E4M3 NaN)."""
    from ..nvfp4_quantize.ref import dequantize_ref

    d = dequantize_ref(q, sf, global_scale, "swizzled").double()
    return float((d - exact).norm() / exact.norm().clamp_min(1e-300))


def silu_mul_exact(x: torch.Tensor, limit: float = 0.0) -> torch.Tensor:
    """silu(gate) * up in float64 from the bf16 inputs (no intermediate rounding); limit > 0
    clamps first, as silu_mul_ref does (gate <= limit, -limit <= up <= limit: exact)."""
    i = x.shape[1] // 2
    xd = x.double()
    g, u = xd[:, :i], xd[:, i:]
    if limit > 0:
        g, u = g.clamp(max=limit), u.clamp(-limit, limit)
    return torch.nn.functional.silu(g) * u


def silu_mul_quantize_errors(got: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor],
                             max_diff_frac: float, max_diff_abs: int, rel_slack: float, limit: float = 0.0) -> list[str]:
    """Mismatches of a fused SiLU * up + NVFP4 result (see SILU_MUL_QUANTIZE_* in the package):
    (1) shapes and dtypes equal the reference's; (2) at most max_diff_abs + max_diff_frac * n
    bytes of q, and of sf, differ from the reference (codes / scales of h values that differ in
    the last bf16 bit); (3) when got holds the inputs x and global_scale: the kernel's
    dequantized output is within rel_slack (relative Frobenius, absolute) of the reference
    pipeline's own NVFP4 error vs float64 silu(gate) * up (clamped at `limit` when > 0)."""
    bad = []
    for n in ("q", "sf"):
        g, w = got[n], want[n]
        if g.shape != w.shape or g.dtype != w.dtype:
            bad.append(f"{n}: {g.dtype} {tuple(g.shape)} != {w.dtype} {tuple(w.shape)}")
            continue
        diff = g != w
        nd = int(diff.sum())
        allowed = max_diff_abs + max_diff_frac * w.numel()
        if nd > allowed:
            i = diff.nonzero()[0].tolist()
            bad.append(f"{n}: {nd} of {w.numel()} bytes differ (allowed {allowed:.0f}), first at {i}: "
                       f"got {int(g[tuple(i)]):#04x} want {int(w[tuple(i)]):#04x}")
    if bad or "x" not in got or "global_scale" not in got:
        return bad
    m = got["q"].shape[0]
    if m == 0:
        return bad
    exact = silu_mul_exact(got["x"], limit)
    gs = got["global_scale"]
    e_ref = nvfp4_rel_error(want["q"], want["sf"], gs, exact)
    e_got = nvfp4_rel_error(got["q"], got["sf"], gs, exact)
    if not e_got <= e_ref + rel_slack:  # also catches NaN
        bad.append(f"dequantized: relative Frobenius error {e_got:.4e} vs float64 silu*up exceeds the "
                   f"reference pipeline's {e_ref:.4e} + {rel_slack:.0e}")
    return bad
