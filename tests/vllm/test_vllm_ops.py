"""The torch custom ops (nvfp4_aot.vllm_plugin.ops): no vLLM needed, runs in the default venv."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from conftest import run_without_cutlass  # noqa: E402

from nvfp4_aot.vllm_plugin import ops  # noqa: E402
from vllm_fakes import FakeMoERunner, FakeNvfp4Linear, FakeStore, dequant, moe_reference, random_nvfp4  # noqa: E402

H, N, I, E, TOPK = 64, 96, 32, 4, 2


@pytest.fixture
def runners():
    g = torch.Generator().manual_seed(0)
    store = FakeStore()
    up = FakeNvfp4Linear(store, *random_nvfp4(N, H, gen=g)[:3], max_tokens=512)
    down = FakeNvfp4Linear(store, *random_nvfp4(H, N, gen=g)[:3], max_tokens=512)
    w13 = [random_nvfp4(2 * I, H, gen=g) for _ in range(E)]
    w2 = [random_nvfp4(H, I, gen=g) for _ in range(E)]
    experts = FakeMoERunner(
        store,
        w13=torch.stack([t[0] for t in w13]),
        w13_scale=torch.stack([t[1] for t in w13]),
        w13_scale_2=torch.stack([t[2] for t in w13]),
        w2=torch.stack([t[0] for t in w2]),
        w2_scale=torch.stack([t[1] for t in w2]),
        w2_scale_2=torch.stack([t[2] for t in w2]),
        expert_start=0,
        top_k=TOPK,
        max_tokens=512,
    )
    ops.clear_runners()
    ops.register_runner("t.up", up)
    ops.register_runner("t.down", down)
    ops.register_runner("t.experts", experts)
    yield up, down, experts
    ops.clear_runners()


def _moe_inputs(m: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(m, H, generator=g).to(torch.bfloat16)
    ids = torch.stack([torch.randperm(E, generator=g)[:TOPK] for _ in range(m)]).to(torch.int32).reshape(m, TOPK)
    weights = torch.rand(m, TOPK, generator=g)
    return hidden, ids, weights


@pytest.mark.parametrize("m", [1, 5, 64])
def test_opcheck_linear(runners, m):
    x = torch.randn(m, H).to(torch.bfloat16)
    torch.library.opcheck(torch.ops.nvfp4_aot.linear.default, (x, "t.up"))


@pytest.mark.parametrize("m", [1, 5, 64])
def test_opcheck_moe(runners, m):
    torch.library.opcheck(torch.ops.nvfp4_aot.moe.default, (*_moe_inputs(m), "t.experts"))


def test_ops_compute_through_runner(runners):
    up, _, experts = runners
    x = torch.randn(9, H).to(torch.bfloat16)
    assert torch.equal(torch.ops.nvfp4_aot.linear(x, "t.up"), (x.float() @ up.w.T).to(torch.bfloat16))
    hidden, ids, w = _moe_inputs(9)
    ref = moe_reference(hidden, ids, w, experts.w13, experts.w2)
    assert torch.equal(torch.ops.nvfp4_aot.moe(hidden, ids, w, "t.experts"), ref)
    assert ref.abs().sum() > 0


def test_outputs_are_fresh_allocations(runners):
    """Two calls never share storage: the op must not hand out a runner's reusable buffer."""
    x = torch.randn(4, H).to(torch.bfloat16)
    a, b = torch.ops.nvfp4_aot.linear(x, "t.up"), torch.ops.nvfp4_aot.linear(x, "t.up")
    assert a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr()


def test_zero_tokens_launch_nothing(runners):
    up = runners[0]
    out = torch.ops.nvfp4_aot.linear(torch.empty(0, H, dtype=torch.bfloat16), "t.up")
    assert out.shape == (0, N) and up.calls == 0


class Block(torch.nn.Module):
    """A small MoE block made only of the ops: up-projection, routed experts, down-projection."""

    def forward(self, x, ids, w):
        h = torch.ops.nvfp4_aot.linear(x, "t.down")  # [M, N] -> [M, H]
        h = torch.ops.nvfp4_aot.moe(h, ids, w, "t.experts") + h
        return torch.ops.nvfp4_aot.linear(h, "t.up")  # [M, H] -> [M, N]


def test_compile_fullgraph_dynamic_one_graph_for_all_m(runners):
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    block = Block()
    compiled = torch.compile(block, fullgraph=True, dynamic=True, backend=counter)
    for m in (3, 7, 33, 200):  # not 2: duck sizing would tie M to top_k
        x = torch.randn(m, N).to(torch.bfloat16)
        _, ids, w = _moe_inputs(m, seed=m)
        assert torch.equal(compiled(x, ids, w), block(x, ids, w)), m
    assert counter.frame_count == 1  # M stayed symbolic through both fake implementations
    ops_in_graph = {str(n.target).removesuffix(".default") for g in counter.graphs for n in g.graph.nodes}
    assert {"nvfp4_aot.linear", "nvfp4_aot.moe"} <= ops_in_graph  # traced as ops, not inlined


def test_compile_inductor(runners):
    torch._dynamo.reset()
    block = Block()
    compiled = torch.compile(block, fullgraph=True, dynamic=True)
    for m in (3, 40):
        x = torch.randn(m, N).to(torch.bfloat16)
        _, ids, w = _moe_inputs(m, seed=m)
        assert torch.equal(compiled(x, ids, w), block(x, ids, w))


def test_unknown_layer_names_itself(runners):
    with pytest.raises(KeyError, match="no nvfp4_aot runner registered for layer 'nope'"):
        torch.ops.nvfp4_aot.linear(torch.zeros(1, H, dtype=torch.bfloat16), "nope")


def test_key_collision_between_modules_is_refused(runners):
    a, b = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    ops.register_runner("t.shared", runners[0], owner=a)
    ops.register_runner("t.shared", runners[1], owner=a)  # same module reloading its weights
    assert ops.get_runner("t.shared") is runners[1]
    with pytest.raises(ValueError, match="already registered by another module"):
        ops.register_runner("t.shared", runners[0], owner=b)


def test_dequant_reference_matches_hand_computed():
    """The stand-ins' NVFP4 decoding, against values worked out by hand: byte 0x9A holds codes
    0xA (low nibble: -1.0) then 0x9 (-0.5); 0x71 holds 0x1 (0.5) then 0x7 (6.0)."""
    w = torch.tensor([[0x9A, 0x71] + [0] * 6], dtype=torch.uint8)
    s = torch.tensor([[2.0]], dtype=torch.float8_e4m3fn)
    got = dequant(w, s, torch.tensor(0.5))
    assert got[0, :4].tolist() == [-1.0, -0.5, 0.5, 6.0] and not got[0, 4:].any()


def test_ops_import_without_vllm_or_cutlass():
    r = run_without_cutlass(
        "import sys, torch\n"
        "class NoVllm:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'vllm' or name.startswith('vllm.'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, NoVllm())\n"
        "import nvfp4_aot.vllm_plugin.ops\n"
        "assert hasattr(torch.ops.nvfp4_aot, 'linear') and hasattr(torch.ops.nvfp4_aot, 'moe')\n"
        "print('ok')\n"
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
