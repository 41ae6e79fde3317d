"""The store contract (runtime/signature.py, runtime/nvfp4.py, runtime/store_format.py) is
readable without the kernels package: the runtime opens a store and validates calls from the
index records alone."""

import textwrap

import pytest
from conftest import run_without_cutlass

from nvfp4_aot.runtime.signature import Arg, Signature, SignatureError


def test_runtime_opens_a_store_without_kernels(built_store):
    """Neither cutlass nor nvfp4_aot.build nor nvfp4_aot.kernels (each import would fail)."""
    body = textwrap.dedent(f"""
        import nvfp4_aot.runtime as rt, torch
        s = rt.open({str(built_store)!r}, arch="sm_90a")
        op = s.op("test_scale", n=64, alpha=2.0)
        try:
            op(torch.randn(2, 64), torch.empty(2, 64))
        except rt.ArgumentError as e:
            print("refused:", e)
        assert "cutlass" not in sys.modules
        print("loaded", len(s.kernels), sorted(m for m in sys.modules if m.startswith("nvfp4_aot.kernels")))
    """)
    r = run_without_cutlass(body, "nvfp4_aot.kernels")
    assert r.returncode == 0, r.stderr
    assert "loaded 4 []" in r.stdout and "refused:" in r.stdout


def test_blocker_really_blocks_kernels():
    r = run_without_cutlass("import nvfp4_aot.kernels.family", "nvfp4_aot.kernels")
    assert r.returncode != 0 and "runtime must not import nvfp4_aot.kernels" in r.stderr


def _default_signatures():
    from nvfp4_aot.build.manifest import default_manifest_path, load_manifest
    from nvfp4_aot.kernels import get_family

    seen = {}
    for v in load_manifest(default_manifest_path()).variants():
        fam = get_family(v.family)
        seen.setdefault(v.family, fam.signature(fam.parse_params(v.params)))
    return seen


def test_every_family_signature_round_trips():
    sigs = _default_signatures()
    assert len(sigs) >= 12
    for name, sig in sigs.items():
        assert Signature.from_json(sig.to_json()) == sig, name


GOOD = Signature((Arg("x", "bfloat16", ("M", "K")), Arg("sf", "uint8", ("round_up(M, 128)", "K // 16"), output=True)), {"K": 64})


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.pop("static"), r"signature.static: missing"),
        (lambda d: d.update(extra=1), r"signature.extra: unknown field"),
        (lambda d: d.update(args={}), r"signature.args: must be a non-empty list"),
        (lambda d: d["args"].__setitem__(0, "x"), r"signature.args\[0\]: must be an object"),
        (lambda d: d["args"][0].update(dtype="float128"), r"signature.args\[0\].dtype"),
        (lambda d: d["args"][0].update(shape=["M", True]), r"signature.args\[0\].shape\[1\]"),
        (lambda d: d["args"][1].update(shape=["__import__('os')", 4]), r"unsupported shape expression"),
        (lambda d: d["args"][1].update(shape=["M +", 4]), r"unsupported shape expression"),
        (lambda d: d["args"][1].update(shape=["N * 2", 4]), r"signature.args\[1\].shape\[0\]: 'N \* 2' uses unknown symbol"),
        (lambda d: d["args"][0].update(align=3), r"signature.args\[0\].align"),
        (lambda d: d["args"][0].update(output="yes"), r"signature.args\[0\].output"),
        (lambda d: d["args"][1].update(name="x"), r"duplicate argument names"),
        (lambda d: d.update(static={"K": "64"}), r"signature.static"),
        (lambda d: d.update(dynamic=["M", "R"]), r"signature.dynamic: symbol\(s\) \['R'\] are no argument's dimension"),
    ],
)
def test_malformed_signature_names_the_field(mutate, field):
    d = GOOD.to_json()
    assert Signature.from_json(d) == GOOD
    mutate(d)
    with pytest.raises(SignatureError, match=field):
        Signature.from_json(d)


def test_constants_defined_once():
    """No module re-declares an NVFP4 constant runtime/nvfp4.py defines."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    names = {"SF_BLOCK", "E2M1_VALUES", "E4M3_MAX", "E2M1_MAX", "FP4_MAX", "GS_NUMERATOR", "SF_VEC"}
    offenders = []
    for d in ("build", "kernels", "runtime", "vllm_plugin"):
        for p in (root / d).rglob("*.py"):
            if p.name == "nvfp4.py" and d == "runtime":
                continue
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.Assign):
                    offenders += [f"{p.relative_to(root)}:{node.lineno} {t.id}" for t in node.targets
                                  if isinstance(t, ast.Name) and t.id in names]
    assert not offenders, offenders
