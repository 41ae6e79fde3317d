"""NVFP4 quantize and global scale on a Hopper GPU: bit-exact against the torch reference,
CUDA-graph safe, refusing bad input and foreign archs before any launch."""

import pytest
import torch

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime import ArchMismatchError, ArgumentError, MissingVariantError, open_store

from .conftest import STORE

from .graphs import capture, replay_without_allocating

pytestmark = pytest.mark.gpu

KS = (7168, 3072, 1536, 2048, 65536)
LAYOUTS = ("swizzled", "rowmajor")
# 1, 2, 3, odd sizes, every bucket edge of the default manifest (128 | 129), large M
MS = (1, 2, 3, 7, 33, 127, 128, 129, 255, 1000, 4095, 4097, 8191, 8192)
QF = get_family("nvfp4_quantize")
GF = get_family("nvfp4_global_scale")
DEV = torch.device("cuda")


def run_quantize(store, k, layout, m, seed, poison):
    op = store.op("nvfp4_quantize", k=k, sf_layout=layout)
    params = QF.parse_params(op.kernel_for(m).record["params"])
    inputs = QF.make_inputs(params, m, DEV, seed, poison=poison)
    want = QF.reference(params, inputs)
    op(inputs["x"], inputs["global_scale"], inputs["q"], inputs["sf"])
    torch.cuda.synchronize()
    return QF.check(params, inputs, want)


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_quantize_bit_exact(store, k, layout, seed):
    failures = []
    for i, m in enumerate(MS):
        if k == 65536 and m > 4097:
            continue  # 1 GiB of bf16 per call; the large-K path is covered up to M = 4097
        # two poisons: a byte left unwritten cannot match the reference under both
        for poison in (0xFF, 0x5A):
            bad = run_quantize(store, k, layout, m, seed + i, poison)
            if bad:
                failures.append(f"M={m} poison={poison:#x}: {bad}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("k", KS)
def test_global_scale_exact(store, k, seed):
    op = store.op("nvfp4_global_scale", k=k)
    for i, m in enumerate((1, 3, 128, 129, 4096, 8192 if k < 65536 else 2048)):
        params = GF.parse_params(op.kernel_for(m).record["params"])
        inputs = GF.make_inputs(params, m, DEV, seed + i)
        # plant the amax at a random place so a reduction that skips any part is caught
        g = torch.Generator().manual_seed(seed + i)
        r, c = torch.randint(m, (1,), generator=g).item(), torch.randint(k, (1,), generator=g).item()
        inputs["x"][r, c] = -1000.0
        op(inputs["x"], inputs["global_scale"], inputs["workspace"])
        torch.cuda.synchronize()
        want = GF.reference(params, inputs)["global_scale"]
        assert torch.equal(inputs["global_scale"], want), (m, r, c, inputs["global_scale"].item(), want.item())
        # and the reference really saw the planted amax: 2688 / 1000 in fp32
        assert want.item() == torch.tensor(2688.0, dtype=torch.float32).div(1000.0).item()


def test_cuda_graph_capture_and_replay_with_new_data(store, seed):
    k, m = 7168, 64
    quant = store.op("nvfp4_quantize", k=k, sf_layout="swizzled")
    amax = store.op("nvfp4_global_scale", k=k)
    qp = QF.parse_params(quant.kernel_for(m).record["params"])
    gp = GF.parse_params(amax.kernel_for(m).record["params"])
    buf = QF.make_inputs(qp, m, DEV, seed)
    ws = torch.empty(gp.partials, device=DEV)
    graph, _ = capture(lambda: (amax(buf["x"], buf["global_scale"], ws),
                                quant(buf["x"], buf["global_scale"], buf["q"], buf["sf"])))
    for i in range(5):
        fresh = QF.make_inputs(qp, m, DEV, seed + 100 + i)
        buf["x"].copy_(fresh["x"])
        buf["q"].fill_(0xFF)
        buf["sf"].fill_(0xFF)
        replay_without_allocating(graph)
        want_gs = GF.reference(gp, {"x": fresh["x"]})["global_scale"]
        assert torch.equal(buf["global_scale"], want_gs)
        want = QF.reference(qp, {"x": fresh["x"], "global_scale": want_gs})
        assert QF.check(qp, buf, want) == [], f"replay {i}"


def test_bad_arguments_rejected_before_launch(store):
    k, m = 7168, 16
    op = store.op("nvfp4_quantize", k=k, sf_layout="swizzled")
    params = QF.parse_params(op.kernel_for(m).record["params"])
    good = QF.make_inputs(params, m, DEV, 0)
    args = [good["x"], good["global_scale"], good["q"], good["sf"]]
    cases = {
        "dtype float16, expected bfloat16": [good["x"].half(), *args[1:]],
        "'sf': shape (16, 448), expected (128, 448)": [*args[:3], torch.empty(16, 448, dtype=torch.uint8, device=DEV)],
        "'q': shape (15, 3584), expected (16, 3584)": [args[0], args[1], args[2][:15], args[3]],
        "must be on a CUDA device": [args[0].cpu(), *args[1:]],
        "not 16-byte aligned": [torch.empty(m * k + 1, dtype=torch.bfloat16, device=DEV)[1:].view(m, k), *args[1:]],
        "M=9000 is outside the manifest's buckets": [torch.empty(9000, k, dtype=torch.bfloat16, device=DEV), *args[1:]],
        "'x': shape (16, 7040), expected (16, 7168)": [args[0][:, :7040].contiguous(), *args[1:]],
    }
    for needle, bad in cases.items():
        before = args[2].clone()
        for check in (True, "full"):  # default (quick + the kernel's own decoding) and full
            with pytest.raises(ArgumentError) as e:
                op(*bad, check=check)
            assert needle in str(e.value), (check, str(e.value))
        torch.cuda.synchronize()
        assert torch.equal(args[2], before)  # nothing was launched
    with pytest.raises(Exception, match="MissingVariant|no variant"):
        store.op("nvfp4_quantize", k=7040, sf_layout="swizzled")


def test_sm100_artifacts_refused_torch_stays_healthy():
    assert torch.cuda.get_device_capability() == (9, 0), "this check is written for Hopper"
    with pytest.raises(ArchMismatchError, match="arch sm_100a requested but the device is sm_90a"):
        open_store(STORE, arch="sm_100a")
    # the Blackwell-only GEMM families of the same store are simply absent on Hopper
    hopper = open_store(STORE)
    for fam, prob in (("quack_nvfp4_gemm", dict(n=6144, k=7168)),
                      ("quack_nvfp4_grouped_gemm", dict(experts=48, n=6144, k=7168))):
        with pytest.raises(MissingVariantError, match=f"no variant for {fam}.* on sm_90a"):
            hopper.op(fam, **prob)
    assert all(k.record["arch"] == "sm_90a" for k in hopper.kernels.values())
    x = torch.arange(1024, device=DEV, dtype=torch.float32)
    assert x.sum().item() == 1023 * 1024 / 2  # the CUDA context is intact


def test_verify_run_smoke(seed):
    from nvfp4_aot.build.verify import VerifyReport, run_store

    rep = VerifyReport()
    run_store(STORE, rep, seed)
    assert rep.ok and rep.ran > 0, rep.errors
