"""The routed-expert path on Blackwell (sm_100a): NVFP4 activations x NVFP4 weights on the
block-scaled tensor cores. NOT RUN: no Blackwell GPU is available to this project. It is
checked on the CPU against the families' torch references (tests/runtime/test_moe_runner_cpu.py:
wiring, offsets, scale layouts, global scales), and its kernels are compiled and inspected;
whether it runs correctly on a B200 is unverified.

    moe_route              pad 128: every expert's rows start at a multiple of 128
    moe_permute_quantize   hidden -> NVFP4 codes + scales swizzled over the padded rows (which
                           is the per-expert swizzle, since groups start at multiples of 128)
    quack_nvfp4_grouped_gemm  L1, alpha[e] = gate scale[e] / gs1 (both halves)
    moe_silu_mul_quantize  -> NVFP4 input of L2 under gs2 (with `swiglu_limit` L > 0, DeepSeek-V4's
                           clamped SwiGLU silu(min(gate, L)) * clamp(up, -L, L), as sm_90a's moe_silu_mul)
    quack_nvfp4_grouped_gemm  L2, alpha[e] = w2_scale_2[e] * (up / gate scale)[e] / gs2
The block-scaled GEMM has one alpha per expert: with unequal gate/up global scales ([E, 2]) L1's
up half comes out divided by up/gate, which L2's alpha restores exactly (silu(gate) * up is linear
in up, L2 is linear): runtime/weights.py gate_up_alpha.
    moe_combine
Activation global scales gs1 (L1 input) and gs2 (L2 input, after SiLU * up) come from real
activations at warm-up (`calibrate`), never from the checkpoint's input_scale (calibration
values that overflow real activations into NaN). They live in device tensors updated in place,
so graphs captured after calibration see them. quack's grouped GEMM wants offsets[E] equal to
the row count it is given: the last expert absorbs the padding tail (zero rows, never combined).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from .declare import OpDecl, missing_ops, open_ops
from .errors import ArgumentError
from .layout import GROUP_PAD, capacity
from .nvfp4 import GS_NUMERATOR
from .weights import expert_operands, gate_up_alpha

PAD = GROUP_PAD["sm_100a"]
_RUNNER = "MoERunner (runtime/moe_sm100.py) "


class Sm100MoE:
    runner_name = "MoERunner"

    @classmethod
    def ops(cls, hidden: int, intermediate: int, experts: int, top_k: int, arch: str = "sm_100a",
            swiglu_limit: float = 0.0) -> list[OpDecl]:
        """MoERunner.ops on sm_100a (runtime/declare.py), in launch order."""
        h, i, e, k = hidden, intermediate, experts, top_k
        clamp = f" (clamped at {swiglu_limit})" if swiglu_limit else ""
        lay = dict(keyed="layer", top_k=k, experts=e, pad=PAD, runner=cls.runner_name)
        return [
            OpDecl("route", "moe_route", {"experts": e, "topk": k, "pad": PAD}, "tokens",
                   f"{_RUNNER}routing: topk ids -> rows grouped by local expert, each group padded to {PAD}", **lay),
            OpDecl("permute_q", "moe_permute_quantize", {"h": h, "topk": k, "experts": e, "pad": PAD}, "tokens",
                   f"{_RUNNER}gathers the hidden states into the grouped rows, quantized to NVFP4", **lay),
            OpDecl("l1", "quack_nvfp4_grouped_gemm", {"experts": e, "n": 2 * i, "k": h}, "capacity",
                   f"{_RUNNER}L1 (gate | up), block-scaled, all local experts in one launch", weights="w13", **lay),
            OpDecl("silu_q", "moe_silu_mul_quantize", {"i": i, "limit": float(swiglu_limit)}, "capacity",
                   f"{_RUNNER}silu(gate) * up quantized to NVFP4 between L1 and L2{clamp}", **lay),
            OpDecl("l2", "quack_nvfp4_grouped_gemm", {"experts": e, "n": h, "k": i}, "capacity",
                   f"{_RUNNER}L2 (down), block-scaled", weights="w2", **lay),
            OpDecl("combine", "moe_combine", {"h": h, "topk": k}, "tokens",
                   f"{_RUNNER}top-k weighted sum of each token's rows", **lay),
        ]

    def __init__(self, store, *, w13, w13_scale, w13_scale_2, w2, w2_scale, w2_scale_2, expert_start: int,
                 top_k: int, max_tokens: int, device: Any, swiglu_limit: float = 0.0):
        e, two_i, h_half = w13.shape
        h, i = h_half * 2, two_i // 2
        self.num_experts, self.hidden, self.intermediate = e, h, i
        self.top_k, self.max_tokens, self.device = top_k, max_tokens, device
        self.swiglu_limit = float(swiglu_limit)
        self.decls = open_ops(self, store, self.ops(h, i, e, top_k, swiglu_limit=self.swiglu_limit))
        self.w13 = w13.to(device).contiguous()
        self.w13_sf = expert_operands(w13, w13_scale, "swizzled", device)["sf_swizzled"]
        self.w2 = w2.to(device).contiguous()
        self.w2_sf = expert_operands(w2, w2_scale, "swizzled", device)["sf_swizzled"]
        # one alpha per expert in the block-scaled grouped GEMM: L1 runs both halves with the
        # gate's scale, the up/gate ratio is applied in L2 (runtime/weights.py gate_up_alpha)
        self.w13_s2, up_over_gate = gate_up_alpha(w13_scale_2, e, device, "w13")
        w2_s2, _ = gate_up_alpha(w2_scale_2, e, device, "w2")
        self.w2_s2 = (w2_s2 * up_over_gate).contiguous()
        self.expert_start = torch.tensor([expert_start], dtype=torch.int32, device=device)
        self.gs1 = torch.full((1,), float("nan"), device=device)
        self.gs2 = torch.full((1,), float("nan"), device=device)
        self.alpha13 = torch.full((e,), float("nan"), device=device)
        self.alpha2 = torch.full((e,), float("nan"), device=device)
        self.amax = [0.0, 0.0]
        self.calibrated = False
        cap = capacity(max_tokens, top_k, e, PAD)
        u8, i32 = dict(dtype=torch.uint8, device=device), dict(dtype=torch.int32, device=device)
        self.ws = {
            "counts": torch.empty(e, **i32), "offsets": torch.empty(e + 1, **i32),
            "slot_of": torch.empty((max_tokens, top_k), **i32), "src_token": torch.empty(cap, **i32),
            "q1": torch.empty((cap, h // 2), **u8), "sf1": torch.empty((cap, h // 16), **u8),
            "h1": torch.empty((cap, 2 * i), dtype=torch.bfloat16, device=device),
            "q2": torch.empty((cap, i // 2), **u8), "sf2": torch.empty((cap, i // 16), **u8),
            "y": torch.empty((cap, h), dtype=torch.bfloat16, device=device),
        }

    def missing(self, token_counts: Iterable[int]) -> list[str]:
        return missing_ops(self, self.decls, token_counts, self.max_tokens)

    def _set_scale(self, which: int, amax: float) -> None:
        """gs = 448 * 6 / amax (nvfp4_global_scale's convention), kept at the largest amax seen."""
        self.amax[which] = max(self.amax[which], amax)
        a = self.amax[which]
        gs = GS_NUMERATOR / a if a > 0 else 1.0
        (self.gs1 if which == 0 else self.gs2).fill_(gs)
        self.alpha13.copy_(self.w13_s2 / self.gs1)
        self.alpha2.copy_(self.w2_s2 / self.gs2)

    def _front(self, hidden, topk_ids, m: int, check):
        ws, cap = self.ws, capacity(m, self.top_k, self.num_experts, PAD)
        self.route(topk_ids, self.expert_start, ws["counts"], ws["offsets"], ws["slot_of"][:m], ws["src_token"][:cap],
                   check=check)
        ws["offsets"][-1:].fill_(cap)  # quack: offsets[E] = rows given; the tail is zero padding
        self.permute_q(hidden, ws["src_token"][:cap], self.gs1, ws["q1"][:cap], ws["sf1"][:cap], check=check)
        self.l1(ws["q1"][:cap], ws["sf1"][:cap], self.w13, self.w13_sf, ws["offsets"], self.alpha13, ws["h1"][:cap],
                check=check)
        return cap

    def calibrate(self, hidden: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> None:
        """Warm-up only (host syncs): gs1 from this batch's hidden states, gs2 from its SiLU * up
        (computed in bf16 from the L1 output under gs1). Call with representative batches before
        capturing graphs; the largest amax seen is kept."""
        self._set_scale(0, float(hidden.float().abs().amax()))
        m = hidden.shape[0]
        cap = self._front(hidden, topk_ids, m, True)
        from ..kernels.moe_glue.spec_silu_mul import silu_mul

        h1 = self.ws["h1"][:cap]
        valid = self.ws["src_token"][:cap] >= 0
        act = silu_mul(h1[valid], self.swiglu_limit) if bool(valid.any()) else h1[:0, : self.intermediate]
        self._set_scale(1, float(act.float().abs().amax()) if act.numel() else 0.0)
        self.calibrated = True

    def __call__(self, hidden, topk_ids, topk_weights, out=None, check: bool | str = True):
        if not self.calibrated:
            raise ArgumentError("MoERunner on sm_100a: call calibrate() with real activations at warm-up first "
                                "(activation global scales; the checkpoint's input_scale is not used)")
        m = hidden.shape[0]
        if m > self.max_tokens:
            raise ArgumentError(f"hidden: M={m} tokens exceeds the runner's max_tokens={self.max_tokens}")
        ws = self.ws
        cap = self._front(hidden, topk_ids, m, check)
        self.silu_q(ws["h1"][:cap], self.gs2, ws["q2"][:cap], ws["sf2"][:cap], check=check)
        self.l2(ws["q2"][:cap], ws["sf2"][:cap], self.w2, self.w2_sf, ws["offsets"], self.alpha2, ws["y"][:cap],
                check=check)
        if out is None:
            out = torch.empty((m, self.hidden), dtype=torch.bfloat16, device=hidden.device)
        self.combine(ws["y"][:cap], ws["slot_of"][:m], topk_weights, out, check=check)
        return out
