"""Write the l2pf A/B and tiling-sweep manifests (docs/experiments/l2pf/build.sh, sweep_build.sh):

    python manifests.py dense OUT_DIR NAME=ORDER:L2PF[:KNOB=V,...] ...    w4a16_gemm's M <= 16 buckets of the dense
        DeepSeek-V4 shapes (benchmarks/w4a16_ours.DENSE) with the tunings DenseFamily.tile_table gives ORDER, plus l2pf
        and any knobs given (e.g. rq_w8r2=rotq:0:warps=8,rb=2: a tiling sweep, session 32)
    python manifests.py moe IN.toml OUT_DIR NAME=L2PF ...    IN (scripts/runner_manifest.py's MoERunner ops) with l2pf
        on every split "k" grouped bucket (MoERunner's decode rows)
    python manifests.py moe-l2 IN.toml OUT_DIR NAME=WARPS:RB ...    IN with L2's (down, N = 7168) decode row at these
        warps and rb (docs/experiments/moel2, session 33)
    python manifests.py moe-l1 IN.toml OUT_DIR NAME=WARPS:RB ...    the same for L1's (gate + up, N = 6144) decode row
        (session 34)"""

import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from w4a16_ours import DENSE  # noqa: E402  (the benchmarks' shape table: one place)

from nvfp4_aot.build.manifest import toml_value  # noqa: E402
from nvfp4_aot.kernels import get_family  # noqa: E402


def render(archs, ops) -> str:
    out = [f"archs = {toml_value(archs)}"]
    for op in ops:
        out += ["", "[[op]]", *(f"{key} = {toml_value(op[key])}" for key in ("family", "problem") if key in op),
                "buckets = [", *(f"  {toml_value(b)}," for b in op["buckets"]), "]"]
    return "\n".join(out) + "\n"


def dense(order: str, l2pf: int, knobs: dict) -> str:
    fam, ops = get_family("w4a16_gemm"), []
    for n, k, _ in DENSE.values():
        problem = {"n": n, "k": k, "word_order": order, "act_order": "natural"}
        buckets, lo = [], 1
        for edge, t in fam.tile_table(problem):
            if edge is None or edge > 16:
                break
            buckets.append({"m": [lo, edge], "tuning": {**t, **knobs, **({"l2pf": l2pf} if l2pf else {})}})
            lo = edge + 1
        ops.append({"family": "w4a16_gemm", "problem": problem, "buckets": buckets})
    return render(["sm_90a"], ops)


def moe(src: dict, l2pf: int) -> str:
    ops = []
    for op in src["op"]:
        split_k = op["family"] == "w4a16_grouped_gemm"
        ops.append({**op, "buckets": [{**b, "tuning": {**b["tuning"], "l2pf": l2pf}}
                                      if split_k and b["tuning"].get("split", "k") == "k" and l2pf else b
                                      for b in op["buckets"]]})
    return render(src["archs"], ops)


# MoERunner's grouped GEMMs by N (the layer benchmark's shape): the served t <= 5 decode row each mode varies
MOE_ROWS = {"moe-l1": (6144, {"warps": 8, "rb": 1, "nt": 1}), "moe-l2": (7168, {"warps": 1, "rb": 1, "nt": 1})}


def moe_row(src: dict, mode: str, warps: int, rb: int) -> str:
    n, served = MOE_ROWS[mode]
    ops = []
    for op in src["op"]:
        if op["family"] == "w4a16_grouped_gemm" and op["problem"]["n"] == n:
            b0 = op["buckets"][0]
            assert b0["tuning"] == served, b0  # the served row this varies
            op = {**op, "buckets": [{**b0, "tuning": {**b0["tuning"], "warps": warps, "rb": rb}}, *op["buckets"][1:]]}
        ops.append(op)
    return render(src["archs"], ops)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    src = tomllib.loads(Path(args.pop(0)).read_text()) if mode.startswith("moe") else None
    d = Path(args.pop(0))
    d.mkdir(parents=True, exist_ok=True)
    for spec in args:
        name, rest = spec.split("=", 1)
        if mode == "dense":
            order, l2pf, *more = rest.split(":")
            knobs = {k: int(v) for k, v in (kv.split("=") for kv in more[0].split(","))} if more else {}
            text = dense(order, int(l2pf), knobs)
        elif mode in MOE_ROWS:
            text = moe_row(src, mode, *map(int, rest.split(":")))
        else:
            text = moe(src, int(rest))
        (d / f"{name}.toml").write_text(text)
