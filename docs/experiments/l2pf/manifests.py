"""Write the l2pf A/B manifests (docs/experiments/l2pf/build.sh): one manifest per (word order, l2pf), each holding
w4a16_gemm's M <= 16 buckets of the five dense DeepSeek-V4 shapes with the tunings DenseFamily.tile_table gives that
word order, plus l2pf.   python manifests.py OUT_DIR NAME=ORDER:L2PF ..."""

import sys
from pathlib import Path

from nvfp4_aot.kernels import get_family

SHAPES = ((6144, 7168), (7168, 3072), (2048, 7168), (7168, 2048), (65536, 1536))


def manifest(order: str, l2pf: int) -> str:
    fam = get_family("w4a16_gemm")
    out = ['archs = ["sm_90a"]', ""]
    for n, k in SHAPES:
        problem = {"n": n, "k": k, "word_order": order, "act_order": "natural"}
        out += ["[[op]]", 'family = "w4a16_gemm"',
                f'problem = {{ n = {n}, k = {k}, word_order = "{order}", act_order = "natural" }}', "buckets = ["]
        lo = 1
        for edge, t in fam.tile_table(problem):
            if edge is None or edge > 16:
                break
            t = {**t, "l2pf": l2pf} if l2pf else dict(t)
            out.append(f"  {{ m = [{lo}, {edge}], tuning = {{ {', '.join(f'{a} = {b}' for a, b in t.items())} }} }},")
            lo = edge + 1
        out += ["]", ""]
    return "\n".join(out)


if __name__ == "__main__":
    d = Path(sys.argv[1])
    d.mkdir(parents=True, exist_ok=True)
    for spec in sys.argv[2:]:
        name, rest = spec.split("=")
        order, l2pf = rest.split(":")
        (d / f"{name}.toml").write_text(manifest(order, int(l2pf)))
