"""MoERunner: the routed-expert path of one MoE layer, served from the artifact store.

Hopper (sm_90a), all launches on the current stream, in this order:
    moe_route    topk_ids (GLOBAL ids) -> counts, offsets, slot_of, src_token   (pad = 1)
    moe_permute  hidden -> xg (rows grouped by local expert)
    w4a16_grouped_gemm  L1: xg . W13^T -> h1 [rows, 2I] (gate | up)
    moe_silu_mul h1 -> a2 [rows, I]   (swiglu_limit L: silu(min(gate, L)) * clamp(up, -L, L))
    w4a16_grouped_gemm  L2: a2 . W2^T -> y [rows, H]
    moe_combine  y, slot_of, topk_weights -> out [M, H]
Groups are not padded (pad = 1): our W4A16 GEMM has no tile alignment to honour, so the rows
are exactly M * topk and the glue kernels never touch padding (at decode that is 6 rows per
token instead of thousands). Slots routed to experts of other ranks get slot_of = -1 and
contribute nothing here (their rank adds them).

Graph safety: buffers are allocated once, sized from max_tokens (vLLM's
max_num_batched_tokens, so warm-up at the full size fits), and shared by every runner of the
same shapes on a device (layers run one after another); __call__ slices views, allocates
only `out` when none is given, never syncs. check="full" additionally validates the routing
on the host (one device->host copy: debugging only, never under capture).

Blackwell (sm_100a): runtime/moe_sm100.py (NVFP4 activations, block-scaled grouped GEMMs,
activation global scales from `calibrate` at warm-up). It has never run: no Blackwell GPU here;
it is checked on the CPU against the families' references only.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

import torch

from .declare import OpDecl, missing_ops, open_ops
from .errors import ArgumentError, MissingVariantError
from .layout import GROUP_PAD
from .weights import expert_alpha, expert_operands

PAD = GROUP_PAD["sm_90a"]
_RUNNER = "MoERunner (runtime/moe.py) "
_WS_LOCK = threading.Lock()
_WORKSPACES: dict[tuple, dict[str, torch.Tensor]] = {}


def workspace(device, experts: int, hidden: int, inter: int, topk: int, max_tokens: int) -> dict[str, torch.Tensor]:
    key = (str(device), experts, hidden, inter, topk, max_tokens)
    with _WS_LOCK:
        ws = _WORKSPACES.get(key)
        if ws is None:
            rows = max_tokens * topk
            i32 = dict(dtype=torch.int32, device=device)
            bf = dict(dtype=torch.bfloat16, device=device)
            ws = {
                "counts": torch.empty(experts, **i32),
                "offsets": torch.empty(experts + 1, **i32),
                "slot_of": torch.empty((max_tokens, topk), **i32),
                "src_token": torch.empty(rows, **i32),
                "xg": torch.empty((rows, hidden), **bf),
                "h1": torch.empty((rows, 2 * inter), **bf),
                "a2": torch.empty((rows, inter), **bf),
                "y": torch.empty((rows, hidden), **bf),
            }
            _WORKSPACES[key] = ws
        return ws


def check_groups(offsets: torch.Tensor, counts: torch.Tensor, rows: int) -> None:
    """Host-side validity of a grouped layout (copies to the host: debugging / check="full" only,
    never under capture). The grouped GEMM itself clamps each group into [0, rows), so invalid
    offsets can produce wrong rows but never an out-of-bounds access."""
    off = offsets.detach().to("cpu", torch.int64)
    cnt = counts.detach().to("cpu", torch.int64)
    if off.numel() != cnt.numel() + 1:
        raise ArgumentError(f"offsets: {off.numel()} entries for {cnt.numel()} groups (need E + 1)")
    if int(off[0]) != 0:
        raise ArgumentError(f"offsets: offsets[0] = {int(off[0])}, must be 0")
    step = off[1:] - off[:-1]
    if (step < 0).any():
        e = int(torch.nonzero(step < 0)[0])
        raise ArgumentError(f"offsets: not monotone at expert {e} ({int(off[e])} > {int(off[e + 1])})")
    if int(off[-1]) > rows:
        raise ArgumentError(f"offsets: offsets[E] = {int(off[-1])} exceeds the {rows} rows of act (capacity)")
    if ((cnt < 0) | (cnt > step)).any():
        e = int(torch.nonzero((cnt < 0) | (cnt > step))[0])
        raise ArgumentError(f"counts: counts[{e}] = {int(cnt[e])} outside [0, offsets[{e + 1}] - offsets[{e}] = {int(step[e])}]")


class MoERunner:
    runner_name = "MoERunner"

    @classmethod
    def ops(cls, hidden: int, intermediate: int, experts: int, top_k: int, arch: str, swiglu_limit: float = 0.0) -> list[OpDecl]:
        """The ops one MoE layer needs on `arch` (runtime/declare.py): `experts` local experts
        (global / EP size), hidden H, intermediate I, top-k, and a SwiGLU clamp `swiglu_limit`
        (DeepSeek-V4: 10; 0 none). In launch order. None where the runner has no path: sm_100a
        with a clamp (moe_silu_mul_quantize does not clamp)."""
        if arch == "sm_100a":
            if swiglu_limit:
                return []
            from .moe_sm100 import Sm100MoE

            return Sm100MoE.ops(hidden, intermediate, experts, top_k, arch)
        if arch != "sm_90a":
            return []
        h, i, e, k = hidden, intermediate, experts, top_k
        lay = dict(keyed="layer", top_k=k, experts=e, pad=PAD, runner=cls.runner_name)
        return [
            OpDecl("route", "moe_route", {"experts": e, "topk": k, "pad": PAD}, "tokens",
                   f"{_RUNNER}routing: topk ids -> rows grouped by local expert", **lay),
            OpDecl("permute", "moe_permute", {"h": h, "topk": k, "experts": e, "pad": PAD}, "tokens",
                   f"{_RUNNER}gathers the hidden states into the grouped rows", **lay),
            OpDecl("l1", "w4a16_grouped_gemm", {"n": 2 * i, "k": h, "experts": e}, "slots",
                   f"{_RUNNER}L1 (gate | up), all local experts in one launch", weights="w13", **lay),
            OpDecl("silu", "moe_silu_mul", {"i": i, "limit": float(swiglu_limit)}, "slots",
                   f"{_RUNNER}silu(gate) * up between L1 and L2" + (f" (clamped at {swiglu_limit})" if swiglu_limit else ""), **lay),
            OpDecl("l2", "w4a16_grouped_gemm", {"n": h, "k": i, "experts": e}, "slots", f"{_RUNNER}L2 (down)",
                   weights="w2", **lay),
            OpDecl("combine", "moe_combine", {"h": h, "topk": k}, "tokens",
                   f"{_RUNNER}top-k weighted sum of each token's rows", **lay),
        ]

    def __init__(self, store, *, w13, w13_scale, w13_scale_2, w2, w2_scale, w2_scale_2, expert_start: int,
                 top_k: int, max_tokens: int, device: Any = None, swiglu_limit: float | None = None):
        device = torch.device(device or "cuda")
        self._sm100 = None
        self.swiglu_limit = float(swiglu_limit or 0.0)  # 0: plain SwiGLU (the op's default)
        if store.arch == "sm_100a":
            if self.swiglu_limit:
                raise MissingVariantError(f"MoERunner: swiglu_limit={swiglu_limit} has no sm_100a path (moe_silu_mul_quantize does not clamp)")
            # NVFP4 activations on the block-scaled GEMMs: never run here (runtime/moe_sm100.py)
            from .moe_sm100 import Sm100MoE

            self._sm100 = Sm100MoE(store, w13=w13, w13_scale=w13_scale, w13_scale_2=w13_scale_2, w2=w2,
                                   w2_scale=w2_scale, w2_scale_2=w2_scale_2, expert_start=expert_start,
                                   top_k=top_k, max_tokens=max_tokens, device=device)
            for a in ("num_experts", "hidden", "intermediate", "top_k", "max_tokens", "device", "expert_start"):
                setattr(self, a, getattr(self._sm100, a))
            return
        if store.arch != "sm_90a":
            raise MissingVariantError(f"MoERunner: no expert path for {store.arch} (sm_90a: W4A16; sm_100a: NVFP4)")
        e, two_i, h_half = w13.shape
        self.num_experts, self.hidden, self.intermediate = e, h_half * 2, two_i // 2
        if tuple(w2.shape) != (e, self.hidden, self.intermediate // 2):
            raise ArgumentError(f"w2 must be [E, H, I/2] = [{e}, {self.hidden}, {self.intermediate // 2}], got {tuple(w2.shape)}")
        self.top_k, self.max_tokens, self.device = top_k, max_tokens, device
        h, i = self.hidden, self.intermediate
        self.decls = open_ops(self, store, self.ops(h, i, e, top_k, store.arch, swiglu_limit=self.swiglu_limit))
        # (blob, strip) per GEMM: quack's nvfp4 layout, the one copy every Hopper W4A16 kernel reads
        self.w13 = tuple(expert_operands(w13, w13_scale, "w4a16", device).values())
        self.w2 = tuple(expert_operands(w2, w2_scale, "w4a16", device).values())
        self.alpha13 = expert_alpha(w13_scale_2, e, 2 * i, device, "w13")  # [E, 2] gate/up: per row
        self.alpha2 = expert_alpha(w2_scale_2, e, h, device, "w2")
        self.expert_start = torch.tensor([expert_start], dtype=torch.int32, device=device)
        self.ws = workspace(device, e, h, i, top_k, max_tokens)

    def calibrate(self, hidden: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> None:
        """Warm-up with real activations. sm_100a: sets the activation global scales (L1 and L2
        inputs separately). sm_90a: nothing to do (bf16 activations need no scale)."""
        if self._sm100 is not None:
            self._sm100.calibrate(hidden, topk_ids, topk_weights)

    def missing(self, token_counts: Iterable[int]) -> list[str]:
        if self._sm100 is not None:
            return self._sm100.missing(token_counts)
        return missing_ops(self, self.decls, token_counts, self.max_tokens)

    def _check_routing(self, topk_ids: torch.Tensor, total_experts: int | None) -> None:
        ids = topk_ids.detach().cpu()
        if total_experts is not None and ((ids < 0) | (ids >= total_experts)).any():
            bad = ids[(ids < 0) | (ids >= total_experts)][0].item()
            raise ArgumentError(f"topk_ids: expert id {bad} outside [0, {total_experts})")

    def __call__(self, hidden: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor,
                 out: torch.Tensor | None = None, check: bool | str = True,
                 total_experts: int | None = None) -> torch.Tensor:
        if self._sm100 is not None:
            return self._sm100(hidden, topk_ids, topk_weights, out=out, check=check)
        m = hidden.shape[0]
        if m > self.max_tokens:
            raise ArgumentError(f"hidden: M={m} tokens exceeds the runner's max_tokens={self.max_tokens} (buffers are sized from it)")
        if check == "full":
            self._check_routing(topk_ids, total_experts)
        rows = m * self.top_k
        ws = self.ws
        counts, offsets = ws["counts"], ws["offsets"]
        slot_of, src = ws["slot_of"][:m], ws["src_token"][:rows]
        xg, h1, a2, y = ws["xg"][:rows], ws["h1"][:rows], ws["a2"][:rows], ws["y"][:rows]
        if out is None:
            out = torch.empty((m, self.hidden), dtype=torch.bfloat16, device=hidden.device)
        self.route(topk_ids, self.expert_start, counts, offsets, slot_of, src, check=check)
        if check == "full":
            check_groups(offsets, counts, rows)
        self.permute(hidden, src, xg, check=check)
        self.l1(xg, *self.w13, self.alpha13, offsets, counts, h1, check=check)
        self.silu(h1, a2, check=check)
        self.l2(a2, *self.w2, self.alpha2, offsets, counts, y, check=check)
        self.combine(y, slot_of, topk_weights, out, check=check)
        return out


def moe_ref(hidden, topk_ids, topk_weights, expert_weights, num_experts: int, expert_start: int, swiglu_limit: float = 0.0):
    """float64 reference of the routed-expert path: expert_weights(e) -> (W13 [2I, H], W2 [H, I])
    dequantized and multiplied by their global scales (called once per local expert with
    tokens, so all 48 experts never need to be resident in float64). For every (token, k)
    routed to a local expert: w * W2 . (silu(gate) * up), summed; non-local slots contribute
    nothing. No intermediate rounding: the bound covers the kernels' bf16 storage too."""
    x = hidden.double()
    out = torch.zeros_like(x)
    local = topk_ids.long() - expert_start
    for le in range(num_experts):
        tok, kk = torch.nonzero(local == le, as_tuple=True)
        if tok.numel() == 0:
            continue
        w13, w2 = expert_weights(le)
        h1 = x[tok] @ w13.double().T
        i = h1.shape[1] // 2
        g, u = h1[:, :i], h1[:, i:]
        if swiglu_limit:
            g, u = g.clamp(max=swiglu_limit), u.clamp(-swiglu_limit, swiglu_limit)
        a = torch.nn.functional.silu(g) * u
        out.index_add_(0, tok, (a @ w2.double().T) * topk_weights[tok, kk].double().unsqueeze(1))
    return out
