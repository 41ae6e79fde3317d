"""Host-side pieces shared by our two Hopper W4A16 families (kernels/w4a16: w4a16_gemm /
w4a16_grouped_gemm; kernels/w4a16_ws: w4a16_ws_gemm / w4a16_ws_grouped_gemm). Both compute

    out[r, :] = bf16((act[r, :] @ dequant(W_e)^T) * alpha[e, :])   offsets[e] <= r < offsets[e] + counts[e]

on the one Hopper W4A16 weight layout (quack's nvfp4 layout, kernels/quack_w4a16/layout.py), so
they share one signature, one way to make random inputs, one float64 reference and one check,
mixed into both families' base class by `W4A16Hooks`. `p` is either family's params dataclass
(fields n, k, experts). Torch is imported lazily: spec modules import this module.
"""

from __future__ import annotations

from typing import Any, Mapping

from .family import Arg, Signature
from .tolerances import REL_FROBENIUS
from .validity import in_range

REL_TOL = REL_FROBENIUS["bfloat16"]  # bf16 output rounding alone is ~1.7e-3 with fp32 accumulation
MAX_NK = 1 << 20  # weight rows / input features: keeps every per-expert byte offset far below 2^31


def bound_errors(p, max_experts: int, why: str) -> list[str]:
    """The size rules both families' predicates end with: experts in [1, max_experts] (`why`
    names the limit's cause) and n, k <= MAX_NK."""
    r = in_range("experts", p.experts, 1, max_experts, why)
    if p.n > MAX_NK or p.k > MAX_NK:
        r.append("n and k must be <= 2^20")
    return r


def grouped_order_errors(p, family: str) -> list[str]:
    """Both grouped families' word-order rule: a grouped launch reads runtime/word_order.py GROUPED_ORDERS only
    ("rotq" places its words for Nvfp4Linear's natural rows, `family` being the dense twin that reads it)."""
    from nvfp4_aot.runtime.word_order import GROUPED_ORDERS, WORD_ORDERS

    if p.word_order in WORD_ORDERS and p.word_order not in GROUPED_ORDERS:
        return [f"word_order={p.word_order!r} is Nvfp4Linear's ({family}): a grouped launch reads one of {GROUPED_ORDERS}"]
    return []


def signature(p, grouped: bool) -> Signature:
    """act [M, K] bf16, the prepared weights (blob, sf; [E, ...] when grouped), per-row alpha
    ([E, N] grouped, [N] dense), grouped: offsets [E + 1] and counts [E]; out [M, N] bf16 (4-byte aligned;
    16 under w4a16_ws's epi 3)."""
    e = ("E",) if grouped else ()
    groups = (Arg("offsets", "int32", ("E + 1",), align=4), Arg("counts", "int32", ("E",), align=4)) if grouped else ()
    static = {"N": p.n, "K": p.k, "E": p.experts} if grouped else {"N": p.n, "K": p.k}
    return Signature(
        (
            Arg("act", "bfloat16", ("M", "K"), align=16),
            Arg("blob", "uint8", (*e, "N // 64", "K // 64", 128, 16), align=16),
            Arg("sf", "uint8", (*e, "N // 64", "K // 64", 32, 4, 2), align=16),
            Arg("alpha", "float32", (*e, "N"), align=4),
            *groups,
            # w4a16_ws epi 3 stores through a TMA descriptor: 16-byte aligned rows (N * 2 bytes always are)
            Arg("out", "bfloat16", ("M", "N"), align=16 if getattr(p, "epi", 1) == 3 else 4, output=True),
        ),
        static=static,
    )


def slot_rows(table, experts: int) -> tuple:
    """A grouped tile table keyed by token-slots per expert t -> keyed by rows t * experts (what a
    bucket's M is: the runner's unpadded routed rows). Both grouped families' tile_table: a tiling's
    cost is set by the tokens each expert's CTAs see, so the edges scale with the expert count."""
    return tuple((None if t is None else t * experts, tuning) for t, tuning in table)


