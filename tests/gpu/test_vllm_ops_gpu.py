"""The vLLM plugin's custom ops on Hopper without vLLM (it cannot be installed on the GPU machine):
a small DeepSeek-V4 MoE block (routed experts through torch.ops.nvfp4_aot.moe, the shared expert
through two torch.ops.nvfp4_aot.linear) under torch.compile(fullgraph=True, dynamic=True), captured
in CUDA graphs at vLLM capture sizes, replayed with fresh tokens and routings: equal to the same
compiled call run eagerly (bitwise: every kernel is deterministic) and within 1e-2 of the
uncompiled block (inductor may fuse the torch silu differently). Plus the start-up coverage error."""

import sys

import pytest
import torch

from nvfp4_aot.kernels.moe_glue.ref import make_routing
from nvfp4_aot.kernels.quack_w4a16.prepare import random_nvfp4_weights
from nvfp4_aot.runtime import MoERunner, Nvfp4Linear

from .graphs import capture, replay_without_allocating

pytestmark = pytest.mark.gpu

E, H, I, TOPK = 48, 7168, 3072, 6
DEV = torch.device("cuda")
CAPTURE_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _backend():
    try:
        import triton  # noqa: F401

        return "inductor"
    except ImportError:
        return "aot_eager"


class Block(torch.nn.Module):
    def forward(self, x, ids, w):
        routed = torch.ops.nvfp4_aot.moe(x, ids, w, "t.moe")
        gu = torch.ops.nvfp4_aot.linear(x, "t.gate_up")
        a = (torch.nn.functional.silu(gu[:, :I].float()) * gu[:, I:].float()).to(torch.bfloat16)
        return routed + torch.ops.nvfp4_aot.linear(a, "t.down")


@pytest.fixture(scope="module")
def block(store):
    from nvfp4_aot.vllm_plugin import ops

    g = torch.Generator(device=DEV).manual_seed(7)
    q13, s13, q2, s2 = zip(*[(*random_nvfp4_weights(2 * I, H, g, DEV), *random_nvfp4_weights(H, I, g, DEV)) for _ in range(E)])
    f8 = torch.float8_e4m3fn
    runner = MoERunner(store, w13=torch.stack(q13), w13_scale=torch.stack(s13).view(f8),
                       w13_scale_2=torch.full((E,), 2e-5, device=DEV), w2=torch.stack(q2),
                       w2_scale=torch.stack(s2).view(f8), w2_scale_2=torch.full((E,), 2e-5, device=DEV),
                       expert_start=0, top_k=TOPK, max_tokens=8192)
    q, s = random_nvfp4_weights(2 * I, H, g, DEV)
    gate_up = Nvfp4Linear(store, q, s.view(f8), torch.tensor(2e-5, device=DEV), max_tokens=8192)
    q, s = random_nvfp4_weights(H, I, g, DEV)
    down = Nvfp4Linear(store, q, s.view(f8), torch.tensor(2e-5, device=DEV), max_tokens=8192)
    for key, r in (("t.moe", runner), ("t.gate_up", gate_up), ("t.down", down)):
        ops.register_runner(key, r)
    yield Block(), runner
    ops.clear_runners()
    from nvfp4_aot.runtime import moe

    moe._WORKSPACES.clear()
    torch.cuda.empty_cache()


def _inputs(m, seed):
    ids, start = make_routing(m, TOPK, E, seed, "local")
    g = torch.Generator(device=DEV).manual_seed(seed)
    x = torch.randn((m, H), generator=g, device=DEV).to(torch.bfloat16)
    w = torch.rand((m, TOPK), generator=g, device=DEV)
    return x, (ids - start).to(DEV), w


def test_compiled_block_in_cuda_graphs_at_capture_sizes(block):
    mod, _ = block
    compiled = torch.compile(mod, fullgraph=True, dynamic=True, backend=_backend())
    for n, m in enumerate(CAPTURE_SIZES):
        x, ids, w = _inputs(m, 100 + n)
        compiled(x, ids, w)  # trace / warm (dynamic=True: one graph for every M)
        graph, out = capture(lambda: compiled(x, ids, w))
        for r in range(2):
            x2, ids2, w2 = _inputs(m, 1000 * n + r)
            x.copy_(x2), ids.copy_(ids2), w.copy_(w2)
            replay_without_allocating(graph, f"M={m}")
            eager_compiled = compiled(x, ids, w)
            assert torch.equal(out, eager_compiled), f"M={m}: graph replay != compiled eager"
            ref = mod(x, ids, w).double()
            err = ((out.double() - ref).norm() / ref.norm()).item()
            assert err <= 1e-2, f"M={m}: compiled vs eager block rel err {err:.2e}"
    assert "cutlass" not in sys.modules, "the serving path imported cutlass"


def test_startup_coverage_error_names_missing_sizes_and_the_fix(block, store):
    from nvfp4_aot.vllm_plugin.artifacts import CoverageError, ServingShape, check_coverage

    _, runner = block
    shape = ServingShape(model="/models/dsv4", max_num_batched_tokens=100_000, capture_sizes=(1, 2, 4))
    with pytest.raises(CoverageError) as e:
        check_coverage("model.layers.3.mlp.experts", runner, shape.token_counts(), shape, store)
    msg = str(e.value)
    assert "100000" in msg and "nvfp4-build plan /models/dsv4" in msg and "max_tokens=8192" in msg, msg
    check_coverage("model.layers.3.mlp.experts", runner, [1, 2, 4, 8192], shape, store)  # covered: no error
