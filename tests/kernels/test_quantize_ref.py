"""The quantize reference defines the kernels' bits: check it against first principles."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nvfp4_aot.kernels.nvfp4_quantize import E2M1_VALUES
from nvfp4_aot.kernels.nvfp4_quantize.ref import (
    dequantize_ref,
    e2m1_codes,
    global_scale_ref,
    quantize_ref,
    random_activations,
    swizzle_sf,
    unswizzle_sf,
)


def e2m1_brute(v: float) -> int:
    """Nearest E2M1 magnitude, ties to the even code, saturating; sign from the sign bit."""
    a = abs(v)
    best = min(range(8), key=lambda c: (abs(a - E2M1_VALUES[c]), c % 2))
    return best | (8 if math.copysign(1.0, v) < 0 else 0)


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=-20, max_value=20, allow_nan=False, width=32))
def test_e2m1_matches_round_to_nearest_even(v):
    assert e2m1_codes(torch.tensor([v], dtype=torch.float32)).item() == e2m1_brute(v)


def test_e2m1_ties_and_saturation():
    ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, 1e30, -0.0, -0.1]
    want = [0, 2, 2, 4, 4, 6, 6, 7, 7, 8, 8]
    assert e2m1_codes(torch.tensor(ties)).tolist() == want


def test_swizzle_layout_offsets():
    m, ks = 200, 8
    sf = torch.arange(m * ks, dtype=torch.int32).view(m, ks)
    sw = swizzle_sf(sf).flatten()
    for r, c in [(0, 0), (1, 0), (31, 3), (32, 0), (127, 7), (128, 0), (199, 5)]:
        off = ((r // 128) * (ks // 4) + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4
        assert sw[off].item() == sf[r, c].item()
    assert swizzle_sf(sf).shape == (256, ks)
    assert torch.equal(unswizzle_sf(swizzle_sf(sf), m), sf)
    # padded rows are zero
    pad = swizzle_sf(sf + 1)  # no zero values in real rows
    assert (pad == 0).sum().item() == (256 - m) * ks


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 300), st.sampled_from([64, 128, 192]), st.integers(0, 2**31 - 1), st.sampled_from(["swizzled", "rowmajor"]))
def test_quantize_error_bound(m, k, seed, layout):
    gen = torch.Generator().manual_seed(seed)
    x = random_activations(m, k, "cpu", gen)
    gs = global_scale_ref(x)
    q, sf = quantize_ref(x, gs, layout)
    assert q.shape == (m, k // 2) and q.dtype == torch.uint8
    deq = dequantize_ref(q, sf, gs, layout)
    xf = x.float()
    blocks = xf.view(m, -1, 16)
    sf_rm = unswizzle_sf(sf, m) if layout == "swizzled" else sf
    sf8 = sf_rm.view(torch.float8_e4m3fn).float()
    # (1) the E4M3 scale is within half an E4M3 step of vmax * gs / 6: 2^-4 relative for normals,
    #     2^-10 absolute in the subnormal range
    s_exact = blocks.abs().amax(-1) * gs / 6.0
    assert bool(((sf8 - s_exact).abs() <= torch.maximum(s_exact * 2**-4, torch.tensor(2**-10)) * 1.0001).all())
    # (2) given the decoded scale d = sf8 / gs, each element is within half the E2M1 grid step
    #     (at most d, between 4 and 6) of x, or saturated at 6 d
    d = (sf8 / gs).unsqueeze(-1).expand_as(blocks).reshape(m, k)
    err = (deq - xf).abs()
    bound = d * 1.0001 + torch.relu(xf.abs() - 6 * d)
    assert bool((err <= bound).all()), float((err - bound).max())
    # all-zero blocks give zero scale bytes and zero codes (up to sign)
    zero = blocks.abs().amax(-1) == 0
    assert bool((sf_rm[zero] == 0).all())


def test_global_scale_maps_amax_to_fp4_times_e4m3_max():
    x = torch.tensor([[0.5, -3.0] * 32], dtype=torch.bfloat16)
    assert global_scale_ref(x).item() == 2688.0 / 3.0
    assert global_scale_ref(torch.zeros(2, 64, dtype=torch.bfloat16)).item() == 1.0
    q, sf = quantize_ref(x, global_scale_ref(x), "rowmajor")
    # the block holding the amax gets the largest E4M3 scale (448) and code 6.0 for -3.0
    assert sf.view(torch.float8_e4m3fn).float().max().item() == 448.0
    assert (q[0, 0] >> 4).item() == 0xF  # -6.0 code: sign + 7