def random_weights(p, gen, device, word: str = "nibble"):
    """Per expert: random NVFP4 (q, sf) and their blob (in word order `word`, runtime/word_order.py)
    / strip, stacked over the experts, and a per-row alpha [E, N] with two halves of different
    global scales (the fused q_a + kv case; a wrong row or expert mapping shows)."""
    import torch

    from nvfp4_aot.runtime.word_order import word_order

    from .quack_w4a16.layout import prepare_weights
    from .quack_w4a16.prepare import random_nvfp4_weights

    qs, sfs, blobs, strips = [], [], [], []
    for _ in range(p.experts):
        q, sf = random_nvfp4_weights(p.n, p.k, gen, device)
        blob, strip = prepare_weights(q, sf)
        blob = word_order(blob, word)
        qs.append(q), sfs.append(sf), blobs.append(blob), strips.append(strip)
    half = (torch.rand((p.experts, 2), generator=gen, device=device) + 0.5) * 2.0**-7
    alpha = half.repeat_interleave(torch.tensor([p.n // 2, p.n - p.n // 2], device=device), dim=1)
    return torch.stack(qs), torch.stack(sfs), torch.stack(blobs), torch.stack(strips), alpha.contiguous()


def random_groups(m: int, experts: int, dist: str, gen) -> tuple[Any, Any]:
    """(offsets [E + 1], counts [E]) int32 on the CPU: expert e owns rows [off[e], off[e] + c[e]),
    followed by 0..25% padding rows; off[E] <= m. dist: uniform | skewed | single | empty."""
    import torch

    g = torch.Generator().manual_seed(int(torch.randint(0, 1 << 30, (1,), generator=gen, device=gen.device).item()))
    if dist == "uniform":
        w = torch.ones(experts)
    elif dist == "skewed":
        w = torch.rand(experts, generator=g) ** 4 + 1e-3
    elif dist == "single":
        w = torch.zeros(experts)
        w[int(torch.randint(0, experts, (1,), generator=g))] = 1.0
    elif dist == "empty":
        w = (torch.rand(experts, generator=g) < 0.3).float()
        if w.sum() == 0:
            w[0] = 1.0
    else:
        raise ValueError(f"unknown distribution {dist!r}")
    share = torch.multinomial(w / w.sum(), m, replacement=True, generator=g) if m else torch.zeros(0, dtype=torch.long)
    sizes = torch.bincount(share, minlength=experts)  # rows per expert, sum == m
    pad = (torch.rand(experts, generator=g) * 0.25 * sizes).long()  # some padding rows
    counts = (sizes - pad).clamp_min(0)
    offsets = torch.zeros(experts + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(sizes, 0)
    return offsets.to(torch.int32), counts.to(torch.int32)


def make_inputs(p, m: int, device: Any, seed: int, poison: float, grouped: bool, dist: str = "uniform",
                order: str = "natural", word: str = "nibble") -> dict:
    """Fresh random inputs for m rows: weights (random_weights, blob in word order `word`), grouped:
    a random grouping of the rows over the experts (random_groups, dist), act in K order `order`
    (runtime/layout.py), out filled with `poison`. The unprepared weights ride along as w_q / w_sf
    [E, ...] (not kernel arguments) for the reference."""
    import torch

    from nvfp4_aot.runtime.layout import act_order

    if not grouped and dist != "uniform":
        raise ValueError(f"dist={dist!r}: a dense GEMM has one group of rows")
    gen = torch.Generator(device=device).manual_seed(seed)
    q, sf, blob, strip, alpha = random_weights(p, gen, device, word)
    groups = random_groups(m, p.experts, dist, gen) if grouped else None
    act = act_order(torch.randn((m, p.k), generator=gen, device=device).to(torch.bfloat16), order)
    out = torch.full((m, p.n), poison, dtype=torch.bfloat16, device=device)
    if not grouped:
        return {"act": act, "blob": blob[0], "sf": strip[0], "alpha": alpha[0], "out": out, "w_q": q, "w_sf": sf}
    offsets, counts = groups
    return {"act": act, "blob": blob, "sf": strip, "alpha": alpha, "offsets": offsets.to(device),
            "counts": counts.to(device), "out": out, "w_q": q, "w_sf": sf}


def row_ranges(grouped: bool, inputs: Mapping[str, Any]) -> list[tuple[int, int]]:
    """Each expert's counted rows [lo, hi) (dense: all of act's rows)."""
    if not grouped:
        return [(0, inputs["act"].shape[0])]
    off, cnt = inputs["offsets"].tolist(), inputs["counts"].tolist()
    return [(off[e], off[e] + cnt[e]) for e in range(len(cnt))]


def reference(p, inputs: Mapping[str, Any], grouped: bool, order: str = "natural", word: str = "nibble"):
    """float64 act . W_e^T * alpha[e] over each expert's counted rows, W dequantized exactly (from
    make_inputs' w_q / w_sf, else by inverting the layout: the blob read in word order `word`); act
    read in K order `order`. Rows outside every expert's range are NaN: nothing may be written there."""
    import torch

    from .quack_w4a16.layout import dequantize, unprepare_weights

    act = inputs["act"]
    if order != "natural":  # the kernel reads K permuted; the math is on natural K
        from nvfp4_aot.runtime.layout import act_unorder

        act = act_unorder(act, order)
    act = act.double()
    want = torch.full((act.shape[0], p.n), float("nan"), dtype=torch.float64, device=act.device)
    alpha = inputs["alpha"].reshape(p.experts, p.n).double()
    blob = inputs["blob"].reshape(p.experts, p.n // 64, p.k // 64, 128, 16)
    sf = inputs["sf"].reshape(p.experts, p.n // 64, p.k // 64, 32, 4, 2)
    for e, (lo, hi) in enumerate(row_ranges(grouped, inputs)):
        if hi > lo:
            if "w_q" in inputs:
                q, s = inputs["w_q"][e], inputs["w_sf"][e]
            else:
                from nvfp4_aot.runtime.word_order import word_unorder

                q, s = unprepare_weights(word_unorder(blob[e], word), sf[e])
            w = dequantize(q, s).double()
            want[lo:hi] = (act[lo:hi] @ w.T) * alpha[e]
    return {"out": want}


def check(got: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """Rows the reference computes: every value finite, relative Frobenius error <= REL_TOL.
    Other rows: left untouched (the NaN poison survives, since padding rows are never written)."""
    import torch

    g, w = got["out"], want["out"]
    if tuple(g.shape) != tuple(w.shape):
        return [f"out: shape {tuple(g.shape)} != {tuple(w.shape)}"]
    rows = ~torch.isnan(w).all(dim=1)
    bad = []
    if (~rows).any() and not torch.isnan(g[~rows].float()).all():
        bad.append(f"out: {int((~torch.isnan(g[~rows].float())).sum())} values written in rows outside every "
                   "expert's count")
    gd, wd = g[rows].double(), w[rows]
    if gd.numel():
        nonfin = ~torch.isfinite(gd)
        if nonfin.any():
            return bad + [f"out: {int(nonfin.sum())} of {gd.numel()} computed values non-finite (unwritten poison?)"]
        err = ((gd - wd).norm() / wd.norm().clamp_min(1e-300)).item()
        if err > REL_TOL:
            bad.append(f"out: relative Frobenius error {err:.3e} > {REL_TOL:.0e}")
    return bad


class W4A16Hooks:
    """Family hooks of both W4A16 families (mixed in before Family), dense or grouped by the
    class's `grouped`: can_implement (the family's `reasons(p)` plus the dense family's one
    weight matrix), compile_args (`kernel_module`'s make_kernel + the shared fake_args), the
    signature and the test hooks above; `act_order(p)` is the K order the kernel reads act in
    (w4a16 has an act_order knob; w4a16_ws reads natural K)."""

    grouped = False
    grouped_name = ""  # the grouped family: what the dense family's experts != 1 error points to
    kernel_module = ""  # dotted name of the family's kernel module (make_kernel(p, grouped))
    max_m = 1 << 20  # act/out rows are addressed with 64-bit offsets; 65536 is what the tests cover

    def reasons(self, p) -> list[str]:
        raise NotImplementedError

    def can_implement(self, p, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + self.reasons(p)
        if not self.grouped and p.experts != 1:
            r.append(f"experts={p.experts}: the dense family has one weight matrix (use {self.grouped_name})")
        return r

    def compile_args(self, p, arch: str):
        import importlib

        from .w4a16_device import fake_args

        return importlib.import_module(self.kernel_module).make_kernel(p, self.grouped), fake_args(p, self.grouped)

    def act_order(self, p) -> str:
        return "natural"

    def word_order(self, p) -> str:  # the blob's bit order (runtime/word_order.py); w4a16 has a knob
        return "nibble"

    def signature(self, p) -> Signature:
        return signature(p, self.grouped)

    def make_inputs(self, p, m: int, device: Any, seed: int, poison: float = float("nan"), dist: str = "uniform"):
        """Grouped: a random grouping of the m rows over the experts (dist: uniform | skewed |
        single | empty), each expert's rows followed by some padding rows (never written)."""
        return make_inputs(p, m, device, seed, poison, self.grouped, dist, self.act_order(p), self.word_order(p))

    def reference(self, p, inputs: Mapping[str, Any]):
        return reference(p, inputs, self.grouped, self.act_order(p), self.word_order(p))

    def check(self, p, got: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
        return check(got, want)
