"""quack_w4a16_gemm: quack-kernels 0.6.5's SM90 W4A16 GEMM with NVFP4 weights, built ahead of time.

    out[M, N] = bf16( (act[M, K] @ W[N, K]^T) * alpha ),   W = e2m1(q) * float(e4m3 sf)

act is BF16 (K contiguous), W is NVFP4 (E2M1 codes + one E4M3 scale per 16 along K) in quack's
register layout (prepare.prepare_weights), alpha is a 1-element fp32 *device* tensor holding the
per-tensor decode scale, i.e. 1 / global_scale (a ModelOpt checkpoint's weight_scale_2): quack
multiplies the fp32 accumulator by it, it does not divide. The weights are decoded to bf16 in
registers (exact) and fed to WGMMA as the A operand (the weight matrix is the kernel's M side,
the tokens its N side, so tile_m tiles N and tile_n tiles the token count M).

Dense only (one weight matrix). Serial split-K (`split_k` > 1, quack's SplitKMode.SERIAL): the
K tiles of each output tile are cut into split_k consecutive ranges; split s waits until the
tile's int32 flag equals s, adds its f32 partial into the tile's workspace region (split 0
stores it) and sets the flag to s + 1; the last split waits for flag == split_k - 1, folds the
workspace into its accumulator, runs the epilogue once (alpha, bf16 store) and stores 0 back
into the flag. So the two scratch arguments need:
  * flags [1, N / tile_m, cdiv(M, tile_n)] int32: zero before the first call, and zero again
    after every completed call (the finalizer's self-clean): a caller-owned buffer zeroed
    once serves every later call and CUDA-graph replay, at any M (any prefix of a zero buffer
    is zero, whatever shape it is viewed as);
  * workspace [1, N / tile_m, cdiv(M, tile_n), tile_m * tile_n] f32: never needs init (split 0
    stores before anyone reads).
The shapes are quack's own (`quack.gemm._split_k_buffers` on D = out^T); kernel.py gives the
kernel the same views quack's host path does.
No deadlock: the persistent scheduler numbers work units w = split_k * tile + s (split
fastest) and CTA c runs c, c + G, c + 2G, ... (G = grid = sm_count CTAs), always in increasing
order; a unit waits only on units of the same tile with smaller w. If all G CTAs are resident
at once, the smallest unfinished unit's CTA has finished everything before it, so it runs and
waits only on finished units: by induction everything completes (a CTA never waits on a
split it would run itself later: those have larger w). Residency needs G = sm_count <= the
SMs the device gives the kernel (one CTA per SM fits by construction): Nvfp4Linear refuses a
split-K variant on a device with fewer SMs. Clusters (cluster_n 2) are not offered with
split-K: their residency depends on the GPC layout, not only the SM count.

Tuning (per token bucket; measured tables for the DeepSeek-V4 shapes in SHAPE_TILES; for others a
starting point, not measured here): quack's H100 rule
(operand_transform.host.pick_w4_cfg) takes tile_n = the smallest of 16/32/64/128 that covers M
for decode and (tile_m, tile_n) = (128, 256) for prefill (M > 256), and reaches ~112+ CTAs
with split-k; without split-k, tile_m = 64 doubles the decode CTA count instead (N/64 CTAs).
tile_n <= 32 runs 2 CTAs per SM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..checks import rel_frobenius_errors, split_flags_errors
from ..family import Arg, Family, Signature, eval_dim
from ..hopper import SM_COUNT
from ..tolerances import REL_FROBENIUS
from ..validity import in_range, multiple_of, one_of

TILE_MS = (64, 128)
TILE_NS = (16, 32, 64, 128, 192, 256)  # quack's W4 tile_n candidates (tile_N % 16, <= 256)
CLUSTER_NS = (1, 2)
SPLIT_KS = (1, 2, 3, 4, 6, 8)
REL_TOL = REL_FROBENIUS["bfloat16"]  # the bf16 output rounding alone measures ~1.7e-3


@dataclass(frozen=True)
class W4A16Params:
    n: int  # output features (weight rows)
    k: int  # input features
    tile_m: int = 128  # CTA tile along N (weight rows), multiple of 64
    tile_n: int = 128  # CTA tile along M (tokens)
    cluster_n: int = 1  # CTAs along M sharing each weight tile by TMA multicast
    max_swizzle_size: int = 8  # persistent scheduler's raster swizzle (quack default)
    use_pdl: bool = True  # programmatic dependent launch (quack default)
    sm_count: int = SM_COUNT  # persistent grid = sm_count // cluster_n CTAs (H100 SXM / H200: 132)
    split_k: int = 1  # serial split-K factor (> 1: flags + workspace scratch arguments)


def k_reasons(k: int) -> list[str]:
    return multiple_of("k", k, 64, "one blob tile is 64 along K")


def weight_args(*lead: str) -> tuple[Arg, Arg]:
    """blob and strip ("sf") of the shared Hopper W4A16 layout (layout.py), `lead` dims first
    (grouped: "E")."""
    return (
        Arg("blob", "uint8", (*lead, "N // 64", "K // 64", 128, 16), align=16),
        Arg("sf", "uint8", (*lead, "N // 64", "K // 64", 32, 4, 2), align=16),
    )


def reference_weights(inputs: Mapping[str, Any], e: int | None = None) -> Any:
    """Expert e's (dense: the) weights, dequantized exactly to float64: from the unprepared
    weights when make_inputs provided them ("w_q", "w_sf"), else by inverting the layout, so
    a reference never depends on the layout transform it is meant to check."""
    from .prepare import dequantize, unprepare_weights

    if "w_q" in inputs:
        q, sf = (inputs["w_q"], inputs["w_sf"]) if e is None else (inputs["w_q"][e], inputs["w_sf"][e])
    else:
        q, sf = unprepare_weights(*((inputs["blob"], inputs["sf"]) if e is None else (inputs["blob"][e], inputs["sf"][e])))
    return dequantize(q, sf).double()


class QuackW4A16Family(Family):
    name = "quack_w4a16_gemm"
    params_type = W4A16Params
    problem_keys = ("n", "k")
    archs = ("sm_90a",)  # WGMMA RS mainloop; quack's SM120 path is another kernel
    modules = (
        "nvfp4_aot.kernels.quack_w4a16",
        "nvfp4_aot.kernels.quack_w4a16.kernel",
        "nvfp4_aot.kernels.quack_w4a16.prepare",
    )
    third_party = ("quack-kernels",)
    # Every large tensor is addressed by TMA (int32 coordinates per dimension), so M is not
    # bound by 32-bit flat offsets; 65536 is what the tests cover.
    max_m = 65536
    # quack's tile_n tiles the token count (swap-AB): decode buckets get narrow token tiles,
    # prefill wide ones. `tiles` is the rule for an unmeasured shape; SHAPE_TILES holds the
    # DeepSeek-V4 shapes' tables from the H200 sweep (benchmarks/quack_w4a16_sweep.py,
    # docs/PERFORMANCE.md 2026-12-02). manifests/default.toml's buckets must agree with
    # tile_table() (tests/build/test_tiles.py), so plan and the default manifest tune alike.
    tiles = (
        (16, {"tile_m": 64, "tile_n": 16}),
        (32, {"tile_m": 64, "tile_n": 32}),
        (64, {"tile_m": 64, "tile_n": 64}),
        (256, {"tile_m": 128, "tile_n": 128}),
        (None, {"tile_m": 128, "tile_n": 256}),
    )
    _DECODE = ((16, {"tile_m": 64, "tile_n": 16}), (32, {"tile_m": 64, "tile_n": 32}))
    # 2026-12-02 (split-K sweep, docs/PERFORMANCE.md "quack split-K"): split-K pays on q_a + kv
    # (N = 2048: 32 weight tiles of 64 rows; split 4 / 2 at M <= 384) and on gate + up at
    # M = 33..64 (128-row tiles, split 2); down / o_b / q_b are fastest unsplit at every M swept.
    SHAPE_TILES = {  # (n, k) -> table
        (6144, 7168): _DECODE + ((64, {"tile_m": 128, "tile_n": 64, "split_k": 2}), (128, {"tile_m": 64, "tile_n": 128}),
                                 (384, {"tile_m": 64, "tile_n": 256}), (768, {"tile_m": 128, "tile_n": 256}),
                                 (1536, {"tile_m": 64, "tile_n": 256}), (None, {"tile_m": 128, "tile_n": 256})),
        (7168, 3072): _DECODE + ((64, {"tile_m": 64, "tile_n": 64}), (128, {"tile_m": 64, "tile_n": 128}),
                                 (384, {"tile_m": 64, "tile_n": 256}), (None, {"tile_m": 128, "tile_n": 256})),
        (7168, 2048): _DECODE + ((64, {"tile_m": 64, "tile_n": 64}), (128, {"tile_m": 64, "tile_n": 128}),
                                 (384, {"tile_m": 64, "tile_n": 256}), (None, {"tile_m": 128, "tile_n": 256})),
        # N = 2048 gives few weight tiles: 64-row tiles (twice the CTAs), split-K up to M = 384
        (2048, 7168): _DECODE + ((64, {"tile_m": 64, "tile_n": 64, "split_k": 4}),
                                 (128, {"tile_m": 64, "tile_n": 128, "split_k": 4}),
                                 (384, {"tile_m": 64, "tile_n": 128, "split_k": 2}), (768, {"tile_m": 64, "tile_n": 128}),
                                 (1536, {"tile_m": 64, "tile_n": 256}), (None, {"tile_m": 128, "tile_n": 256})),
        (65536, 1536): _DECODE + ((64, {"tile_m": 128, "tile_n": 64}), (128, {"tile_m": 128, "tile_n": 128}),
                                  (None, {"tile_m": 128, "tile_n": 256})),
    }

    def tile_table(self, problem: Mapping[str, Any]):
        return self.SHAPE_TILES.get((problem["n"], problem["k"]), self.tiles)

    def can_implement(self, p: W4A16Params, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + multiple_of("n", p.n, 128, "quack pads weights to 128 rows")
        r += k_reasons(p.k) + one_of("tile_m", p.tile_m, TILE_MS) + one_of("tile_n", p.tile_n, TILE_NS)
        r += one_of("cluster_n", p.cluster_n, CLUSTER_NS) + in_range("max_swizzle_size", p.max_swizzle_size, 1, 16)
        r += in_range("sm_count", p.sm_count, p.cluster_n, 1024, lo_name="cluster_n")
        r += one_of("split_k", p.split_k, SPLIT_KS)
        if p.split_k in SPLIT_KS and p.split_k > 1:
            if p.cluster_n != 1:
                r.append(f"split_k={p.split_k} needs cluster_n=1 (a cluster's residency depends on the GPC layout)")
            if p.k % 64 == 0 and p.k // 64 < 4 * p.split_k:
                r.append(f"split_k={p.split_k} needs at least 4 K tiles of 64 per split (k={p.k})")
        return r

    def scratch_args(self, p: W4A16Params) -> tuple[Arg, ...]:
        """The serial split-K scratch (see the module docstring): quack's flag and workspace
        buffers for D = out^T, batch first, row-major; none without split-K."""
        if p.split_k == 1:
            return ()
        tiles = (1, f"N // {p.tile_m}", f"cdiv(M, {p.tile_n})")
        return (
            Arg("flags", "int32", tiles, align=4, scratch=True),
            Arg("workspace", "float32", (*tiles, p.tile_m * p.tile_n), align=16, scratch=True),
        )

    def signature(self, p: W4A16Params) -> Signature:
        return Signature(
            (
                Arg("act", "bfloat16", ("M", "K"), align=16),
                *weight_args(),
                Arg("alpha", "float32", (1,), align=4),
                Arg("out", "bfloat16", ("M", "N"), align=16, output=True),
                *self.scratch_args(p),
            ),
            static={"N": p.n, "K": p.k},
        )

    def compile_args(self, p: W4A16Params, arch: str):
        from . import kernel

        return kernel.make_kernel(p), kernel.fake_args(p.n, p.k, split_k=p.split_k)

    def make_inputs(self, p: W4A16Params, m: int, device: Any, seed: int, poison: float = float("nan")):
        """Fresh random NVFP4 weights (prepared), activations, alpha and a poisoned output.
        Also returns the weights before prepare ("w_q", "w_sf"; not kernel arguments), so the
        reference does not depend on the layout transform it is meant to check."""
        import torch

        from .prepare import prepare_weights, random_nvfp4_weights

        gen = torch.Generator(device=device).manual_seed(seed)
        q, sf = random_nvfp4_weights(p.n, p.k, gen, device)
        blob, strip = prepare_weights(q, sf)
        act = torch.randn((m, p.k), generator=gen, device=device).to(torch.bfloat16)
        alpha = (torch.rand((1,), generator=gen, device=device) + 0.5) * 2.0**-7
        out = torch.full((m, p.n), poison, dtype=torch.bfloat16, device=device)
        inputs = {"act": act, "blob": blob, "sf": strip, "alpha": alpha, "out": out, "w_q": q, "w_sf": sf}
        for a in self.scratch_args(p):  # flags zeroed (the contract), workspace poisoned (never read first)
            shape = tuple(eval_dim(d, {"N": p.n, "K": p.k, "M": m}) for d in a.shape)
            inputs[a.name] = (torch.zeros(shape, dtype=torch.int32, device=device) if a.dtype == "int32"
                              else torch.full(shape, poison, dtype=torch.float32, device=device))
        return inputs

    _alpha_shape: tuple = ()  # reference's view of alpha: a scalar; the row-alpha family's broadcasts over N

    def reference(self, p: W4A16Params, inputs: Mapping[str, Any]):
        """float64 act @ W^T * alpha with W dequantized exactly (reference_weights)."""
        w = reference_weights(inputs)
        return {"out": (inputs["act"].double() @ w.T) * inputs["alpha"].double().reshape(self._alpha_shape)}

    def check(self, p: W4A16Params, got: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
        return split_flags_errors(got) or rel_frobenius_errors("out", got["out"], want["out"], REL_TOL)


class QuackW4A16RowAlphaFamily(QuackW4A16Family):
    """The same kernel with a per-row alpha [N] (fp32, one value per output feature) in the
    epilogue instead of the scalar: a fused projection whose parts have different global
    scales (DeepSeek-V4's q_a + kv: two) is one GEMM. Same weights layout, same tunings."""

    name = "quack_w4a16_rowalpha_gemm"

    def signature(self, p: W4A16Params) -> Signature:
        sig = super().signature(p)
        args = tuple(Arg("alpha", "float32", ("N",), align=4) if a.name == "alpha" else a for a in sig.args)
        return Signature(args, static=sig.static)

    def compile_args(self, p: W4A16Params, arch: str):
        from . import kernel

        return kernel.make_kernel(p, row_alpha=True), kernel.fake_args(p.n, p.k, row_alpha=True, split_k=p.split_k)

    def make_inputs(self, p: W4A16Params, m: int, device: Any, seed: int, poison: float = float("nan")):
        """As the scalar family, with a two-valued alpha row (halves with different global
        scales, as q_a + kv has) so that a wrong row mapping in the epilogue is caught."""
        import torch

        inputs = super().make_inputs(p, m, device, seed, poison)
        gen = torch.Generator(device=device).manual_seed(seed + 7919)
        half = (torch.rand((2,), generator=gen, device=device) + 0.5) * 2.0**-7
        sizes = torch.tensor([p.n // 2, p.n - p.n // 2], device=device)
        inputs["alpha"] = half.repeat_interleave(sizes).contiguous()
        return inputs

    _alpha_shape = (1, -1)


FAMILY = QuackW4A16Family()
ROW_ALPHA_FAMILY = QuackW4A16RowAlphaFamily()
