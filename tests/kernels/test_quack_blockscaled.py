"""quack_nvfp4_gemm / quack_nvfp4_grouped_gemm on the CPU box: spec, predicate, the torch reference
against an independent decode, the alpha convention, the tolerance, and (slow) agreement with
quack's layouts and config rules, a real sm_100a build + verify and the SASS of its cubins.
Nothing here runs on Blackwell: the kernels are compiled, linked and inspected only."""

import itertools
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from nvfp4_aot.kernels import eval_dim, families, get_family
from nvfp4_aot.kernels.family import Signature
from nvfp4_aot.kernels.nvfp4_quantize.ref import dequantize_ref, quantize_ref, random_activations, unswizzle_sf
from nvfp4_aot.kernels.quack_blockscaled import REL_TOL
from nvfp4_aot.kernels.quack_blockscaled import ref as R
from nvfp4_aot.runtime.store_format import ENTRIES_DIR, embedded_cubins, read_index
from nvfp4_aot.runtime.validate import CallValidator

DENSE = get_family("quack_nvfp4_gemm")
GROUPED = get_family("quack_nvfp4_grouped_gemm")
CPU = torch.device("cpu")


def params(fam, **kw):  # DeepSeek-V4 L1 (48 local experts for grouped)
    return fam.parse_params({"n": 6144, "k": 7168, **({"experts": 48} if fam is GROUPED else {}), **kw})


# ----------------------------------------------------------------------------- spec


def test_registered_through_entry_points():
    assert families()["quack_nvfp4_gemm"] is DENSE and families()["quack_nvfp4_grouped_gemm"] is GROUPED
    for fam in (DENSE, GROUPED):
        assert fam.archs == ("sm_100a",) and fam.third_party == ("quack-kernels",)


SIGNATURES = [  # (family, params, M, expected shapes, dtypes, static)
    ("quack_nvfp4_gemm", dict(n=6144, k=7168), 130,
     dict(a=(130, 3584), a_sf=(256, 448), b=(6144, 3584), b_sf=(6144, 448), alpha=(1,), out=(130, 6144)),
     ["uint8"] * 4 + ["float32", "bfloat16"], {"N": 6144, "K": 7168}),
    ("quack_nvfp4_grouped_gemm", dict(experts=48, n=7168, k=3072), 1000,
     dict(a=(1000, 1536), a_sf=(1024, 192), b=(48, 7168, 1536), b_sf=(48, 7168, 192), offsets=(49,),
          alpha=(48,), out=(1000, 7168)),
     ["uint8"] * 4 + ["int32", "float32", "bfloat16"], {"E": 48, "N": 7168, "K": 3072}),
]  # fmt: skip


@pytest.mark.parametrize("name,params,m,want,dtypes,static", SIGNATURES)
def test_signature(name, params, m, want, dtypes, static):
    sig = get_family(name).signature(get_family(name).parse_params(params))
    env = {**sig.static, "M": m}
    assert {a.name: tuple(eval_dim(d, env) for d in a.shape) for a in sig.args} == want  # call order too
    assert list({a.name: 0 for a in sig.args}) == list(want) and [a.dtype for a in sig.args] == dtypes
    assert [a.name for a in sig.args if a.output] == ["out"] and not any(a.scratch for a in sig.args)
    assert dict(sig.static) == static and sig.dynamic == ("M",)
    assert Signature.from_json(json.loads(json.dumps(sig.to_json()))) == sig


@pytest.mark.parametrize("m", [1, 128, 130])
def test_runtime_validator_accepts_make_inputs(m):
    for fam, p in ((DENSE, DENSE.parse_params({"n": 256, "k": 128})),
                   (GROUPED, GROUPED.parse_params({"experts": 3, "n": 128, "k": 192}))):  # fmt: skip
        inputs = fam.make_inputs(p, m, CPU, seed=1)
        v = CallValidator("sym", fam.signature(p), device_type="cpu")
        v([inputs[a.name] for a in v.args])  # shapes, dtypes, contiguity, alignment


