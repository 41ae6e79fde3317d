"""Manifest validation: every error names the file, the line of the [[op]] and the key."""

import pytest

from nvfp4_aot.build.manifest import ManifestError, default_manifest_path, load_manifest

GOOD_OP = """
[[op]]
family = "test_scale"
problem = { n = [64, 128] }
buckets = [ { m = [1, 16], tuning = { threads = 64 } }, { m = [17, 4096] } ]
"""


def load(tmp_path, text, name="m.toml"):
    p = tmp_path / name
    p.write_text(text)
    return load_manifest(p)


def test_expansion_and_dispatch(tmp_path):
    m = load(tmp_path, 'archs = ["sm_90a", "sm_100a"]\n' + GOOD_OP)
    assert [op.name for op in m.ops] == ["test_scale.alpha=2.0.n=64", "test_scale.alpha=2.0.n=128"]
    # 2 problem points x 2 distinct tunings x 2 archs
    assert len(m.variants()) == 8
    assert [(b.lo, b.hi, b.params["threads"]) for b in m.ops[0].buckets] == [(1, 16, 64), (17, 4096, 128)]


def test_identical_variants_are_built_once(tmp_path):
    m = load(tmp_path, GOOD_OP.replace("tuning = { threads = 64 }", "tuning = { threads = 128 }"))
    assert len(m.variants()) == 2 * 1 * 2


def test_default_manifest_is_valid():
    m = load_manifest(default_manifest_path())
    fams = {op.family for op in m.ops}
    assert {"nvfp4_quantize", "nvfp4_global_scale", "quack_w4a16_gemm", "moe_route", "moe_silu_mul", "moe_combine",
            "quack_nvfp4_gemm", "quack_nvfp4_grouped_gemm"} <= fams
    assert {v.arch for v in m.variants()} == {"sm_90a", "sm_100a"}
    ks = {op.problem["k"] for op in m.ops if op.family == "nvfp4_quantize"}
    assert {7168, 3072, 1536, 2048, 65536} <= ks


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[[op]]\nfamily = 'nope'\n", "m.toml:1: op[0].family: unknown kernel family 'nope'"),
        (GOOD_OP + "\n[[op]]\nfamily = 'test_scale'\nproblem = { n = 63 }\n", "m.toml:7: op[1]"),
        (GOOD_OP.replace("problem = { n = [64, 128] }", "problem = { n = 'x' }"), "parameter 'n' must be int"),
        (GOOD_OP.replace("{ m = [17, 4096] }", "{ m = [18, 4096] }"), "op[0].buckets[1].m: buckets must be contiguous"),
        (GOOD_OP.replace("[1, 16]", "[2, 16]"), "expected lo=1"),
        (GOOD_OP.replace("4096", "1000000"), "exceeds test_scale's largest token count"),
        (GOOD_OP.replace("threads = 64", "threadz = 64"), "unknown parameter(s) ['threadz']"),
        (GOOD_OP.replace("threads = 64", "n = 64"), "'n' is a problem parameter"),
        (GOOD_OP.replace("problem =", "problme ="), "op[0].problme: unknown key"),
        ("archs = ['sm_90']\n" + GOOD_OP, "m.toml:1: archs: 'sm_90' is not an arch-specific target"),
        ("bogus = 1\n" + GOOD_OP, "bogus: unknown top-level key"),
        ("archs = [\n", "invalid TOML"),
        ("archs = ['sm_90a']\n", "at least one [[op]]"),
        (GOOD_OP + GOOD_OP, "is already defined by op[0]"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path, text, needle):
    with pytest.raises(ManifestError) as e:
        load(tmp_path, text)
    assert needle in str(e.value), str(e.value)
    assert str(tmp_path / "m.toml") in str(e.value)


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest(tmp_path / "absent.toml")


def test_writer_round_trips_every_committed_manifest(tmp_path):
    """build/manifest.py owns the format both ways: what dumps_manifest writes loads back equal."""
    from nvfp4_aot.build.manifest import default_manifest_path, dumps_manifest, load_manifest, loads_manifest

    root = default_manifest_path().parent
    for path in sorted(root.glob("*.toml")):
        m = load_manifest(path)
        again = loads_manifest(dumps_manifest(m), path)
        assert again == m and again.variants() == m.variants(), path.name
        assert dumps_manifest(again) == dumps_manifest(m)

