"""w4a16_ws_gemm's epilogue modes on the CPU box: epi 3's tile-image addressing (sched.img_offset, the
stmatrix .trans row addresses the kernel uses) against TMA's SW128 layout rule and shared-memory banks, the
validity rule and shared memory of epi 2 / 3 and probe 5, and epi 3's 16-byte output alignment in the
signature (its TMA view of `out` needs it)."""

import pytest

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.hopper import SMEM_PER_BLOCK
from nvfp4_aot.kernels.w4a16_ws import EPI_BLOCKS, EPI_WARP_BYTES, PROBE_ENV, epi_bytes, smem_bytes
from nvfp4_aot.kernels.w4a16_ws.sched import img_offset

DENSE = get_family("w4a16_ws_gemm")
GROUPED = get_family("w4a16_ws_grouped_gemm")


def sw128(t: int, w: int) -> int:
    """TMA SWIZZLE_128B for a box of 64 bf16 per row (128 bytes): byte of element (row t, column w)."""
    return t * 128 + (((w * 2) // 16) ^ (t % 8)) * 16 + (w * 2) % 16


def dense(**kw):
    return DENSE.parse_params({"n": 7168, "k": 3072, **kw})


@pytest.mark.parametrize("wq", range(4))
def test_img_offset_is_the_sw128_address_of_the_lane_s_stmatrix_row(wq):
    """Lane 8 q + i addresses memory row i of matrix q = (u, h): token 8 u + i, weight rows 16 wq + 8 h .. + 7
    (16 bytes). Every chunk ch adds 16 tokens (ch * 2048 bytes): its rows stay on the same swizzle phase."""
    for lane in range(32):
        q, i = divmod(lane, 8)
        t, w = 8 * (q // 2) + i, 16 * wq + 8 * (q % 2)
        for ch in range(16):
            base = img_offset(lane, wq) + ch * 16 * 128
            assert [sw128(16 * ch + t, w + c) for c in range(8)] == [base + 2 * c for c in range(8)]


@pytest.mark.parametrize("wq", range(4))
def test_img_offset_rows_of_one_matrix_hit_distinct_banks(wq):
    """stmatrix writes one matrix (8 rows of 16 bytes, lanes 8 q .. 8 q + 7) per phase: 8 distinct 4-bank
    groups, i.e. no bank conflict."""
    for q in range(4):
        groups = {(img_offset(8 * q + i, wq) // 16) % 8 for i in range(8)}
        assert len(groups) == 8


def test_epi_validity_and_shared_memory():
    assert DENSE.can_implement(dense(tile_n=256, stages=4, epi=3), "sm_90a") == []
    assert DENSE.can_implement(dense(tile_n=256, stages=5, epi=2), "sm_90a") == []
    # the 64 KiB image of a 128 x 256 tile leaves room for 4 stages, not 6
    assert any("shared memory" in r for r in DENSE.can_implement(dense(tile_n=256, stages=6, epi=3), "sm_90a"))
    assert smem_bytes(128, 256, 4, 1, 2, 3) - smem_bytes(128, 256, 4, 1, 2, 0) == 128 * 256 * 2 + 1024
    assert epi_bytes(2, 2, 128, 256) == EPI_BLOCKS[2] * epi_bytes(1, 2, 128, 256) == 4 * 8 * EPI_WARP_BYTES
    # epi 3 stores whole unsplit tiles
    for kw in ({"split_k": 2}, {"stream": 1}, {"mc": 2}):
        assert any("epi=3" in r for r in DENSE.can_implement(dense(tile_n=64, stages=6, epi=3, **kw), "sm_90a"))
    assert any("epi=4" in r for r in DENSE.can_implement(dense(epi=4), "sm_90a"))
    g = GROUPED.parse_params({"n": 7168, "k": 3072, "experts": 48, "tile_m": 256, "tile_n": 128, "stages": 6,
                              "pipe": 64, "epi": 3})
    assert GROUPED.can_implement(g, "sm_90a") == []


def test_probe_5_needs_the_env_and_an_unsplit_tile(monkeypatch):
    monkeypatch.delenv(PROBE_ENV, raising=False)
    assert any(PROBE_ENV in r for r in DENSE.can_implement(dense(probe=5), "sm_90a"))
    monkeypatch.setenv(PROBE_ENV, "1")
    assert DENSE.can_implement(dense(probe=5), "sm_90a") == []
    assert any("probe=5" in r for r in DENSE.can_implement(dense(tile_n=64, probe=5, split_k=2), "sm_90a"))
    assert any("probe=5" in r for r in DENSE.can_implement(dense(tile_n=64, probe=5, epi=3), "sm_90a"))  # own path


def test_epi_3_signature_asks_a_16_byte_aligned_out():
    for fam, p in ((DENSE, dense(tile_n=256, stages=4, epi=3)),
                   (GROUPED, GROUPED.parse_params({"n": 7168, "k": 3072, "experts": 48, "tile_n": 256,
                                                   "stages": 4, "epi": 3}))):
        assert {a.name: a.align for a in fam.signature(p).args}["out"] == 16
    assert {a.name: a.align for a in DENSE.signature(dense()).args}["out"] == 4  # epi 1: any 4-byte view
