"""CPU stand-ins for the runtime's Nvfp4Linear and MoERunner, and ModelOpt-format test tensors.

The stand-ins compute the exact math of an NVFP4 weight GEMM (dequantize, fp32 matmul, bf16 out)
so that tests can check that what vLLM loaded and our methods handed over is the checkpoint's
layer, not merely that some call happened. They follow the runtime interface documented in
vllm_plugin (constructor keywords, `.n`, `missing(counts)`, `__call__(..., out=)`).
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch



def require_vllm() -> None:
    """Skip the calling test module unless vLLM is installed. tests/ is on sys.path, so a plain
    `import vllm` would find this folder (tests/vllm) as a namespace package where vLLM is absent:
    look for a real package (one with an __init__) before importing anything."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        pytest.skip("vLLM is not installed (pip install -e '.[vllm]' in a separate venv)", allow_module_level=True)
    pytest.importorskip("vllm.model_executor.layers.quantization")


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def dequant(w: torch.Tensor, scale: torch.Tensor, scale_2: torch.Tensor | float) -> torch.Tensor:
    """uint8 [..., N, K/2] (low nibble first), E4M3 [..., N, K/16], fp32 global -> fp32 [..., N, K]."""
    lo, hi = (w & 0xF).long(), (w >> 4).long()
    codes = torch.stack([lo, hi], dim=-1).flatten(-2)
    vals = E2M1[codes & 7] * torch.where(codes >= 8, -1.0, 1.0)
    blocks = scale.float().repeat_interleave(16, dim=-1)
    s2 = torch.as_tensor(scale_2, dtype=torch.float32)
    return vals * blocks * (s2[..., None, None] if s2.ndim else s2)


