"""Timing helpers shared by the GPU benchmarks: CUDA events, medians, copy bandwidth."""

import statistics

import torch


def device_name() -> str:
    p = torch.cuda.get_device_properties(0)
    return f"{p.name} (sm_{p.major}{p.minor}, {p.multi_processor_count} SMs)"


def time_cuda(fn, reps: int = 50, warmup: int = 5) -> float:
    """Median seconds of fn() measured with CUDA events, one event pair per rep."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e-3)
    return statistics.median(times)


def copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy rate in bytes/s, counting bytes read plus bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    t = time_cuda(lambda: dst.copy_(src), reps=20)
    return 2 * nbytes / t
