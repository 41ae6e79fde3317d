"""A CUDA-graph replay's kernels, one by one (torch only, so that scripts running next to another tree's benchmark
`common` can import it too: docs/experiments/moel2/base_timeline.py, for cfea70a's runner). Used by moe_timeline.py.

capture(fn) puts fn (already called once: warm) in a CUDA graph; profile(graph, reps) profiles `reps` replays with
torch.profiler (CUPTI kernel records): per kernel in launch order its mean duration and the mean gap from the previous
kernel's end (negative = overlap, e.g. a programmatic dependent launch), and the replay's mean span (first start to
last end). print_timeline prints them under a header line with the replay's wall time; layer_timelines does all of
it for a MoE runner at several token counts (the caller's tree supplies the routing and the timer)."""

from collections import defaultdict

import torch


def replays(graph: torch.cuda.CUDAGraph, reps: int) -> list[list[tuple[str, float, float]]]:
    """(name, start us, end us) of every kernel of each replay, in start order."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            graph.replay()
            torch.cuda.synchronize()
    ks = sorted(((e.name, e.time_range.start, e.time_range.end) for e in prof.events()
                 if e.device_type == torch.autograd.DeviceType.CUDA and "memcpy" not in e.name.lower()
                 and "memset" not in e.name.lower()), key=lambda k: k[1])
    n = len(ks) // reps
    return [ks[i * n:(i + 1) * n] for i in range(reps)]


def summarize(reps: list[list[tuple[str, float, float]]]) -> tuple[list[str], list[float], list[float], float]:
    """Kernel names (launch order), mean durations, mean gaps before each (0 for the first) and the mean span, us."""
    dur, gap = defaultdict(float), defaultdict(float)
    span = 0.0
    for r in reps:
        span += (r[-1][2] - r[0][1]) / len(reps)
        for i, (_, s, e) in enumerate(r):
            dur[i] += (e - s) / len(reps)
            if i:
                gap[i] += (s - r[i - 1][2]) / len(reps)
    names = [k[0] for k in reps[0]]
    return names, [dur[i] for i in range(len(names))], [gap[i] for i in range(len(names))], span


def capture(fn) -> torch.cuda.CUDAGraph:
    """fn (already called once: warm) captured in a CUDA graph, replayed once."""
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    return graph


def profile(graph: torch.cuda.CUDAGraph, reps: int) -> tuple[list[str], list[float], list[float], float]:
    """summarize() of `reps` profiled replays of graph."""
    return summarize(replays(graph, reps))


def print_timeline(label: str, wall: float, names: list[str], dur: list[float], gap: list[float], span: float) -> None:
    """wall: seconds per call (time_cuda's); the rest as timeline returns them."""
    print(f"\n{label}: replay wall {wall * 1e6:.1f} us, kernel span {span:.1f} us, kernels' sum {sum(dur):.1f} us")
    print(f"  {'kernel':<60} {'us':>8} {'gap before':>11}")
    for name, d, g in zip(names, dur, gap):
        print(f"  {name[:60]:<60} {d:>8.1f} {g:>11.1f}")


def layer_timelines(runner, tokens, *, hidden: int, top_k: int, experts: int, make_routing, time_cuda,
                    reps: int) -> None:
    """For each m in tokens: runner(x, ids, w, out=out, check=False) on fresh random bf16 x [m, hidden] and local
    routing (make_routing(m, top_k, experts, seed=m, mode="local"), ids made local), called once, captured, its wall
    time taken (time_cuda, 10 reps) and its replays profiled (reps), printed as print_timeline."""
    dev = torch.device("cuda")
    for m in tokens:
        ids, start = make_routing(m, top_k, experts, seed=m, mode="local")
        ids = (ids - start).to(dev)
        x = torch.randn((m, hidden), device=dev).to(torch.bfloat16)
        w = torch.rand((m, top_k), device=dev)
        out = torch.empty((m, hidden), dtype=torch.bfloat16, device=dev)

        def call():
            runner(x, ids, w, out=out, check=False)

        call()
        graph = capture(call)
        print_timeline(f"tokens {m}", time_cuda(call, reps=10), *profile(graph, reps))
