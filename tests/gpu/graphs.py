"""CUDA-graph helpers shared by the GPU tests."""

import torch


def capture(fn):
    """fn() captured into a CUDA graph on a side stream: the kernels launch on tvm-ffi's env
    stream, which follows torch's current stream, so every launch lands in the capture. The
    kernels must already be loaded (store.prime() or a warm call). Returns (graph, fn's result)."""
    torch.cuda.synchronize()
    graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        result = fn()
    torch.cuda.synchronize()
    return graph, result


def replay_without_allocating(graph, what: str = "replay") -> None:
    """Replay the graph and assert the caching allocator's counters (bytes in use, allocation
    count) did not move: the captured work allocates nothing."""
    torch.cuda.synchronize()
    allocated, count = torch.cuda.memory_allocated(), torch.cuda.memory_stats()["allocation.all.allocated"]
    graph.replay()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == allocated, f"{what}: bytes allocated during replay"
    assert torch.cuda.memory_stats()["allocation.all.allocated"] == count, f"{what}: allocations during replay"
