"""One correctness check per quack_w4a16_grouped_gemm variant in each store given (float64
reference, NaN-poisoned output, a skewed grouping with every group padded to the tiling's
tile_n): the quick gate before benchmarking tilings that the GPU tests do not cover.
Exit 0 when every variant passes."""

import sys

import torch

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime import open_store

FAM = get_family("quack_w4a16_grouped_gemm")


def main(stores: list[str]) -> int:
    dev, failed = torch.device("cuda"), 0
    for path in stores:
        store = open_store(path)
        for op in store.ops.values():
            if op.spec["family"] != FAM.name:
                continue
            p = FAM.parse_params(op.kernel_for(1).record["params"])
            m = p.experts * (p.tile_n - 1) + 3000
            inputs = FAM.make_inputs(p, m, dev, seed=11, dist="skewed")
            want = FAM.reference(p, inputs)
            op(*[inputs[a.name] for a in FAM.signature(p).args])
            torch.cuda.synchronize()
            bad = FAM.check(p, inputs, want)
            failed += bool(bad)
            print(f"{path}: n={p.n} k={p.k} tile {p.tile_m}x{p.tile_n} M={m} real rows "
                  f"{int(inputs['counts'].sum())}: {'FAIL ' + '; '.join(bad) if bad else 'ok'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