def random_nvfp4(n: int, k: int, *, gen: torch.Generator, scale_2: float = 0.01):
    """A ModelOpt NVFP4 linear's tensors: weight, weight_scale, weight_scale_2, input_scale."""
    w = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, generator=gen)
    s = (torch.rand(n, k // 16, generator=gen) * 2 + 0.25).to(torch.float8_e4m3fn)
    return w, s, torch.tensor(scale_2, dtype=torch.float32), torch.tensor(2.5e-4, dtype=torch.float32)


class FakeStore:
    """What the plugin reads of a store: arch, root, prime(); `max_m` bounds the fake coverage."""

    def __init__(self, root: str = "/artifacts", arch: str = "sm_100a", max_m: int = 1 << 20, experts=None):
        self.root, self.arch, self.max_m, self.primed = root, arch, max_m, 0
        self.experts = experts  # local expert counts the fake store has MoE ops for (None: any)

    def prime(self, device=None) -> int:
        self.primed += 1
        return 0


class FakeNvfp4Linear:
    instances: list["FakeNvfp4Linear"] = []

    def __init__(self, store, weight, weight_scale, weight_scale_2, *, max_tokens, device=None, part_sizes=None,
                 quack=True, word_order=None):
        assert weight.dtype == torch.uint8 and weight_scale.dtype == torch.float8_e4m3fn
        self.quack, self.word_order = quack, word_order
        assert weight_scale_2.dtype == torch.float32
        self.store, self.max_tokens, self.part_sizes = store, max_tokens, part_sizes
        self.n, self.k = weight.shape[0], weight.shape[1] * 2
        if part_sizes is None:
            assert weight_scale_2.ndim == 0
            self.w = dequant(weight, weight_scale, weight_scale_2)
        else:
            assert weight_scale_2.shape == (len(part_sizes),) and sum(part_sizes) == self.n
            rows = zip(weight.split(part_sizes), weight_scale.split(part_sizes), weight_scale_2)
            self.w = torch.cat([dequant(w, s, s2) for w, s, s2 in rows])
        self.calls = 0
        FakeNvfp4Linear.instances.append(self)

    def missing(self, token_counts) -> list[str]:
        return [f"gemm n={self.n} k={self.k} M={m}" for m in token_counts if m > self.store.max_m]

    def __call__(self, x, out=None):
        assert x.dtype == torch.bfloat16 and x.shape[1] == self.k and x.is_contiguous()
        self.calls += 1
        y = (x.float() @ self.w.T).to(torch.bfloat16)
        return y if out is None else out.copy_(y)


class FakeMoERunner:
    instances: list["FakeMoERunner"] = []

    def __init__(self, store, *, w13, w13_scale, w13_scale_2, w2, w2_scale, w2_scale_2, expert_start, top_k, max_tokens, device=None,
                 swiglu_limit=None, prefill=True, word_order=None):
        e = w13.shape[0]
        self.prefill, self.word_order = prefill, word_order
        if store.experts is not None and e not in store.experts:
            from nvfp4_aot.runtime.errors import MissingVariantError

            raise MissingVariantError(f"no variant for moe_route.experts={e}.pad=1.topk={top_k} on {store.arch} in {store.root}. Add to a manifest:")
        self.swiglu_limit = swiglu_limit
        assert w13_scale_2.shape in ((e,), (e, 2)) and w2_scale_2.shape == (e,)  # [E, 2]: (gate, up)
        self.store, self.expert_start, self.top_k, self.max_tokens = store, expert_start, top_k, max_tokens
        self.num_experts, self.hidden, self.intermediate = e, w2.shape[1], w2.shape[2] * 2
        s13, i = w13_scale_2.reshape(e, -1).expand(e, 2), self.intermediate
        self.w13 = torch.stack([torch.cat([dequant(w13[j][:i], w13_scale[j][:i], s13[j, 0]),
                                           dequant(w13[j][i:], w13_scale[j][i:], s13[j, 1])]) for j in range(e)])
        self.w2 = torch.stack([dequant(w2[i], w2_scale[i], w2_scale_2[i]) for i in range(e)])
        FakeMoERunner.instances.append(self)

    def missing(self, token_counts) -> list[str]:
        return [f"grouped gemm E={self.num_experts} M={m * self.top_k}" for m in token_counts if m > self.store.max_m]

    def __call__(self, hidden, topk_ids, topk_weights, out=None):
        assert topk_ids.dtype == torch.int32 and topk_weights.dtype == torch.float32
        out = torch.zeros_like(hidden) if out is None else out
        out.copy_(moe_reference(hidden, topk_ids, topk_weights, self.w13, self.w2, self.expert_start, self.swiglu_limit))
        return out


def moe_reference(hidden, topk_ids, topk_weights, w13, w2, expert_start=0, swiglu_limit=None):
    """sum_k w_k * W2_e (silu(gate_e x) * up_e x), over the experts [expert_start, +E) only;
    with swiglu_limit L, silu(min(gate, L)) * clamp(up, -L, L) (vLLM's clamped SwiGLU)."""
    x, acc = hidden.float(), torch.zeros(hidden.shape, dtype=torch.float32)
    inter = w2.shape[2]
    for e in range(w13.shape[0]):
        hit = topk_ids == e + expert_start
        rows = hit.any(dim=1)
        if not rows.any():
            continue
        h = x[rows] @ w13[e].T
        g, u = h[:, :inter], h[:, inter:]
        if swiglu_limit:
            g, u = g.clamp(max=swiglu_limit), u.clamp(-swiglu_limit, swiglu_limit)
        y = (torch.nn.functional.silu(g) * u) @ w2[e].T
        acc[rows] += (topk_weights[rows] * hit[rows]).sum(dim=1, keepdim=True) * y
    return acc.to(torch.bfloat16)


def install_fake_runtime(monkeypatch, store: FakeStore) -> None:
    """Route the plugin's runtime calls to the stand-ins: runtime.linear/moe modules and the
    store opener (the real one verifies hashes and needs a GPU)."""
    from nvfp4_aot.vllm_plugin import artifacts

    lin = types.ModuleType("nvfp4_aot.runtime.linear")
    lin.Nvfp4Linear = FakeNvfp4Linear
    moe = types.ModuleType("nvfp4_aot.runtime.moe")
    moe.MoERunner = FakeMoERunner
    monkeypatch.setitem(sys.modules, "nvfp4_aot.runtime.linear", lin)
    monkeypatch.setitem(sys.modules, "nvfp4_aot.runtime.moe", moe)
    monkeypatch.setattr(artifacts, "_open", lambda path, device: store)
    monkeypatch.setenv(artifacts.ARTIFACTS_ENV, store.root)
    artifacts.reset_stores()
    FakeNvfp4Linear.instances.clear()
    FakeMoERunner.instances.clear()
