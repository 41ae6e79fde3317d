"""What a serving class opens from the store, declared once.

Each runner (`MoERunner` for sm_90a and sm_100a, `Nvfp4Linear`) has a classmethod `ops(...)`
that, from the model shapes, the EP layout and the arch alone, returns the `OpDecl`s it needs:
family + problem parameters, which token count M each op sees for a batch of T tokens, and
what it does. The runner's `__init__` opens exactly these, its `missing()` (the vLLM plugin's
start-up coverage check) checks exactly these, and `nvfp4-build plan` plans exactly these: a
change to a runner changes the plan with it.

torch-free; imports nothing from kernels/ (the capacity formula is the route family's layout,
restated in runtime/layout.py which the family itself imports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .layout import capacity

ROWS = ("tokens", "slots", "capacity")
KEYED = ("input", "gemm", "layer")


@dataclass(frozen=True)
class OpDecl:
    """One op a runner opens.

    attr:     the runner attribute holding the opened op.
    rows:     what M the op sees for T tokens: "tokens" (M = T, padded by vLLM to a CUDA-graph
              capture size), "slots" (M = T * top_k routed rows, unpadded) or "capacity" (route's
              padded grouped rows, capacity(T, top_k, experts, pad)).
    keyed:    what one op instance is shared by: "input" (every GEMM with this input width K,
              e.g. activation quantization), "gemm" (one (N, K) problem), "layer" (one runner
              shape); the planner groups and orders by it.
    weights:  the checkpoint weights the op multiplies ("w13", "w2", "weight"), or None.
    optional: opened only when the store has it (the runner falls back without it).
    m_above / m_upto: the token counts T the runner sends to this op (quack above QUACK_FROM).
    """

    attr: str
    family: str
    problem: Mapping[str, Any]
    rows: str
    text: str
    keyed: str = "layer"
    weights: str | None = None
    optional: bool = False
    top_k: int = 1
    experts: int = 0
    pad: int = 1
    m_above: int = 0
    m_upto: int | None = None
    runner: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.rows not in ROWS or self.keyed not in KEYED:
            raise ValueError(f"OpDecl {self.attr}: rows {self.rows!r} / keyed {self.keyed!r}")

    def m_of(self, tokens: int) -> int:
        """The token count M this op is called with for a batch of `tokens` tokens."""
        if self.rows == "tokens":
            return tokens
        if self.rows == "slots":
            return tokens * self.top_k
        return capacity(tokens, self.top_k, self.experts, self.pad)

    @property
    def padded(self) -> bool:
        """M is a token count vLLM pads up to a CUDA-graph capture size."""
        return self.rows == "tokens"

    def serves(self, tokens: int) -> bool:
        return tokens > self.m_above and (self.m_upto is None or tokens <= self.m_upto)

    def what(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.problem.items())


def covered(op: Any, token_counts: Iterable[int]) -> list[str]:
    """Token counts an op's buckets do not cover, as human-readable strings."""
    return [f"{op.name} M={m} (buckets end at {op.max_m})" for m in token_counts if not 1 <= m <= op.max_m]


def missing_ops(runner: Any, decls: Iterable[OpDecl], token_counts: Iterable[int], max_tokens: int | None = None) -> list[str]:
    """What the opened ops `decls` of `runner` (attributes named by decl.attr) lack at these
    token counts: each op checked at the M it sees (decl.m_of) for the counts it serves; and
    counts above `max_tokens` where the runner's buffers are sized from it."""
    ms = list(token_counts)
    name = getattr(runner, "runner_name", type(runner).__name__)
    bad = [f"{name} M={m} > max_tokens={max_tokens}" for m in ms if max_tokens is not None and m > max_tokens]
    for d in decls:
        bad += covered(getattr(runner, d.attr), [d.m_of(m) for m in ms if d.serves(m)])
    return bad


def open_ops(runner: Any, store: Any, decls: Iterable[OpDecl]) -> list[OpDecl]:
    """Open each declared op into `runner.<attr>`; optional ones the store lacks are skipped
    (and left None). Returns the decls opened."""
    from .errors import MissingVariantError

    opened = []
    for d in decls:
        try:
            op = store.op(d.family, **d.problem)
        except MissingVariantError:
            if not d.optional:
                raise
            op = None
        if op is not None:
            opened.append(d)
        setattr(runner, d.attr, op)
    return opened


__all__ = ["OpDecl", "covered", "missing_ops", "open_ops"]