def test_can_implement():
    for fam in (DENSE, GROUPED):
        assert fam.can_implement(params(fam), "sm_100a") == []
        ok = dict(tile_m=256, tile_n=192, cluster_m=2, cluster_n=4, clc=False, use_pdl=False)
        assert fam.can_implement(params(fam, **ok), "sm_100a") == []
        (why,) = fam.can_implement(params(fam), "sm_90a")  # Hopper has no tcgen05
        assert "sm_100a" in why and "tcgen05" in why and "sm_90a" in why, why
        bad = dict(n=dict(n=6144 + 64), k=dict(k=7168 + 32), tile_m=dict(tile_m=64), tile_n=dict(tile_n=96),
                   cluster_m=dict(tile_m=256, cluster_m=1),  # 2-CTA MMA needs a CTA pair
                   cluster_n=dict(cluster_n=8), max_swizzle_size=dict(max_swizzle_size=0),
                   sm_count=dict(cluster_n=4, sm_count=2))  # fmt: skip
        for name, kw in bad.items():
            reasons = fam.can_implement(params(fam, **kw), "sm_100a")
            assert len(reasons) == 1 and reasons[0].startswith(name), (name, reasons)
    assert GROUPED.can_implement(params(GROUPED, experts=0), "sm_100a")[0].startswith("experts")


# ----------------------------------------------------------------------------- reference


def e2m1_value(code):  # s ee m, bias 1
    s, e, m = -1.0 if code & 8 else 1.0, (code >> 1) & 3, code & 1
    return s * (0.5 * m if e == 0 else 2.0 ** (e - 1) * (1 + m / 2))


def e4m3_value(byte):  # s eeee mmm, bias 7, no infinities, S.1111.111 = NaN
    s, e, m = -1.0 if byte & 0x80 else 1.0, (byte >> 3) & 15, byte & 7
    if e == 15 and m == 7:
        return float("nan")
    return s * (2.0**-6 * m / 8 if e == 0 else 2.0 ** (e - 7) * (1 + m / 8))


E2M1, E4M3 = np.array([e2m1_value(c) for c in range(16)]), np.array([e4m3_value(b) for b in range(256)])


