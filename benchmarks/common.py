"""Helpers shared by the GPU benchmarks: CUDA-graph timing, medians, copy bandwidth, the grouped
bf16 baseline, opening stores, the sweeps' command line."""

import itertools
import statistics
import sys

import torch

from nvfp4_aot.runtime import open_store


TOPK = 6  # DeepSeek-V4's routed top-k: the token-slot counts every MoE benchmark builds
MOE_E, MOE_H, MOE_I = 48, 7168, 3072  # the MoE layer benchmarks' shape: DeepSeek-V4 Pro at EP 8
MOE_SHAPES = {"L1": (2 * MOE_I, MOE_H), "L2": (MOE_H, MOE_I)}  # the routed experts' grouped GEMMs, (N, K)


def moe_runner(store, max_tokens: int, prefill: bool = True, word_order: str | None = None):
    """MoERunner over MOE_E experts of random NVFP4 weights (global scales 1e-4), expert_start 0,
    top-TOPK: what benchmarks/moe_layer.py and moe_timeline.py time. word_order: the runner's
    (runtime/word_order.py; None: the runner's default)."""
    from nvfp4_aot.kernels.quack_w4a16.prepare import random_nvfp4_weights
    from nvfp4_aot.runtime import MoERunner

    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    q13, s13, q2, s2 = [], [], [], []
    for _ in range(MOE_E):
        q, s = random_nvfp4_weights(2 * MOE_I, MOE_H, g, dev)
        q13.append(q), s13.append(s)
        q, s = random_nvfp4_weights(MOE_H, MOE_I, g, dev)
        q2.append(q), s2.append(s)
    f8 = torch.float8_e4m3fn
    return MoERunner(store, w13=torch.stack(q13), w13_scale=torch.stack(s13).view(f8),
                     w13_scale_2=torch.full((MOE_E,), 1e-4, device=dev), w2=torch.stack(q2),
                     w2_scale=torch.stack(s2).view(f8), w2_scale_2=torch.full((MOE_E,), 1e-4, device=dev),
                     expert_start=0, top_k=TOPK, max_tokens=max_tokens, prefill=prefill,
                     **({"word_order": word_order} if word_order else {}))


def ops_of(store, family: str, **problem) -> list:
    """The ops of `family` in `store` whose problem holds these items (the others, e.g. act_order,
    word_order or quack's tile_n, whatever the store built), in the store's order."""
    return [o for o in store.ops.values() if o.spec["family"] == family
            and all(o.spec["problem"].get(k) == v for k, v in problem.items())]


def find_op(store, family: str, **problem):
    """The one op of ops_of(store, family, **problem): benchmarks that time any store's tilings of a
    shape; several or none is an error naming them."""
    ops = ops_of(store, family, **problem)
    if len(ops) != 1:
        raise SystemExit(f"{store.root}: {len(ops)} ops of {family} with {problem} "
                         f"({sorted(o.name for o in ops)}): give the missing problem values")
    return ops[0]


def device_name() -> str:
    p = torch.cuda.get_device_properties(0)
    return f"{p.name} (sm_{p.major}{p.minor}, {p.multi_processor_count} SMs)"


# Dense bf16 tensor-core peak (no sparsity) by product name, FLOP/s: NVIDIA's data sheets.
# H100 SXM and H200 share the same SM count and clocks (989.4 TFLOP/s); PCIe / NVL parts differ.
BF16_PEAKS = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H200 NVL", 835e12), ("H100", 989.4e12),
              ("H200", 989.4e12), ("GH200", 989.4e12))


def bf16_peak() -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None when the part is not in BF16_PEAKS."""
    name = torch.cuda.get_device_properties(0).name
    return next((v for k, v in BF16_PEAKS if k in name), None)


def tflops(flops: float, seconds: float, peak: float | None) -> str:
    """'123 TFLOP/s (12.4% of peak)' for a measured time."""
    rate = flops / seconds
    return f"{rate / 1e12:4.0f} TFLOP/s ({rate / peak:5.1%} pk)" if peak else f"{rate / 1e12:4.0f} TFLOP/s"


def l2_bytes() -> int:
    """The device's L2 cache size in bytes (torch's device properties)."""
    return int(torch.cuda.get_device_properties(0).L2_cache_size)


def cold_copies(nbytes: int) -> int:
    """How many copies of an nbytes operand a cold-L2 timing rotates through: enough that between two
    uses of one copy at least twice the L2's size of other copies is read (so it has been evicted, as
    a layer's weights are by the other layers' in a model's forward), at least 1."""
    return 1 + -(-2 * l2_bytes() // max(nbytes, 1))


def time_cuda_alt(entries, reps: int = 50, warmup: int = 3) -> list[float]:
    """Median seconds of one call of each entry, measured with CUDA events around replays of a CUDA graph
    holding its calls: device time, free of the host's launch cost (which benchmarks/host_overhead.py measures
    separately). An entry is a list of callables (each may launch several kernels): one (hot), or one per operand
    copy (cold_copies: a whole number of rotations, so each call finds its weights evicted from L2); its graph holds
    at least 20 calls. With several entries the graphs are replayed in turn, `reps` rounds, so that every entry meets
    the same clock and power state: timed one after the other, a latency-bound kernel that follows a power-capped one
    runs at the lowered SM clock and its neighbour at the recovered one (docs/PERFORMANCE.md "session 35": ours
    9.7-10.2 us where the same cell read 7.9 after light kernels)."""
    graphs = []
    for fns in entries:
        it, inner = itertools.cycle(fns), len(fns) * -(-20 // len(fns))
        for _ in range(warmup):
            for f in fns:
                f()
        torch.cuda.synchronize()
        g, s = torch.cuda.CUDAGraph(), torch.cuda.Stream()
        with torch.cuda.stream(s), torch.cuda.graph(g, stream=s):
            for _ in range(inner):
                next(it)()
        torch.cuda.synchronize()
        g.replay()
        torch.cuda.synchronize()
        graphs.append((g, inner))
    times = [[] for _ in graphs]
    for _ in range(reps):
        for (g, inner), ts in zip(graphs, times):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            g.replay()
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b) * 1e-3 / inner)
    return [statistics.median(ts) for ts in times]


