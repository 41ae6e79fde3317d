"""One place for tunings: every bucket of the default manifest whose family has a tile table
carries exactly the tuning that table gives at both ends of the bucket, so `plan` (which tunes
from the tables) and the hand-written default manifest cannot drift apart."""

from __future__ import annotations

import pytest

from nvfp4_aot.build.manifest import default_manifest_path, load_manifest
from nvfp4_aot.build.plan import pick
from nvfp4_aot.kernels import get_family

TUNED = ("w4a16_gemm", "w4a16_grouped_gemm", "quack_w4a16_gemm", "quack_w4a16_rowalpha_gemm", "quack_w4a16_grouped_gemm")


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
