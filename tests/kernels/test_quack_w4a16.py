"""quack_w4a16_gemm on the CPU box: signature, the weight layout transform, the reference and
its tolerance, and (slow) agreement with quack's own host code plus a real build + verify."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import build_and_verify, run_cli

from nvfp4_aot.kernels import eval_dim, families, get_family
from nvfp4_aot.kernels.family import Signature
from nvfp4_aot.kernels.nvfp4_quantize.ref import dequantize_ref
from nvfp4_aot.kernels.quack_w4a16 import REL_TOL
from nvfp4_aot.kernels.quack_w4a16.prepare import (
    dequantize,
    prepare_weights,
    random_nvfp4_weights,
    unprepare_weights,
)
from nvfp4_aot.runtime.validate import CallValidator

FAM = get_family("quack_w4a16_gemm")
CPU = torch.device("cpu")


def params(**kw):
    return FAM.parse_params({"n": 6144, "k": 7168, **kw})


def rand_weights(n, k, seed):
    return random_nvfp4_weights(n, k, torch.Generator().manual_seed(seed), CPU)


# ----------------------------------------------------------------------------- spec


def test_registered_through_entry_point():
    assert families()["quack_w4a16_gemm"] is FAM
    assert FAM.third_party == ("quack-kernels",) and FAM.archs == ("sm_90a",)


def test_signature_order_dtypes_shapes():
    sig = FAM.signature(params())
    assert [a.name for a in sig.args] == ["act", "blob", "sf", "alpha", "out"]
    assert [a.dtype for a in sig.args] == ["bfloat16", "uint8", "uint8", "float32", "bfloat16"]
    assert [a.name for a in sig.args if a.output] == ["out"]
    assert not any(a.scratch for a in sig.args)
    env = {**sig.static, "M": 5}
    shapes = {a.name: tuple(eval_dim(d, env) for d in a.shape) for a in sig.args}
    assert shapes == {
        "act": (5, 7168),
        "blob": (96, 112, 128, 16),
        "sf": (96, 112, 32, 4, 2),
        "alpha": (1,),
        "out": (5, 6144),
    }
    assert dict(sig.static) == {"N": 6144, "K": 7168} and sig.dynamic == ("M",)
    assert Signature.from_json(json.loads(json.dumps(sig.to_json()))) == sig


def test_split_k_signature_adds_quacks_flag_and_workspace_buffers():
    """split_k > 1: flags [1, N/tile_m, cdiv(M, tile_n)] int32 and workspace [..., tile_m * tile_n]
    f32 (quack.gemm._split_k_buffers on D = out^T), trailing scratch; make_inputs zeroes the flags
    and poisons the workspace; check() refuses flags left non-zero."""
    for fam in (FAM, get_family("quack_w4a16_rowalpha_gemm")):
        p = fam.parse_params({"n": 2048, "k": 7168, "tile_m": 64, "tile_n": 128, "split_k": 3})
        sig = fam.signature(p)
        assert [a.name for a in sig.args] == ["act", "blob", "sf", "alpha", "out", "flags", "workspace"]
        assert [a.scratch for a in sig.args] == [False] * 5 + [True, True]
        assert Signature.from_json(json.loads(json.dumps(sig.to_json()))) == sig
        env = {**sig.static, "M": 129}
        shapes = {a.name: tuple(eval_dim(d, env) for d in a.shape) for a in sig.args[5:]}
        assert shapes == {"flags": (1, 32, 2), "workspace": (1, 32, 2, 64 * 128)}
        # = quack.gemm._split_k_buffers(out.t()[None], SERIAL, 64, 128, 1, 1, False): (L, ceil(N / tile_m),
        # ceil(M / tile_n) [, tile_m * tile_n]) (quack.gemm imports triton: not importable on this box)
        inputs = fam.make_inputs(p, 129, CPU, seed=1)
        assert not inputs["flags"].any() and torch.isnan(inputs["workspace"]).all()
        v = CallValidator("sym", sig, device_type="cpu")
        v([inputs[a.name] for a in v.args])
        want = fam.reference(p, inputs)
        inputs["out"].copy_(want["out"])
        assert fam.check(p, inputs, want) == []
        inputs["flags"][0, 3, 1] = 2
        assert "not reset to 0" in fam.check(p, inputs, want)[0]
    assert not any(a.scratch for a in FAM.signature(params()).args)


def test_runtime_validator_accepts_make_inputs():
    p = FAM.parse_params({"n": 256, "k": 192})
    inputs = FAM.make_inputs(p, 3, CPU, seed=1)
    v = CallValidator("sym", FAM.signature(p), device_type="cpu")
    v([inputs[a.name] for a in v.args])  # shapes, dtypes, contiguity, alignment


def test_can_implement():
    assert FAM.can_implement(params(), "sm_90a") == []
    assert FAM.can_implement(params(tile_m=64, tile_n=16, cluster_n=2, use_pdl=False), "sm_90a") == []
    assert FAM.can_implement(params(), "sm_100a")  # WGMMA RS mainloop: Hopper only
    bad = {
        "n": dict(n=6144 + 64),
        "k": dict(k=7168 + 32),
        "tile_m": dict(tile_m=192),
        "tile_n": dict(tile_n=48),
        "cluster_n": dict(cluster_n=4),
        "max_swizzle_size": dict(max_swizzle_size=0),
        "sm_count": dict(sm_count=0),
        "split_k": dict(split_k=5),
    }
    for name, kw in bad.items():
        reasons = FAM.can_implement(params(**kw), "sm_90a")
        assert len(reasons) == 1 and reasons[0].startswith(name), (name, reasons)
    assert FAM.can_implement(params(split_k=8, tile_m=64, tile_n=64), "sm_90a") == []
    # split-K: no clusters (residency), at least 4 K tiles per split
    assert "cluster_n=1" in FAM.can_implement(params(split_k=2, cluster_n=2), "sm_90a")[0]
    assert "4 K tiles" in FAM.can_implement(FAM.parse_params({"n": 256, "k": 448, "split_k": 2}), "sm_90a")[0]


# ----------------------------------------------------------------------------- prepare


def quack_formula(q, sf):
    """The layout as quack's nvfp4_utils docstring states it, element by element:
    blob[g, kt, t, j]: b = j//4, p = j%4, row = 64g + 16(t//32) + (t%32)//4 + 8(p%2),
    byte = 32kt + 8b + t%4 + 4(p//2); strip slot s = 8(r//16) + r%16 holds (sf[r], sf[r+8])."""
    n, kb = q.shape
    g, kt = n // 64, kb // 32
    blob = torch.empty((g, kt, 128, 16), dtype=torch.uint8)
    for t in range(128):
        for j in range(16):
            b, p = j // 4, j % 4
            row = 16 * (t // 32) + (t % 32) // 4 + 8 * (p % 2)
            byte = 8 * b + t % 4 + 4 * (p // 2)
            blob[:, :, t, j] = q.view(g, 64, kt, 32)[:, row, :, byte]
    strip = torch.empty((g, kt, 32, 4, 2), dtype=torch.uint8)
    for s in range(32):
        r = 16 * (s // 8) + s % 8
        for b in range(4):
            for i in range(2):
                strip[:, :, s, b, i] = sf.view(g, 64, kt, 4)[:, r + 8 * i, :, b]
    return blob, strip


def test_prepare_matches_quack_layout_formula():
    q, sf = rand_weights(192, 256, seed=3)
    blob, strip = prepare_weights(q, sf)
    want_blob, want_strip = quack_formula(q, sf)
    assert torch.equal(blob, want_blob) and torch.equal(strip, want_strip)


@pytest.mark.parametrize("n,k", [(64, 64), (128, 192), (384, 1024)])
def test_prepare_unprepare_round_trip(n, k):
    q, sf = rand_weights(n, k, seed=n + k)
    blob, strip = prepare_weights(q, sf)
    assert blob.shape == (n // 64, k // 64, 128, 16) and strip.shape == (n // 64, k // 64, 32, 4, 2)
    assert blob.is_contiguous() and strip.is_contiguous()
    q2, sf2 = unprepare_weights(blob, strip)
    assert torch.equal(q2, q) and torch.equal(sf2, sf)
    # every byte moves: the transform is a permutation, not the identity
    assert torch.equal(blob.flatten().sort().values, q.flatten().sort().values)
    # float8_e4m3fn scales are accepted as their bits
    assert torch.equal(prepare_weights(q, sf.view(torch.float8_e4m3fn))[1], strip)


def test_prepare_rejects_bad_shapes():
    q, sf = rand_weights(128, 128, seed=0)
    with pytest.raises(ValueError, match="multiple"):
        prepare_weights(q[:96], sf[:96])
    with pytest.raises(ValueError, match="unswizzled"):
        prepare_weights(q, sf[:, :4])


def test_dequantize_matches_first_party_nvfp4_reference():
    q, sf = rand_weights(128, 256, seed=5)
    # nvfp4_quantize's reference decodes code * sf / gs: alpha is exactly 1 / gs
    for gs in (1.0, 0.25, 64.0):  # powers of two: scaling commutes exactly with the products
        want = dequantize_ref(q, sf, torch.tensor([gs]), sf_layout="rowmajor")
        assert torch.equal(dequantize(q, sf, torch.tensor([1.0 / gs])), want)
    assert torch.isfinite(dequantize(q, sf)).all()


def test_random_weights_cover_zero_subnormal_and_no_nan():
    q, sf = rand_weights(512, 1024, seed=11)
    assert (sf <= 0x7E).all()  # never the E4M3 NaN
    assert ((sf < 8).float().mean() - 0.02).abs() < 0.01  # zero / subnormal blocks
    assert q.unique().numel() == 256
    tops = [int(rand_weights(64, 256, seed=s)[1].max()) for s in range(100)]
    assert max(tops) >= 0x78 and min(tops) <= 0x28  # over seeds the E4M3 normal range is drawn


# ----------------------------------------------------------------------------- reference / check


def test_make_inputs_fresh_and_reproducible():
    p = FAM.parse_params({"n": 128, "k": 128})
    a, b, c = (FAM.make_inputs(p, 4, CPU, seed=s) for s in (7, 7, 8))
    for name in ("act", "blob", "sf", "alpha"):
        assert torch.equal(a[name], b[name]) and not torch.equal(a[name], c[name]), name
    assert torch.isnan(a["out"]).all() and a["out"].dtype == torch.bfloat16
    assert torch.equal(unprepare_weights(a["blob"], a["sf"])[0], a["w_q"])


def test_reference_uses_multiply_by_alpha_and_check_tolerance():
    p = FAM.parse_params({"n": 256, "k": 512})
    inputs = FAM.make_inputs(p, 37, CPU, seed=2)
    want = FAM.reference(p, inputs)["out"]
    assert want.dtype == torch.float64 and want.shape == (37, 256)
    # without the unprepared copies the reference inverts the layout: same numbers
    bare = {k: v for k, v in inputs.items() if not k.startswith("w_")}
    assert torch.equal(FAM.reference(p, bare)["out"], want)
    w = dequantize(inputs["w_q"], inputs["w_sf"]).double()
    alpha = inputs["alpha"].double().item()
    torch.testing.assert_close(want, inputs["act"].double() @ w.T * alpha, rtol=1e-12, atol=0)

    def run(out):
        return FAM.check(p, {"out": out}, {"out": want})

    assert "non-finite" in run(inputs["out"])[0]  # the untouched poison
    good = want.to(torch.bfloat16)  # what an exact kernel returns after its bf16 store
    assert run(good) == []
    err = ((good.double() - want).norm() / want.norm()).item()
    assert 2e-4 < err < REL_TOL / 1.5, err  # bf16 rounding alone stays well inside the tolerance
    # the bugs the tolerance must catch
    wrong_alpha = (inputs["act"].double() @ w.T / alpha).to(torch.bfloat16)  # divide, not multiply
    assert run(wrong_alpha)
    rows = good.clone()
    rows[:, :64] = rows[:, 64:128].clone()  # one 64-row weight block read from the wrong place
    assert run(rows)
    tail = good.clone()
    tail[-1] = 0  # last token row (a partial M tile) never stored
    assert run(tail)
    assert run(good[:-1]) == ["out: shape (36, 256) != (37, 256)"]


# ----------------------------------------------------------------------------- against quack (slow)

QUACK_CHECK = textwrap.dedent(
    """
    import torch
    from nvfp4_aot.kernels.quack_w4a16 import kernel  # installs the quack package shell
    from nvfp4_aot.kernels.quack_w4a16.prepare import dequantize, prepare_weights, random_nvfp4_weights
    from quack.blockscaled.nvfp4_utils import dequant_nvfp4_reference, repack_nvfp4_sf, repack_nvfp4_weight
    from quack.operand_transform.formats import decode_format
    from quack.operand_transform.host import w4_fake_operands

    fmt = decode_format("nvfp4")
    for n, k in [(128, 64), (256, 512), (6144, 7168)]:
        q, sf = random_nvfp4_weights(n, k, torch.Generator().manual_seed(n + k), "cpu")
        blob, strip = prepare_weights(q, sf)
        qb, qs = fmt.prepare(q, sf)
        assert torch.equal(blob, repack_nvfp4_weight(q)) and torch.equal(blob, qb), (n, k)
        assert torch.equal(strip, repack_nvfp4_sf(sf)) and torch.equal(strip, qs), (n, k)
        if n <= 256:
            assert torch.equal(dequantize(q, sf, 0.375), dequant_nvfp4_reference(q, sf, 0.375))
        for tile_m in (64, 128):
            (a_shape, a_stride), (s_shape, s_stride) = kernel.operand_views(n, k, tile_m)
            fake = w4_fake_operands(fmt, n, k, tile_m)
            assert (a_shape, a_stride) == (tuple(fake.blob.shape), tuple(fake.blob.stride)), (n, k, tile_m)
            assert (s_shape, s_stride) == (tuple(fake.sf.shape), tuple(fake.sf.stride)), (n, k, tile_m)
    print("OK")
    """
)


def dsl_env():
    return {**os.environ, "CUTE_DSL_ARCH": "sm_90a", "CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.slow
def test_layout_and_numerics_agree_with_quack():
    """prepare_weights == quack's repack (both entry points), dequantize == quack's reference
    (multiply by the per-tensor scale), and the trace-time views == quack's fake operands."""
    r = subprocess.run([sys.executable, "-c", QUACK_CHECK], capture_output=True, text=True, env=dsl_env())
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr


PTX_CHECK = textwrap.dedent(
    """
    import pathlib, sys
    import cutlass.cute as cute
    from cutlass import BFloat16, Float32
    from nvfp4_aot.kernels import get_family
    from nvfp4_aot.kernels.hopper import answer_device_queries
    from nvfp4_aot.kernels.quack_w4a16 import kernel
    from quack.gemm_config import SplitKMode
    from quack.gemm_runtime.host import _compile_gemm_epi
    from quack.gemm_runtime.identity import TransformARef
    from quack.gemm_w4 import _w4a16_alpha

    fam = get_family("quack_w4a16_gemm")
    n, k, tm, tn, cn, pdl, sk = 6144, 7168, *map(int, sys.argv[1:6])
    p = fam.parse_params(dict(n=n, k=k, tile_m=tm, tile_n=tn, cluster_n=cn, use_pdl=bool(pdl), split_k=sk))
    # quack's own compile path, exactly as gemm_w4a16(..., tensor_scale=<device tensor>) reaches it
    with answer_device_queries("quack_w4a16"):
        _compile_gemm_epi.__wrapped__(  # bypass quack's jit/disk cache
            _w4a16_alpha._class_ref(kernel._MINT_KEY), (9, 0), BFloat16, BFloat16, BFloat16, None,
            "k", "k", "n", None, (tm, tn, 64), (1, cn, 1), False, True, False, False, False, False,
            False, (("alpha", ("pointer", Float32)),), split_k=sk, split_k_mode=SplitKMode.SERIAL,
            post_init_attrs=() if pdl else (("use_pdl", False),),
            transform_a_ref=TransformARef("w4_name", name="nvfp4"), transform_dims=(n, k))
    fn, args = fam.compile_args(p, "sm_90a")
    cute.compile(fn, *args, options="--gpu-arch sm_90a --enable-tvm-ffi")
    ptx = sorted(pathlib.Path(sys.argv[6]).glob("*.ptx"))
    assert len(ptx) == 2, ptx
    assert ptx[0].read_bytes() == ptx[1].read_bytes(), "device code differs from quack's own path"
    print("OK")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("tile_m,tile_n,cluster_n,use_pdl,split_k", [(128, 16, 1, 1, 1), (64, 64, 2, 0, 1), (64, 64, 1, 1, 3)])
def test_device_code_identical_to_quack_host_path(tmp_path, tile_m, tile_n, cluster_n, use_pdl, split_k):
    """The flat all-tensor wrapper changes only the host side: the generated PTX is the same as
    quack's own compile of the same config (alpha in device-pointer mode; split-K with quack's
    flag / workspace views, which kernel.py rebuilds from the caller's contiguous buffers)."""
    env = {**dsl_env(), "CUTE_DSL_KEEP": "ptx", "CUTE_DSL_DUMP_DIR": str(tmp_path)}
    argv = [str(x) for x in (tile_m, tile_n, cluster_n, use_pdl, split_k, tmp_path)]
    r = subprocess.run([sys.executable, "-c", PTX_CHECK, *argv], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr


MANIFEST = """\
archs = ["sm_90a"]

[[op]]
family = "quack_w4a16_gemm"
problem = { n = 6144, k = 7168 }
buckets = [
  { m = [1, 64], tuning = { tile_m = 64, tile_n = 16 } },
  { m = [65, 256], tuning = { tile_m = 64, tile_n = 128, split_k = 3 } },
  { m = [257, 8192], tuning = { tile_m = 128, tile_n = 256, cluster_n = 2 } },
]
"""


@pytest.mark.slow
def test_build_and_verify(tmp_path):
    from nvfp4_aot.runtime.store_format import ENTRIES_DIR, cubin_archs, read_index

    out, manifest = build_and_verify(tmp_path, MANIFEST, built=3, jobs=2)
    index = read_index(out)
    for key, rec in index["entries"].items():
        p = FAM.parse_params(rec["params"])
        assert rec["signature"] == FAM.signature(p).to_json()
        assert cubin_archs((out / ENTRIES_DIR / key / "kernel.so").read_bytes()) == {"sm_90a"}
    (op,) = index["manifests"]["m"]["ops"].values()
    assert [b["m"] for b in op["buckets"]] == [[1, 64], [65, 256], [257, 8192]]
    # incremental: nothing to rebuild
    r = run_cli("compile", str(manifest), "-o", str(out), "--json")
    assert json.loads(r.stdout)["manifests"]["m"]["skipped"] == 3, r.stdout
    # buckets differ in arity by the split-K scratch only: the op names both the sizes and the arity
    from nvfp4_aot.runtime import open_store
    from nvfp4_aot.runtime.errors import ArgumentError

    op = open_store(out, arch="sm_90a", load=False).op("quack_w4a16_gemm", n=6144, k=7168)
    assert op.scratch(64) == [] and op.scratch(300) == []
    assert op.scratch(100) == [("flags", (1, 96, 1), torch.int32), ("workspace", (1, 96, 1, 64 * 128), torch.float32)]
    with pytest.raises(ArgumentError, match="expected 7 arguments at M=100"):
        op(torch.empty(100, 7168, dtype=torch.bfloat16), None, None, None, None)
