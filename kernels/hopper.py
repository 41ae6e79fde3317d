"""Hopper (sm_90) facts that our families' validity rules and builds share, in one place.

Spec side: importing this module imports nothing of cutlass (validity predicates run in the
runtime, which never imports the DSL); `answer_device_queries` imports the DSL when entered,
at build time only.
"""

from __future__ import annotations

import contextlib

SMEM_PER_BLOCK = 227 * 1024  # the opt-in maximum of dynamic shared memory per CTA
SMEM_PER_SM = 228 * 1024  # shared memory per SM (every sm_90 part); CTAs on one SM share it
REGS_PER_SM = 64 * 1024  # 32-bit registers per SM (every sm_90 part); CTAs on one SM share them
SM_COUNT = 132  # SMs of an H100 SXM / H200: the default persistent grid of our families and quack's (tunable)


@contextlib.contextmanager
def answer_device_queries(who: str):
    """Answer the DSL's device-attribute queries for sm_90 instead of asking a GPU, while a launch
    is traced: some launches (quack's tile scheduler, a min-blocks-per-SM launch) make the DSL ask
    for the shared memory per SM to pick a carveout, and the build box has no GPU. That query gets
    SMEM_PER_SM; any other raises naming `who` (the family), so a new query in a future DSL or
    quack fails the build loudly instead of baking in a guess."""
    import cutlass.base_dsl.runtime.cuda as dsl_cuda

    attr = dsl_cuda.cuda.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
    real = dsl_cuda.get_device_attribute

    def fake(attribute, device_id=0):
        if attribute == attr:
            return SMEM_PER_SM
        raise RuntimeError(f"{who}: the DSL queried the GPU for {attribute} while compiling for sm_90a")

    dsl_cuda.get_device_attribute = fake
    try:
        yield
    finally:
        dsl_cuda.get_device_attribute = real



def launch(kern, kw: dict, who: str) -> None:
    """kern.launch(**kw) (plain Python, run while cute.compile traces a family's _launch). A launch
    with min_blocks_per_mp = n > 1 (ptxas then keeps the kernel's registers within one SM's share for
    n CTAs: REGS_PER_SM / (n x threads)) makes the DSL ask the GPU for its shared memory per SM to pick the
    carveout: answered for sm_90 (answer_device_queries), since the build box has none."""
    if kw.get("min_blocks_per_mp", 0) <= 1:
        kern.launch(**kw)
        return
    with answer_device_queries(who):
        kern.launch(**kw)
