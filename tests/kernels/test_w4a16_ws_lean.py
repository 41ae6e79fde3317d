"""WsParams.lean (kernels/w4a16_ws/lean.py): the per-step descriptor and release-stage arithmetic
against the PTX ISA's encoding of a WGMMA shared-memory descriptor and against the division it
replaces, for every stage base the kernel can use; the validity rule in the shared predicate.
The device code itself runs in tests/gpu/ws_check.toml's lean variants (GPU)."""

import pytest

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.hopper import SMEM_PER_BLOCK
from nvfp4_aot.kernels.w4a16_ws import LEANS, TILE_NS
from nvfp4_aot.kernels.w4a16_ws.lean import block_desc, desc_lo, prev_stage

DENSE = get_family("w4a16_ws_gemm")
GROUPED = get_family("w4a16_ws_grouped_gemm")


def spec_desc(start: int) -> int:
    """PTX ISA "matrix descriptor" (wgmma, sm_90a): start address >> 4 in bits 0-13, leading
    byte offset >> 4 in 16-29 (1: unused by K-major 128-byte swizzle), stride byte offset >> 4 in
    32-45 (1024 bytes: one 8-row x 128-byte swizzle atom), base offset 0 (bits 49-51: the atoms
    are 1024-aligned), layout type in 62-63 (1 = 128-byte swizzle)."""
    assert start % 16 == 0 and start < (1 << 18)
    return (start >> 4) | (1 << 16) | ((1024 >> 4) << 32) | (1 << 62)


def py_select(c, a, b):
    return a if c else b


def stage_bases():
    """Every activation stage base the kernel can address: 16-aligned (it is 1024-aligned:
    byte_alignment=1024, tile_n x 128-byte stages) and inside the shared-memory limit."""
    for tile_n in TILE_NS:
        assert (tile_n * 128) % 1024 == 0
    return range(0, SMEM_PER_BLOCK, 16)


def test_block_desc_is_the_spec_descriptor_of_each_k16_block():
    n = 0
    for base in stage_bases():
        lo = desc_lo(base)
        for b in range(4):
            assert block_desc(lo, b, int) == spec_desc(base + 32 * b), (base, b)
            n += 1
    assert n > 50000


def test_block_desc_bound_is_the_14_bit_start_field():
    """The rule can fail, and the bound it needs holds: past 2^18 - 96 bytes the start field
    would wrap in the descriptor but carry into the reserved bits in lo + 2 b (every sm_90 shared
    address is below SMEM_PER_BLOCK < 2^18)."""
    base = (1 << 18) - 32
    assert block_desc(desc_lo(base), 1, int) != ((base + 32) >> 4 & 0x3FFF | (1 << 16) | (64 << 32) | (1 << 62))
    assert SMEM_PER_BLOCK + 96 < (1 << 18)


@pytest.mark.parametrize("stages", range(2, 13))
def test_prev_stage_is_the_previous_steps_stage(stages):
    for step in range(1, 5 * stages):
        assert prev_stage(step % stages, stages, py_select) == (step - 1) % stages


def test_lean_validity():
    base = {"n": 7168, "k": 3072, "tile_m": 128, "tile_n": 64, "stages": 6, "split_k": 2, "pdl": True}
    assert LEANS == (0, 1)
    for lean in LEANS:
        assert DENSE.can_implement(DENSE.parse_params({**base, "lean": lean}), "sm_90a") == []
    bad = DENSE.can_implement(DENSE.parse_params({**base, "lean": 2}), "sm_90a")
    assert any("lean=2" in r for r in bad)
    g = GROUPED.parse_params({"n": 6144, "k": 7168, "experts": 48, "tile_m": 256, "tile_n": 128, "stages": 8,
                              "pipe": 64, "lean": 1})
    assert GROUPED.can_implement(g, "sm_90a") == []
    assert DENSE.parse_params({k: v for k, v in base.items()}).lean == 0  # default: the served code


def test_probe_builds_only_when_asked(monkeypatch):
    """probe 1 - 4 (diagnostics whose output is wrong by design) are refused unless the build sets
    PROBE_ENV; 1 / 2 only on the pipe-16 loop, 3 / 4 (split-K reduction) only with split_k > 1;
    probe 0 is the kernel."""
    from nvfp4_aot.kernels.w4a16_ws import PROBE_ENV

    base = {"n": 7168, "k": 3072, "tile_m": 128, "tile_n": 64, "stages": 6, "split_k": 2, "pdl": True}
    monkeypatch.delenv(PROBE_ENV, raising=False)
    for probe in (1, 2, 3, 4):
        assert any(PROBE_ENV in r for r in DENSE.can_implement(DENSE.parse_params({**base, "probe": probe}), "sm_90a"))
    assert DENSE.can_implement(DENSE.parse_params({**base, "probe": 0}), "sm_90a") == []
    monkeypatch.setenv(PROBE_ENV, "1")
    for probe in (1, 2, 3, 4):
        assert DENSE.can_implement(DENSE.parse_params({**base, "probe": probe}), "sm_90a") == []
    assert any("pipe-16" in r for r in DENSE.can_implement(DENSE.parse_params({**base, "probe": 1, "pipe": 64}),
                                                           "sm_90a"))
    for probe in (3, 4):
        assert any("split_k > 1" in r for r in DENSE.can_implement(DENSE.parse_params({**base, "probe": probe,
                                                                                        "split_k": 1}), "sm_90a"))
    assert any("probe=5" in r for r in DENSE.can_implement(DENSE.parse_params({**base, "probe": 5}), "sm_90a"))
