"""Tile x split-K sweep of quack_w4a16_gemm (and its per-row-alpha twin for q_a + kv) on the five
dense DeepSeek-V4 shapes, against the torch bf16 matmul of the same run.

  quack_w4a16_sweep.py manifest > sweep.toml        # every candidate of CANDIDATES, one store
  nvfp4-build compile sweep.toml -o ROOT -j 2        # (CPU box)
  quack_w4a16_sweep.py run ROOT [M ...]              # (GPU) default M: 33 64 128 256 1024

The manifest gives each shape one op whose bucket [i, i] holds candidate i (buckets only make the
builder build every candidate into one store); `run` calls the store's kernels directly, each
checked against the float64 reference at every swept M (fresh NaN-poisoned output; split-K
flags zero again after the call), then timed from CUDA-graph replays (split-K variants reuse
their flags across the replays: the kernel cleans them). Cells: us (x torch bf16, % of peak)."""

import os

# narrow shapes first (the ones split-K is for)
SHAPES = {"q_a+kv": (2048, 7168, 2), "down": (7168, 3072, 1), "o_b": (7168, 2048, 1), "gate+up": (6144, 7168, 1),
          "q_b": (65536, 1536, 1)}
# (tile_m, tile_n, split_k): decode-to-prefill tiles, split-K where the grid starves (narrow N)
CANDIDATES = [(64, 64, 1), (64, 64, 2), (64, 64, 3), (64, 64, 4), (128, 64, 2), (128, 64, 4),
              (64, 128, 1), (64, 128, 2), (64, 128, 3), (64, 128, 4), (128, 128, 1), (128, 128, 2), (128, 128, 4),
              (64, 256, 1), (64, 256, 2), (128, 256, 1), (128, 256, 2), (128, 192, 1)]
# q_b (N = 65536: 512+ weight tiles, K = 1536 leaves 24 K tiles): split-K only as a check
Q_B = [(64, 64, 1), (128, 64, 1), (64, 64, 2), (64, 128, 1), (128, 128, 1), (128, 128, 2), (64, 256, 1),
       (128, 256, 1), (128, 192, 1)]


def family_of(scales: int) -> str:
    return "quack_w4a16_gemm" if scales == 1 else "quack_w4a16_rowalpha_gemm"


def candidates(shape: str):
    return Q_B if shape == "q_b" else CANDIDATES


def manifest() -> str:
    out = ['archs = ["sm_90a"]']
    for shape, (n, k, scales) in SHAPES.items():
        rows = [f"  {{ m = [{i + 1}, {i + 1}], tuning = {{ tile_m = {tm}, tile_n = {tn}, split_k = {sk} }} }},"
                for i, (tm, tn, sk) in enumerate(candidates(shape))]
        out += ["", "[[op]]", f'family = "{family_of(scales)}"', f"problem = {{ n = {n}, k = {k} }}",
                "buckets = [", *rows, "]"]
    return "\n".join(out) + "\n"


def run(root: str, ms: list[int]) -> None:
    import torch
    from common import bf16_peak, device_name, exit_on_failures, time_cuda

    from nvfp4_aot.kernels import get_family
    from nvfp4_aot.runtime import open_store

    dev = torch.device(os.environ.get("SWEEP_DEVICE", "cuda"))  # cpu: only for a dry run with stand-in kernels
    peak = bf16_peak()
    store = open_store(root, manifest=os.environ.get("SWEEP_MANIFEST", "sweep"))
    store.prime()
    ours = None
    if os.environ.get("OURS_MANIFEST"):
        ours = open_store(root, manifest=os.environ["OURS_MANIFEST"])
        ours.prime()
    print(f"device: {device_name()}; torch {torch.__version__}; quack W4A16 tile x split-K sweep; "
          "cells: us (x torch bf16, % of dense bf16 peak)")
    failures = 0
    for shape, (n, k, scales) in SHAPES.items():
        fam = get_family(family_of(scales))
        op = store.op(fam.name, n=n, k=k)
        w16 = torch.randn((n, k), device=dev, dtype=torch.bfloat16)
        acts = {m: torch.randn((m, k), device=dev).to(torch.bfloat16) for m in ms}
        tb = {m: time_cuda(lambda: torch.matmul(acts[m], w16.T), reps=10) for m in ms}
        print(f"{shape} ({n}x{k}) torch bf16 us: " + " ".join(f"M={m}: {tb[m] * 1e6:.1f}" for m in ms))
        if ours is not None:  # our split-K decode kernel (w4a16_gemm; per-row alpha always), Nvfp4Linear's up to QUACK_FROM
            fo, oop, cells = get_family("w4a16_gemm"), ours.op("w4a16_gemm", n=n, k=k, act_order="natural", word_order="nibble"), []
            for m in [m for m in ms if m <= 128]:
                kern = oop.kernel_for(m)
                po = fo.parse_params(kern.record["params"])
                b = fo.make_inputs(po, m, dev, seed=m)
                args = [b[a.name] for a in kern.validator.args]
                kern(*args)
                torch.cuda.synchronize()
                bad = fo.check(po, b, fo.reference(po, b))
                t = time_cuda(lambda: kern(*args, check=False), reps=10)
                cells.append(f"M={m}: {t * 1e6:6.1f} ({tb[m] / t:.2f}x){' CHECK FAILED' if bad else ''}")
                failures += bool(bad)
            print(f"  {'ours w4a16':14} | " + " | ".join(cells))
        best = {}
        kerns = op.kernels()
        p0 = fam.parse_params(kerns[0].record["params"])
        data = {m: fam.make_inputs(p0, m, dev, seed=n + m) for m in ms}  # weights etc. do not depend on the tiling
        want = {m: fam.reference(p0, data[m]) for m in ms}
        for kern in kerns:
            p = fam.parse_params(kern.record["params"])
            v = kern.validator
            cells, bad = [], []
            for m in ms:
                b = dict(data[m])
                for i, a in enumerate(v.args):  # fresh scratch: zero flags, poisoned workspace
                    if a.scratch:
                        b[a.name] = torch.full(v.shape_of(i, m), 0 if a.dtype == "int32" else float("nan"), dtype=v.dtypes[i], device=dev)
                b["out"] = torch.full_like(data[m]["out"], float("nan"))
                args = [b[a.name] for a in v.args]
                kern(*args)
                torch.cuda.synchronize()
                bad += [f"M={m}: {x}" for x in fam.check(p, b, want[m])]
                t = time_cuda(lambda: kern(*args, check=False), reps=10)
                if "flags" in b and b["flags"].any():
                    bad.append(f"M={m}: flags not zero after the timed graph replays")
                best[m] = min(best.get(m, (float("inf"), "")), (t, f"{p.tile_m}x{p.tile_n} k{p.split_k}"))
                pk = f", {2.0 * m * n * k / t / peak:.0%}" if peak else ""
                cells.append(f"M={m}: {t * 1e6:6.1f} ({tb[m] / t:.2f}x{pk})")
            failures += bool(bad)
            tag = f"{p.tile_m}x{p.tile_n} k{p.split_k}"
            print(f"  {tag:14} {'OK  ' if not bad else 'FAIL'} | " + " | ".join(cells) + (f"  {bad[:3]}" if bad else ""))
        del data, want
        print("  best: " + " | ".join(f"M={m}: {best[m][1]} {best[m][0] * 1e6:.1f} us ({tb[m] / best[m][0]:.2f}x)" for m in ms))
    exit_on_failures(failures)


if __name__ == "__main__":
    from common import sweep_cli

    sweep_cli(__doc__, manifest, run, (33, 64, 128, 256, 1024))
