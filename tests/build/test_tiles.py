"""One place for tunings: every bucket of the default manifest whose family has a tile table
carries exactly the tuning that table gives at both ends of the bucket, so `plan` (which tunes
from the tables) and the hand-written default manifest cannot drift apart."""

from __future__ import annotations

import pytest

from nvfp4_aot.build.manifest import default_manifest_path, load_manifest
from nvfp4_aot.build.plan import pick
from nvfp4_aot.kernels import get_family

TUNED = ("w4a16_gemm", "w4a16_grouped_gemm", "w4a16_ws_gemm", "quack_w4a16_gemm", "quack_w4a16_rowalpha_gemm",
         "quack_w4a16_grouped_gemm", "w4a16_ws_grouped_gemm")


def _ops():
    return [op for op in load_manifest(default_manifest_path()).ops if op.family in TUNED]


def test_the_default_manifest_has_tuned_ops():
    assert {op.family for op in _ops()} == set(TUNED)


def drift(op, table) -> list[str]:
    """Bucket ends whose manifest tuning differs from the table's."""
    return [f"{op.name} M={m}: manifest {b.tuning}, table {dict(pick(table, m))}"
            for b in op.buckets for m in (b.lo, b.hi) if dict(pick(table, m)) != b.tuning]


@pytest.mark.parametrize("op", _ops(), ids=lambda op: op.name)
def test_default_buckets_follow_the_family_tile_table(op):
    assert drift(op, get_family(op.family).tile_table(op.problem)) == []


def test_a_drifted_table_is_caught():
    for op in _ops():
        table = get_family(op.family).tile_table(op.problem)
        stale = table[:-1] + ((None, {**dict(table[-1][1]), "nt": 99}),)
        assert drift(op, stale), op.name


@pytest.mark.parametrize("experts", [48, 32])
def test_the_default_manifest_serves_every_moe_runner_path(experts):
    """DeepSeek-V4 EP8 / EP12 (H 7168, I 3072, top-6, with and without the SwiGLU clamp): every op
    MoERunner declares on sm_90a up to 8192 tokens, decode and both prefill tiers, is in the
    default manifest (else the runner would quietly fall back to its decode path)."""
    from nvfp4_aot.runtime.moe import MoERunner

    have = {(op.family, tuple(sorted(op.problem.items()))) for op in load_manifest(default_manifest_path()).ops
            if "sm_90a" in op.archs}
    for limit in (0.0, 10.0):
        decls = MoERunner.ops(7168, 3072, experts, 6, "sm_90a", swiglu_limit=limit, max_tokens=8192)
        assert any(d.optional for d in decls)
        assert [d.attr for d in decls if (d.family, tuple(sorted(d.problem.items()))) not in have] == []


def test_every_w4a16_ws_dense_tile_builds_for_its_shape():
    """Each row of w4a16_ws_gemm's measured tables (kernels/w4a16_ws/tiles.py) passes the family's
    own validity rule (shared memory, accumulators, n a multiple of tile_m) for the shape it tunes,
    and the fallback rule for any shape both families of Nvfp4Linear take (n multiple of 128)."""
    from nvfp4_aot.kernels.w4a16_ws.tiles import DENSE, DENSE_SHAPES

    fam = get_family("w4a16_ws_gemm")
    for (n, k), table in [*DENSE_SHAPES.items(), ((384, 512), DENSE)]:
        assert fam.tile_table({"n": n, "k": k}) == table
        assert table[-1][0] is None and [hi for hi, _ in table[:-1]] == sorted(hi for hi, _ in table[:-1])
        for _, tuning in table:
            assert fam.can_implement(fam.parse_params({"n": n, "k": k, **tuning}), "sm_90a") == [], (n, k, tuning)


def test_a_table_row_names_the_tile_and_only_the_knobs_off_their_default():
    """tiles._t derives what a row omits from WsParams itself: a knob at its default is left out (so
    a manifest never restates it), the order is WsParams' field order (the order plan writes), and a
    name WsParams does not have is refused where the table is written."""
    from dataclasses import fields

    from nvfp4_aot.kernels.hopper import SM_COUNT
    from nvfp4_aot.kernels.w4a16_ws import WsParams
    from nvfp4_aot.kernels.w4a16_ws.tiles import _t

    assert _t(128, 256, 6, 1, pdl=False, wgs=2, depth=2, sm_count=SM_COUNT) == {"tile_m": 128, "tile_n": 256, "stages": 6}
    row = _t(64, 128, 10, 4, peek=1, sm_count=126, pdl=True, wgs=1)
    assert row == {"tile_m": 64, "tile_n": 128, "stages": 10, "sm_count": 126, "wgs": 1, "split_k": 4, "pdl": True,
                   "peek": 1}
    order = [f.name for f in fields(WsParams)]
    assert list(row) == sorted(row, key=order.index)
    with pytest.raises(TypeError, match="not WsParams knobs"):
        _t(128, 128, 6, nt=2)
