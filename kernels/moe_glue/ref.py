"""Torch references for the MoE glue families (they define the results; see the package
docstring) and their random inputs. Imported lazily: the build CLI never needs torch.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from . import capacity

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


def silu_mul_ref(x: torch.Tensor) -> torch.Tensor:
    i = x.shape[1] // 2
    xf = x.float()
    return (torch.nn.functional.silu(xf[:, :i]) * xf[:, i:]).to(torch.bfloat16)


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


def rel_frobenius_errors(name: str, got: torch.Tensor, want: torch.Tensor, tol: float) -> list[str]:
    if got.shape != want.shape:
        return [f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"]
    nan = torch.isnan(got)
    if bool(nan.any()):
        i = nan.nonzero()[0].tolist()
        return [f"{name}: {int(nan.sum())} NaN outputs (unwritten?), first at {i}"]
    g, w = got.double(), want.double()
    err = float((g - w).norm() / w.norm().clamp_min(1e-30))
    return [] if err <= tol else [f"{name}: relative Frobenius error {err:.3e} > {tol:.1e}"]