def atom_offset(r, c, cols):
    """Byte of scale (row r, scale column c) in the blocked layout, from CUTLASS's
    BlockScaledBasicChunk ((32, 4), (16, 4)) : ((16, 4), (0, 1)) tiled over (128, 4) atoms."""
    return ((r // 128) * (cols // 4) + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4


def independent_dequant(q, sf, rows):
    q, flat = q.numpy(), sf.numpy().reshape(-1)
    k = q.shape[1] * 2
    codes = np.stack([q & 15, q >> 4], axis=-1).reshape(rows, k)
    r, j = np.meshgrid(np.arange(rows), np.arange(k), indexing="ij")
    return E2M1[codes] * E4M3[flat[atom_offset(r, j // 16, k // 16)]]


def test_swizzle_matches_cutlass_atom():
    sf = torch.randint(0, 256, (300, 12), dtype=torch.uint8)
    flat = R.swizzle_sf(sf).reshape(-1)
    r, c = np.meshgrid(np.arange(300), np.arange(12), indexing="ij")
    assert torch.equal(flat[torch.from_numpy(atom_offset(r, c, 12))], sf)


def test_dense_reference_against_independent_decode():
    p = DENSE.parse_params({"n": 256, "k": 128})
    x = DENSE.make_inputs(p, 130, CPU, seed=4)
    a = independent_dequant(x["a"], x["a_sf"], 130)
    b = independent_dequant(x["b"], x["b_sf"], 256)
    want = a @ b.T * float(x["alpha"][0])
    got = DENSE.reference(p, x)["out"]
    assert got.dtype == torch.float64 and np.isfinite(want).all()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-300)


def test_grouped_reference_against_independent_decode():
    p = GROUPED.parse_params({"experts": 4, "n": 128, "k": 192})
    x = GROUPED.make_inputs(p, 300, CPU, seed=5)
    x["offsets"] = torch.tensor([0, 128, 128, 256, 300], dtype=torch.int32)  # an empty expert, a 44-row tail
    a = independent_dequant(x["a"], x["a_sf"], 300)
    want = np.zeros((300, 128))
    for e in range(4):
        lo, hi = int(x["offsets"][e]), int(x["offsets"][e + 1])
        b = independent_dequant(x["b"][e], x["b_sf"][e], 128)  # scales swizzled per expert
        want[lo:hi] = a[lo:hi] @ b.T * float(x["alpha"][e])
    np.testing.assert_allclose(GROUPED.reference(p, x)["out"].numpy(), want, rtol=1e-12, atol=1e-300)


def test_alpha_is_inverse_product_of_encode_scales():
    """With nvfp4_quantize's operands (x ~= code * sf / gs) the kernel's product times
    alpha = 1 / (gs_a * gs_b) is the product of the dequantized tensors, and approximates x @ w^T
    to NVFP4 accuracy."""
    gen = torch.Generator().manual_seed(0)
    x = random_activations(70, 256, CPU, gen).float().clamp(-40, 40)
    w = torch.randn((128, 256), generator=gen) * 0.02
    gs_a, gs_b = 2688.0 / x.abs().amax().reshape(1), 2688.0 / w.abs().amax().reshape(1)
    (qa, sfa), (qb, sfb) = quantize_ref(x, gs_a), quantize_ref(w, gs_b)
    alpha = R.alpha_from_global_scales(gs_a, gs_b)
    got = R.gemm_ref({"a": qa, "a_sf": sfa, "b": qb, "b_sf": sfb, "alpha": alpha}, grouped=False)
    deq = dequantize_ref(qa, sfa, gs_a).double() @ dequantize_ref(qb, sfb, gs_b).double().T
    # dequantize_ref rounds each code * sf / gs to fp32 (2^-24 relative): agreement to ~1e-7
    assert ((got - deq).norm() / deq.norm()).item() < 1e-6
    exact = x.double() @ w.double().T
    assert ((got - exact).norm() / exact.norm()).item() < 0.15  # NVFP4 quantization error
    ws2 = 1.0 / gs_b  # a ModelOpt checkpoint's weight_scale_2
    torch.testing.assert_close(R.alpha_from_global_scales(gs_a, gs_b), (ws2.double() / gs_a.double()).float())


def test_make_inputs_contract():
    p = GROUPED.parse_params({"experts": 5, "n": 128, "k": 64})
    a, b, c = (GROUPED.make_inputs(p, 600, CPU, seed=s) for s in (7, 7, 8))
    for name in ("a", "a_sf", "b", "b_sf", "offsets", "alpha"):
        assert torch.equal(a[name], b[name]) and not torch.equal(a[name], c[name]), name
    assert torch.isnan(a["out"]).all() and a["out"].dtype == torch.bfloat16
    assert (unswizzle_sf(a["a_sf"], 640)[600:] == R.E4M3_NAN).all()  # pad scale rows: NaN
    sf = unswizzle_sf(a["a_sf"], 600)  # zero, subnormal and normal scales; every code byte
    assert (sf == 0).any() and ((sf > 0) & (sf < 8)).any() and (sf <= 0x7E).all() and a["a"].unique().numel() == 256
    for m, seed in itertools.product((1, 127, 128, 129, 1000, 4096), range(20)):
        o = R.random_offsets(m, 7, torch.Generator().manual_seed(seed))
        assert o.dtype == torch.int32 and o.shape == (8,) and R.check_offsets(o, m) == [], (m, o)
    assert R.check_offsets(torch.tensor([0, 100, 228]), 228) == ["offsets[e] must be a multiple of 128 for every e < E"]
    assert len(R.check_offsets(torch.tensor([0, 256, 128]), 128)) == 1


def test_check_tolerance_catches_bugs():
    p = GROUPED.parse_params({"experts": 3, "n": 128, "k": 256})
    x = GROUPED.make_inputs(p, 384, CPU, seed=2)
    x["offsets"] = torch.tensor([0, 128, 256, 384], dtype=torch.int32)
    want = GROUPED.reference(p, x)["out"]

    run = lambda out: GROUPED.check(p, {"out": out}, {"out": want})  # noqa: E731
    assert "non-finite" in run(x["out"])[0]  # untouched poison
    good = want.to(torch.bfloat16)  # an exact kernel after its bf16 store
    assert run(good) == []
    err = ((good.double() - want).norm() / want.norm()).item()
    assert 2e-4 < err < REL_TOL / 1.5, err
    swapped = GROUPED.reference(p, {**x, "alpha": x["alpha"].flip(0)})["out"]  # alpha of another expert
    assert run(swapped.to(torch.bfloat16))
    # quack's unpadded-expert convention (expert e's scales at tile offsets[e] / 128 + e)
    sf = unswizzle_sf(x["a_sf"], 384)
    shifted = torch.cat([sf[:128], sf[256:384], torch.zeros_like(sf[:128])])
    gap = GROUPED.reference(p, {**x, "a_sf": R.swizzle_sf(shifted)})["out"]
    assert run(gap.to(torch.bfloat16))
    assert run(torch.cat([good[:-1], torch.zeros_like(good[:1])]))  # last row never stored
    assert run(good[:-1]) == ["out: shape (383, 128) != (384, 128)"]


# ----------------------------------------------------------------------------- against quack (slow)


def run_py(code, *argv, **env):
    env = {**os.environ, "CUTE_DSL_ARCH": "sm_100a", "CUDA_VISIBLE_DEVICES": "", "CUTE_DSL_NO_CACHE": "1", **env}
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
    return r.stdout


QUACK_CHECK = textwrap.dedent(
    """
    import itertools, torch
    from nvfp4_aot.kernels.quack_blockscaled import kernel  # installs the quack package shell
    from nvfp4_aot.kernels import get_family
    from nvfp4_aot.kernels.nvfp4_quantize.ref import swizzle_sf, unswizzle_sf
    from nvfp4_aot.kernels.quack_blockscaled.ref import dequant, random_nvfp4
    from quack.blockscaled.utils import _pack_blockscaled_scales
    from quack.blockscaled.nvfp4_utils import dequant_nvfp4_reference
    from quack.gemm_config import GemmConfig, blockscaled_config_ok
    from quack.gemm_sm100 import GemmSm100

    for rows, cols in [(128, 4), (300, 12), (1024, 448)]:
        sf = torch.randint(0, 256, (rows, cols), dtype=torch.uint8)
        packed = _pack_blockscaled_scales(sf.float().unsqueeze(-1))  # (1, rm, rk, 32, 4, 4)
        assert torch.equal(swizzle_sf(sf), packed.to(torch.uint8).view(-1, cols)), (rows, cols)
    q, sf = random_nvfp4(200, 256, torch.Generator().manual_seed(0), "cpu")
    torch.testing.assert_close(dequant(q, sf, 200), dequant_nvfp4_reference(q, unswizzle_sf(sf, 200)), rtol=0, atol=0, equal_nan=True)
    fam = get_family("quack_nvfp4_gemm")
    for tm, tn, cm, cn in itertools.product((64, 128, 256), (32, 64, 96, 128, 192, 256), (1, 2, 4, 8), (1, 2, 4, 8)):
        p = fam.parse_params(dict(n=256, k=256, tile_m=tm, tile_n=tn, cluster_m=cm, cluster_n=cn, sm_count=1024))
        ours = fam.can_implement(p, "sm_100a") == []
        cfg = GemmConfig(tile_m=tm, tile_n=tn, cluster_m=cm, cluster_n=cn, device_capacity=10)
        theirs = GemmSm100.is_valid_mma_tiler_and_cluster_shape((tm, tn), (cm, cn), True) and blockscaled_config_ok(cfg)
        assert ours == theirs, (tm, tn, cm, cn, ours, theirs)
    print("OK")
    """
)


@pytest.mark.slow
def test_layouts_and_configs_agree_with_quack():
    """swizzle_sf == quack's blocked scale packer; our decode == quack's NVFP4 reference (low
    nibble first, E4M3 scales); can_implement's tile/cluster rules == quack's own."""
    run_py(QUACK_CHECK)


PATCH_CHECK = textwrap.dedent(
    """
    import contextlib, pathlib, sys
    import cutlass.cute as cute
    from nvfp4_aot.kernels import get_family
    from nvfp4_aot.kernels.quack_blockscaled import kernel
    from quack.varlen_utils import VarlenManager

    real = VarlenManager.offset_batch_SFA
    fam = get_family("quack_nvfp4_grouped_gemm")
    p = fam.parse_params(dict(experts=4, n=256, k=256))

    def ptx():
        fn, args = fam.compile_args(p, "sm_100a")
        cute.compile(fn, *args, options="--gpu-arch sm_100a --enable-tvm-ffi")
        (f,) = pathlib.Path(sys.argv[1]).glob("*.ptx")
        text = f.read_text()
        f.unlink()
        return text

    a = ptx()
    assert VarlenManager.offset_batch_SFA is real  # restored after the trace
    kernel.patch_sfa_offsets = contextlib.nullcontext  # quack's own "+ expert" offsets
    b = ptx()
    assert a != b, "patch_sfa_offsets did not change the device code"
    assert "kind::mxf4nvf4.block_scale.block16" in a
    print("OK")
    """
)


@pytest.mark.slow
def test_sfa_offset_patch_reaches_device_code(tmp_path):
    run_py(PATCH_CHECK, str(tmp_path), CUTE_DSL_KEEP="ptx", CUTE_DSL_DUMP_DIR=str(tmp_path))


# ----------------------------------------------------------------------------- build (slow)

# DeepSeek-V4-Pro, EP 8: L1 gate+up (N 6144, K 7168) and L2 down (N 7168, K 3072), 48 local
# experts; the tunings cover 1-CTA / 2-CTA MMA, CLC / static persistence, tile_n 64..256, clusters.
OPS = [  # (family, problem, [(token range, tuning), ...])
    ("quack_nvfp4_gemm", dict(n=6144, k=7168),
     [((1, 256), dict(tile_m=128, tile_n=128)), ((257, 8192), dict(tile_m=256, tile_n=256, cluster_m=2))]),
    ("quack_nvfp4_gemm", dict(n=7168, k=3072),
     [((1, 256), dict(tile_m=128, tile_n=64, clc=False)),
      ((257, 8192), dict(tile_m=256, tile_n=192, cluster_m=2, cluster_n=2))]),
    ("quack_nvfp4_grouped_gemm", dict(experts=48, n=6144, k=7168),
     [((1, 4096), dict(tile_m=128, tile_n=128, clc=False)),
      ((4097, 65536), dict(tile_m=256, tile_n=256, cluster_m=2))]),
    ("quack_nvfp4_grouped_gemm", dict(experts=48, n=7168, k=3072),
     [((1, 4096), dict(tile_m=128, tile_n=256, cluster_n=2)),
      ((4097, 65536), dict(tile_m=256, tile_n=128, cluster_m=4, use_pdl=False))]),
]  # fmt: skip
VARIANTS = sum(len(b) for _, _, b in OPS)


def inline(d):
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in d.items()) + " }"


MANIFEST = 'archs = ["sm_100a"]\n' + "".join(
    f'\n[[op]]\nfamily = "{fam}"\nproblem = {inline(prob)}\nbuckets = [\n'
    + "".join(f"  {{ m = {list(m)}, tuning = {inline(t)} }},\n" for m, t in buckets)
    + "]\n"
    for fam, prob, buckets in OPS
)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "nvfp4_aot.build.cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blockscaled")
    manifest, out = tmp / "bs.toml", tmp / "artifacts"
    manifest.write_text(MANIFEST)
    r = cli("compile", str(manifest), "-o", str(out), "--json", "-j", "2")
    return manifest, out, r


@pytest.mark.slow
def test_build_and_verify(store):
    manifest, out, r = store
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout)["manifests"]["bs"]
    assert len(summary["built"]) == VARIANTS and not summary["failed"], summary
    index = read_index(out)
    families_built = sorted(rec["family"] for rec in index["entries"].values())
    assert families_built == ["quack_nvfp4_gemm"] * 4 + ["quack_nvfp4_grouped_gemm"] * 4
    for key, rec in index["entries"].items():
        fam = get_family(rec["family"])
        assert rec["arch"] == "sm_100a" and rec["signature"] == fam.signature(fam.parse_params(rec["params"])).to_json()
        cubins = embedded_cubins((out / ENTRIES_DIR / key / "kernel.so").read_bytes())
        assert [arch for arch, _ in cubins] == ["sm_100a"], key
    r = cli("verify", str(out), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout + r.stderr
    r = cli("compile", str(manifest), "-o", str(out), "--json")  # incremental: nothing to rebuild
    assert json.loads(r.stdout)["manifests"]["bs"]["skipped"] == VARIANTS, r.stdout


def find_nvdisasm():
    """An nvdisasm that knows sm_100a SASS (CUDA >= 13.4; pip's nvidia-cuda-nvdisasm), or None."""
    import glob
    import shutil

    candidates = [shutil.which("nvdisasm"), "/tmp/nvdis/nvidia/cu13/bin/nvdisasm", "/usr/local/cuda/bin/nvdisasm"]
    candidates += [p for root in sys.path for p in glob.glob(os.path.join(root, "nvidia", "cu1*", "bin", "nvdisasm"))]
    for path in (p for p in candidates if p and os.access(p, os.X_OK)):
        v = re.search(r"release (\d+)\.(\d+)", subprocess.run([path, "--version"], capture_output=True, text=True).stdout)
        if v and (int(v[1]), int(v[2])) >= (13, 4):
            return path
    return None


@pytest.mark.slow
def test_sass_has_block_scaled_tcgen05_mma(store, tmp_path):
    """Each cubin's SASS holds the NVFP4 block-scaled UMMA and no other: UTCOMMA (PTX
    tcgen05.mma.kind::mxf4nvf4.block_scale.block16) with .4X (4 scales per 64-wide K step: one E4M3
    scale per 16 elements) and .2CTA for the tile_m=256 (CTA pair) variants."""
    nvdisasm = find_nvdisasm()
    if nvdisasm is None:
        pytest.skip("no nvdisasm >= 13.4 (pip install nvidia-cuda-nvdisasm)")
    _, out, r = store
    assert r.returncode == 0, r.stdout + r.stderr
    for key, rec in read_index(out)["entries"].items():
        ((_, image),) = embedded_cubins((out / ENTRIES_DIR / key / "kernel.so").read_bytes())
        cubin = tmp_path / f"{key}.cubin"
        cubin.write_bytes(image)
        sass = subprocess.run([nvdisasm, str(cubin)], capture_output=True, text=True, check=True).stdout
        mma = re.findall(r"\bUTC\w*MMA[\w.]*", sass)
        want = "UTCOMMA.2CTA.4X" if rec["params"]["tile_m"] == 256 else "UTCOMMA.4X"
        assert mma and set(mma) == {want}, (rec["params"], sorted(set(mma)))
        # two smem descriptors (A, B), the instruction descriptor and three tmem operands: the
        # accumulator and the two scale-factor operands (a plain UMMA has one tmem operand)
        line = next(x for x in sass.splitlines() if want in x)
        assert re.search(r"gdesc\[\w+\], gdesc\[\w+\], tmem\[\w+\], tmem\[\w+\], idesc\[\w+\], tmem\[\w+\]", line), line
