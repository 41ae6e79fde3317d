"""MoERunner: the routed-expert path of one MoE layer, served from the artifact store.

Hopper (sm_90a), all launches on the current stream, in this order:
    moe_route    topk_ids (GLOBAL ids) -> counts, offsets, slot_of, src_token   (pad P)
    moe_permute  hidden -> xg (rows grouped by local expert, padding rows zero)
    L1           xg . W13^T -> h1 [rows, 2I] (gate | up)
    moe_silu_mul h1 -> a2 [rows, I]   (swiglu_limit L: silu(min(gate, L)) * clamp(up, -L, L))
    L2           a2 . W2^T -> y [rows, H]
    moe_combine  y, slot_of, topk_weights -> out [M, H]
Two paths, picked on the host from the token count T (a shape: fixed per CUDA graph, no sync),
by the average routed slots per local expert t = T * top_k / E against PREFILL (one place):
  decode  (t <= PREFILL[0][0]): P = 1, L1/L2 on our w4a16_grouped_gemm (offsets + counts): groups
          unpadded, rows exactly T * top_k, so the glue never touches padding (at decode that is
          6 rows per token instead of thousands); xg and a2 in the word order's decode activation
          order (DECODE_ORDERS: quad in rot, the default; quad8 in nibble; runtime/layout.py),
          written by permute / silu, read by L1 / L2;
  prefill (t above a PREFILL row), by that row's pad P:
          P = 1: L1/L2 on our w4a16_ws_grouped_gemm (persistent warp-specialized wgmma kernel,
          kernels/w4a16_ws: offsets + counts, no route padding), rows exactly T * top_k, natural
          K order;
          P > 1 (word order nibble only): L1/L2 on quack_w4a16_grouped_gemm with tile_n = P (quack's persistent
          warp-specialized W4A16 kernel; it wants every group to start at a multiple of its
          tile_n): rows = capacity(T, top_k, E, P), padding rows computed on zeros and ignored
          by combine.
Word order (`word_order`, a problem key of our GEMMs; runtime/word_order.py): "rot" (the default,
WORD_ORDER) decodes each blob word in 13 instructions instead of 17 but reads the weights' own K
pairs, so the decode path runs act order quad (DECODE_ORDERS) and the quack tier, which reads nibble
order only, is gone: the w4a16_ws tier serves every T above the decode path (prefill_table).
"nibble" runs as described above (decode path in quad8, the quack tier above 128 slots per expert).
Weights are prepared once per layout the opened GEMMs read (weight_layout: quack's blob/strip, the
shared layout contract of docs/ARCHITECTURE.md, in the word order of the GEMMs' problem), so
decode and prefill share one copy.
The prefill path is therefore on by default: its only extra memory is the workspace's padded rows
(capacity(max_tokens) instead of max_tokens * top_k), shared by every layer of the same shapes.
`prefill=False` keeps the decode path for every T. The prefill ops are optional: a store without all
of them serves every T on the decode path.
Slots routed to experts of other ranks get slot_of = -1 and contribute nothing here (their rank
adds them).

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
from .layout import GROUP_PAD, capacity
from .weights import BLOB_LAYOUT, expert_alpha, expert_operands
from .word_order import GROUPED_ORDERS, check_order

PAD = GROUP_PAD["sm_90a"]
# Prefill tiers: (t, P) = above t routed slots per local expert on average (T * top_k / E > t),
# route pads each group to P; P = 1: L1/L2 on our w4a16_ws_grouped_gemm (unpadded), P > 1: on
# quack_w4a16_grouped_gemm with tile_n = P (PREFILL_GEMM). Measured on an H200 with the whole layer on
# each path (benchmarks/moe_layer.py --all-paths, 48 experts, top-6): the decode path and the
# w4a16_ws tier tie at t = 28 (T = 224: 1041-1086 vs 1054-1060 us), the decode path wins below (t = 24:
# 859 vs 1089-1109), the ws tier above (t = 32: 1046-1058 vs 1254-1260; docs/PERFORMANCE.md "session
# 18": routed counts above the decode tiling's 32-token tile take a second pass over the weights);
# at 29..128 slots per expert the grouped GEMMs alone are faster on
# w4a16_ws than on quack/128 (H200, 48 experts, t = 64: L1 674 vs 1122 us, L2 366 vs 485; t = 128:
# 931 vs 1017, 476 vs 514; docs/PERFORMANCE.md "session 5 ... w4a16_ws"), above 128 quack/256 is
# (t = 256: 1656 vs 1688, 790 vs 947; t = 512: 3167 vs 3327, 1672 vs 1780).
PREFILL = ((28, 1), (128, 256))
WS_GEMM, QUACK_GEMM = "w4a16_ws_grouped_gemm", "quack_w4a16_grouped_gemm"
# The runner's blob word order when none is asked (word_order=None): "rot". Whole layer on an H200, 48
# experts, top-6, rot vs nibble (medians of two alternated runs, docs/PERFORMANCE.md "session 24"):
# 1.00-1.08x as fast at T = 1..1024 (16 tokens: 424 vs 460 us), 0.97-1.00x at 2048..8192 (where
# nibble has the quack tier), and one kernel family fewer.
WORD_ORDER = "rot"


def prefill_table(word_order: str = WORD_ORDER) -> tuple[tuple[int, int], ...]:
    """PREFILL's tiers whose GEMM reads blobs in `word_order` (runtime/word_order.py): all of them in
    "nibble"; in "rot" only ours (quack's kernel reads nibble order), the w4a16_ws tier then serving
    every T above the decode path."""
    check_order(word_order, allowed=GROUPED_ORDERS)
    return PREFILL if word_order == "nibble" else tuple((t, p) for t, p in PREFILL if p == PAD)


def tier_pad(tier: int | None) -> int:
    """The route pad of a tier (MoERunner.tier_for's answer): None (the decode path) pads to PAD."""
    return PAD if tier is None else tier


def prefill_gemm(pad: int) -> str:
    """The grouped GEMM family of a prefill tier with route pad `pad` (1: ours, unpadded)."""
    return WS_GEMM if pad == PAD else QUACK_GEMM


# The K order of the decode path's GEMM inputs (runtime/layout.py ACT_ORDERS): permute and silu
# write xg / a2 in it, our w4a16 L1 / L2 read it (split 'k' / 'n': two 16-byte loads per token row
# and k64 tile; quad8 pairs K as decode_sel does, kernels/w4a16/ptx.py: 3-7% faster than quad at
# 4-32 tokens/expert on an H200, docs/PERFORMANCE.md "session 6, dec"). The prefill tiers stay
# natural (w4a16_ws and quack's kernel read natural K by TMA).
# Word order "rot" (runtime/word_order.py: a 13-instruction decode of the weights' own K pairs) reads
# quad instead (decode_rot decodes the weights' K pairs, quad8's crossed pairs are decode_sel's).
DECODE_ORDERS = {"nibble": "quad8", "rot": "quad"}  # keys: the word orders MoERunner reads, word_order.GROUPED_ORDERS
assert set(DECODE_ORDERS) == set(GROUPED_ORDERS)
DECODE_ORDER = DECODE_ORDERS[WORD_ORDER]  # the default decode path's


def weight_layout(d: OpDecl) -> str:
    """The weight layout (runtime/weights.py OPERANDS) an expert GEMM decl reads: its problem's word
    order's (quack's grouped GEMM has none: nibble). Decls of one word order share one copy."""
    return BLOB_LAYOUT[d.problem.get("word_order", "nibble")]


_RUNNER = "MoERunner (runtime/moe.py) "
_WS_LOCK = threading.Lock()
_WORKSPACES: dict[tuple, dict[str, torch.Tensor]] = {}


def workspace(device, experts: int, hidden: int, inter: int, topk: int, max_tokens: int,
              rows: int | None = None) -> dict[str, torch.Tensor]:
    """Buffers for up to max_tokens tokens and `rows` grouped rows (default max_tokens * topk:
    unpadded; the prefill path passes the largest padded capacity it can see)."""
    rows = max(rows or 0, max_tokens * topk)
    key = (str(device), experts, hidden, inter, topk, max_tokens, rows)
    with _WS_LOCK:
        ws = _WORKSPACES.get(key)
        if ws is None:
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


def prefill_tiers(experts: int, top_k: int, max_tokens: int | None = None,
                  word_order: str = WORD_ORDER) -> list[tuple[int, int | None, int]]:
    """prefill_table(word_order) in tokens for `experts` local experts and top-k: (above, upto, pad)
    rows, tier j serving above < T <= upto (T * top_k / E > t  <=>  T > t * E // top_k); only the
    tiers some T <= max_tokens reaches (a decode-only runner opens, plans and prepares no prefill
    weights)."""
    table = prefill_table(word_order)
    lows = [t * experts // top_k for t, _ in table]
    tiers = [(lo, lows[j + 1] if j + 1 < len(lows) else None, p) for j, (lo, (_, p)) in enumerate(zip(lows, table))]
    return [t for t in tiers if max_tokens is None or t[0] < max_tokens]


class MoERunner:
    runner_name = "MoERunner"

    @classmethod
    def ops(cls, hidden: int, intermediate: int, experts: int, top_k: int, arch: str, swiglu_limit: float = 0.0,
            prefill: bool = True, max_tokens: int | None = None, word_order: str | None = None) -> list[OpDecl]:
        """The ops one MoE layer needs on `arch` (runtime/declare.py): `experts` local experts
        (global / EP size), hidden H, intermediate I, top-k, and a SwiGLU clamp `swiglu_limit`
        (DeepSeek-V4: 10; 0 none). sm_90a: the decode path in launch order, then each prefill
        tier's own ops (optional; `prefill` False: the decode path serves every T), the tiers
        that some T <= max_tokens reaches (None: all). `word_order`: the blob word order our
        GEMMs read (runtime/word_order.py; a problem key of theirs; None: WORD_ORDER): it sets the
        decode path's act order (DECODE_ORDERS) and the tiers (prefill_table). sm_100a: runtime/moe_sm100.py's path
        (the clamp in moe_silu_mul_quantize). None where the runner has no path (another arch)."""
        if arch == "sm_100a":
            from .moe_sm100 import Sm100MoE

            return Sm100MoE.ops(hidden, intermediate, experts, top_k, arch, swiglu_limit=swiglu_limit)
        if arch != "sm_90a":
            return []
        h, i, e, k, wo = hidden, intermediate, experts, top_k, check_order(word_order or WORD_ORDER, allowed=GROUPED_ORDERS)
        tiers = prefill_tiers(e, k, max_tokens, wo) if prefill else []
        order = DECODE_ORDERS[wo]
        lay = dict(keyed="layer", top_k=k, experts=e, runner=cls.runner_name)
        dec = dict(lay, pad=PAD, m_upto=tiers[0][0] if tiers else None)
        upto = f" for T <= {tiers[0][0]} tokens (<= {prefill_table(wo)[0][0]} slots per expert)" if tiers else ""
        clamp = f" (clamped at {swiglu_limit})" if swiglu_limit else ""
        decls = [
            OpDecl("route", "moe_route", {"experts": e, "topk": k, "pad": PAD}, "tokens",
                   f"{_RUNNER}routing: topk ids -> rows grouped by local expert, unpadded{upto}", **dec),
            OpDecl("permute", "moe_permute", {"h": h, "topk": k, "experts": e, "pad": PAD, "act_order": order},
                   "tokens", f"{_RUNNER}gathers the hidden states into the grouped rows{upto}", **dec),
            OpDecl("l1", "w4a16_grouped_gemm", {"n": 2 * i, "k": h, "experts": e, "act_order": order, "word_order": wo}, "slots",
                   f"{_RUNNER}L1 (gate | up), all local experts in one launch{upto}", weights="w13", **dec),
            OpDecl("silu", "moe_silu_mul", {"i": i, "limit": float(swiglu_limit), "act_order": order}, "slots",
                   f"{_RUNNER}silu(gate) * up between L1 and L2{clamp}{upto}", **dec),
            OpDecl("l2", "w4a16_grouped_gemm", {"n": h, "k": i, "experts": e, "act_order": order, "word_order": wo}, "slots",
                   f"{_RUNNER}L2 (down){upto}", weights="w2", **dec),
            OpDecl("combine", "moe_combine", {"h": h, "topk": k}, "tokens",
                   f"{_RUNNER}top-k weighted sum of each token's rows", **lay),
        ]
        for lo, hi, p in tiers:
            pre = dict(lay, pad=p, m_above=lo, m_upto=hi, optional=True)
            if p == PAD:  # ours: unpadded groups, offsets + counts
                rng = f"prefill, {lo} < T{f' <= {hi}' if hi else ''} tokens: groups unpadded"
                gemm = {"experts": e, "word_order": wo}
            else:
                rng = f"prefill, {lo} < T{f' <= {hi}' if hi else ''} tokens: groups padded to {p}"
                gemm = {"experts": e, "tile_n": p}
            decls += [
                OpDecl(f"route_{p}", "moe_route", {"experts": e, "topk": k, "pad": p}, "tokens",
                       f"{_RUNNER}routing ({rng})", **pre),
                OpDecl(f"permute_{p}", "moe_permute", {"h": h, "topk": k, "experts": e, "pad": p, "act_order": "natural"}, "tokens",
                       f"{_RUNNER}gathers the hidden states ({rng})", **pre),
                OpDecl(f"l1_{p}", prefill_gemm(p), {"n": 2 * i, "k": h, **gemm}, "capacity",
                       f"{_RUNNER}L1 ({rng})", weights="w13", **pre),
                OpDecl(f"l2_{p}", prefill_gemm(p), {"n": h, "k": i, **gemm}, "capacity",
                       f"{_RUNNER}L2 ({rng})", weights="w2", **pre),
            ]
        if tiers:  # one natural-order silu for every prefill tier: rows = the largest padded capacity
            decls.append(OpDecl("silu_pre", "moe_silu_mul", {"i": i, "limit": float(swiglu_limit), "act_order": "natural"}, "capacity",
                                f"{_RUNNER}silu(gate) * up (prefill, T > {tiers[0][0]} tokens){clamp}",
                                **dict(lay, pad=max(p for _, _, p in tiers), m_above=tiers[0][0], optional=True)))
        return decls

    def __init__(self, store, *, w13, w13_scale, w13_scale_2, w2, w2_scale, w2_scale_2, expert_start: int,
                 top_k: int, max_tokens: int, device: Any = None, swiglu_limit: float | None = None,
                 prefill: bool = True, word_order: str | None = None):
        """prefill: serve T above the PREFILL edges on the prefill GEMMs (default: they read the same
        weight copy as the decode path, see the module docstring); sm_90a only. word_order: the blob
        word order of the experts' prepared copy and of every GEMM opened (ops(); sm_90a only; None:
        WORD_ORDER)."""
        device = torch.device(device or "cuda")
        self._sm100 = None
        self.swiglu_limit = float(swiglu_limit or 0.0)  # 0: plain SwiGLU (the op's default)
        if store.arch == "sm_100a":
            # NVFP4 activations on the block-scaled GEMMs: never run here (runtime/moe_sm100.py)
            from .moe_sm100 import Sm100MoE

            self._sm100 = Sm100MoE(store, w13=w13, w13_scale=w13_scale, w13_scale_2=w13_scale_2, w2=w2,
                                   w2_scale=w2_scale, w2_scale_2=w2_scale_2, expert_start=expert_start,
                                   top_k=top_k, max_tokens=max_tokens, device=device, swiglu_limit=self.swiglu_limit)
            for a in ("num_experts", "hidden", "intermediate", "top_k", "max_tokens", "device", "expert_start"):
                setattr(self, a, getattr(self._sm100, a))
            return
        if store.arch != "sm_90a":
            raise MissingVariantError(f"MoERunner: no expert path for {store.arch} (sm_90a: W4A16; sm_100a: NVFP4)")
        e, two_i, h_half = w13.shape
        self.num_experts, self.hidden, self.intermediate = e, h_half * 2, two_i // 2
        if tuple(w2.shape) != (e, self.hidden, self.intermediate // 2):
            raise ArgumentError(f"w2 must be [E, H, I/2] = [{e}, {self.hidden}, {self.intermediate // 2}], got {tuple(w2.shape)}")
        word_order = check_order(word_order or WORD_ORDER, allowed=GROUPED_ORDERS)
        self.top_k, self.max_tokens, self.device, self.word_order = top_k, max_tokens, device, word_order
        h, i = self.hidden, self.intermediate
        for _, _, p in prefill_tiers(e, top_k, word_order=word_order):  # every tier's ops: None unless opened below
            for a in ("route", "permute", "l1", "l2"):
                setattr(self, f"{a}_{p}", None)
        self.silu_pre = None
        decls = self.ops(h, i, e, top_k, store.arch, swiglu_limit=self.swiglu_limit, prefill=prefill,
                         max_tokens=max_tokens, word_order=word_order)
        self.decls = open_ops(self, store, decls)
        self.tiers = prefill_tiers(e, top_k, max_tokens, word_order) if prefill else []
        if len(self.decls) < len(decls):  # some prefill op not in the store: decode serves every T
            decode = self.ops(h, i, e, top_k, store.arch, self.swiglu_limit, prefill=False, word_order=word_order)
            for d in decls[len(decode):]:
                setattr(self, d.attr, None)
            self.decls = open_ops(self, store, decode)
            self.tiers = []
        # each opened GEMM's weight operands, every layout prepared once: GEMMs reading the same
        # layout (weight_layout: one per word order) share one copy of the experts
        made: dict[tuple[str, str], tuple[torch.Tensor, ...]] = {}
        src = {"w13": (w13, w13_scale), "w2": (w2, w2_scale)}
        self.operands: dict[str, tuple[torch.Tensor, ...]] = {}
        for d in self.decls:
            if d.weights:
                key = (d.weights, weight_layout(d))
                if key not in made:
                    made[key] = tuple(expert_operands(*src[d.weights], key[1], device).values())
                self.operands[d.attr] = made[key]
        self.layouts = sorted({lay for _, lay in made})
        self.alpha13 = expert_alpha(w13_scale_2, e, 2 * i, device, "w13")  # [E, 2] gate/up: per row
        self.alpha2 = expert_alpha(w2_scale_2, e, h, device, "w2")
        self.expert_start = torch.tensor([expert_start], dtype=torch.int32, device=device)
        # the largest grouped row count any path reaches at max_tokens (capacity is monotone in T)
        rows = max([capacity(min(max_tokens, hi or max_tokens), top_k, e, p) for lo, hi, p in self.tiers
                    if max_tokens > lo] + [max_tokens * top_k])
        self.ws = workspace(device, e, h, i, top_k, max_tokens, rows)

    def tier_for(self, tokens: int) -> int | None:
        """The prefill tier (its route pad: 1 = w4a16_ws, else quack's tile_n) serving a batch of T
        tokens; None: the decode path."""
        for lo, hi, p in self.tiers:
            if tokens > lo and (hi is None or tokens <= hi):
                return p
        return None

    def pad_for(self, tokens: int) -> int:
        """The route pad for a batch of T tokens (1: decode path and our prefill tier)."""
        return tier_pad(self.tier_for(tokens))

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
        tier = self.tier_for(m)
        pad = tier_pad(tier)
        rows = capacity(m, self.top_k, self.num_experts, pad)  # pad 1: m * top_k
        ws = self.ws
        counts, offsets = ws["counts"], ws["offsets"]
        slot_of, src = ws["slot_of"][:m], ws["src_token"][:rows]
        xg, h1, a2, y = ws["xg"][:rows], ws["h1"][:rows], ws["a2"][:rows], ws["y"][:rows]
        if out is None:
            out = torch.empty((m, self.hidden), dtype=torch.bfloat16, device=hidden.device)
        if tier is None:
            route, permute = self.route, self.permute
        else:
            route, permute = getattr(self, f"route_{tier}"), getattr(self, f"permute_{tier}")
        route(topk_ids, self.expert_start, counts, offsets, slot_of, src, check=check)
        if check == "full":
            check_groups(offsets, counts, rows)
        permute(hidden, src, xg, check=check)
        ops = self.operands
        if tier is None:
            self.l1(xg, *ops["l1"], self.alpha13, offsets, counts, h1, check=check)
            self.silu(h1, a2, check=check)
            self.l2(a2, *ops["l2"], self.alpha2, offsets, counts, y, check=check)
        elif tier == PAD:  # ours: unpadded groups (offsets + counts), natural order
            getattr(self, f"l1_{tier}")(xg, *ops[f"l1_{tier}"], self.alpha13, offsets, counts, h1, check=check)
            self.silu_pre(h1, a2, check=check)
            getattr(self, f"l2_{tier}")(a2, *ops[f"l2_{tier}"], self.alpha2, offsets, counts, y, check=check)
        else:  # quack's kernel: no counts (padding rows are computed on permute's zeros)
            getattr(self, f"l1_{pad}")(xg, *ops[f"l1_{pad}"], self.alpha13, offsets, h1, check=check)
            self.silu_pre(h1, a2, check=check)
            getattr(self, f"l2_{pad}")(a2, *ops[f"l2_{pad}"], self.alpha2, offsets, y, check=check)
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
