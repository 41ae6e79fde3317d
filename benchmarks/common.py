"""Timing helpers shared by the GPU benchmarks: CUDA-graph timing, medians, copy bandwidth."""

import statistics

import torch


def device_name() -> str:
    p = torch.cuda.get_device_properties(0)
    return f"{p.name} (sm_{p.major}{p.minor}, {p.multi_processor_count} SMs)"


def time_cuda(fn, reps: int = 50, warmup: int = 3) -> float:
    """Median seconds of one fn() (which may itself launch several kernels), measured with
    CUDA events around a replay of a CUDA graph holding `inner` calls: device time, free of
    the host's launch cost (which benchmarks/host_overhead.py measures separately)."""
    inner = 20
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s), torch.cuda.graph(g, stream=s):
        for _ in range(inner):
            fn()
    torch.cuda.synchronize()
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e-3 / inner)
    return statistics.median(times)


def copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy rate in bytes/s, counting bytes read plus bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    t = time_cuda(lambda: dst.copy_(src), reps=10)
    return 2 * nbytes / t