def time_cuda(fn, reps: int = 50, warmup: int = 3) -> float:
    """time_cuda_alt of one hot entry: median seconds of one fn()."""
    return time_cuda_alt([[fn]], reps, warmup)[0]


def time_cuda_rot(fns, reps: int = 50, warmup: int = 3) -> float:
    """time_cuda_alt of one cold entry: fns[i] uses the i-th copy of the operands (cold_copies)."""
    return time_cuda_alt([fns], reps, warmup)[0]


def copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy rate in bytes/s, counting bytes read plus bytes written: the best
    of an SM copy kernel (torch's copy_ launched eagerly: a 1 GiB copy dwarfs the launch) and
    a clone. Not through a graph: a captured copy_ may become a copy-engine memcpy node,
    which is slower (seen on an H100: 2.4 vs 2.9 TB/s) and would flatter the ratios."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    best = float("inf")
    for fn in (lambda: dst.copy_(src), lambda: src.view(torch.float32).clone()):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        for _ in range(10):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            best = min(best, a.elapsed_time(b) * 1e-3)
    return 2 * nbytes / best


def time_quantize(fam, p, m: int, launch, reps: int) -> tuple[float, int]:
    """(seconds per call, bytes moved) of one nvfp4_quantize variant at token count m:
    bf16 input + packed codes + swizzled scale rows. Inputs rotate over enough buffers
    (> 4x L2) that no call reads from cache; `launch(b)` calls the kernel on buffer set b."""
    nbytes = m * p.k * 2 + m * p.k // 2 + p.k // 16 * (-(-m // 128) * 128)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    nbuf = max(1, min(16, -(-4 * l2 // nbytes)))
    bufs = [fam.make_inputs(p, m, torch.device("cuda"), seed=i) for i in range(nbuf)]
    it = iter(range(1 << 30))
    # rotates buffers at capture time: the graph holds distinct inputs
    return time_cuda(lambda: launch(bufs[next(it) % nbuf]), reps=reps), nbytes


def open_stores(*paths):
    """Each store path opened and primed (every kernel loaded before any timing); None stays None."""
    stores = [open_store(p) if p else None for p in paths]
    for s in stores:
        if s is not None:
            s.prime()
    return stores


def grouped_bf16(t: int, w16, peak: float | None) -> tuple[float, float, str]:
    """The grouped prefill baseline: torch bf16 _grouped_mm of E equal groups of t rows against
    w16 [E, K, N]: (flops, seconds, the line's opening cell with the device time and TFLOP/s)."""
    e, k, n = w16.shape
    fl = 2.0 * t * e * n * k
    act = torch.randn((t * e, k), device=w16.device, dtype=torch.bfloat16)
    goffs = torch.arange(1, e + 1, device=w16.device, dtype=torch.int32) * t
    tb = time_cuda(lambda: torch._grouped_mm(act, w16, offs=goffs), reps=5)
    return fl, tb, f"  t={t:>4}: bf16 {tb * 1e6:7.0f} us ({tflops(fl, tb, peak)})"


def exit_on_failures(failures: int) -> None:
    """A sweep's last line and exit status: 1 when any candidate failed its check."""
    print(f"checks: {'all OK' if not failures else f'{failures} candidates FAILED'}")
    sys.exit(1 if failures else 0)


def sweep_cli(doc: str, manifest, run, default_ms) -> None:
    """A sweep's command line: `manifest` prints its manifest, `run STORE [M ...]` runs it (M
    default: default_ms); anything else prints the module docstring and exits 1."""
    if sys.argv[1:2] == ["manifest"]:
        sys.stdout.write(manifest())
    elif sys.argv[1:2] == ["run"] and len(sys.argv) > 2:
        run(sys.argv[2], [int(x) for x in sys.argv[3:]] or list(default_ms))
    else:
        sys.exit(doc)
