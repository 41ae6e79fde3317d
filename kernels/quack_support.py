"""Import quack-kernels' GEMM modules on the CPU build box, and what both quack adapter families
(quack_w4a16: GemmSm90; quack_blockscaled: GemmSm100) do alike around quack's GEMM classes.

quack/__init__.py imports triton (absent on the build box) through rmsnorm's autotuner and,
with CUTE_DSL_PTXAS_PATH set, swaps ptxas for a system one. Skipping it keeps the build
independent of both; the one side effect the GEMMs need (quack.dsl's DSL patches, imported
first by __init__) is replayed. A quack already imported in this process is used as is.
Both quack families' keys include this file (it is in their source closures). The helpers below
import cutlass / quack lazily: they run inside build workers, after import_quack_package()
(fake tensors: kernels/dsl.py, shared with our own kernels).
"""

import importlib
import importlib.util
import sys


def import_quack_package() -> None:
    if "quack" in sys.modules:
        return
    spec = importlib.util.find_spec("quack")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("quack-kernels is not installed (pip install 'nvfp4-aot[build]')")
    sys.modules["quack"] = importlib.util.module_from_spec(spec)  # package shell, __init__ not run
    importlib.import_module("quack.dsl")


def set_trace_flags(gemm, cd_transposed: bool):
    """The flags quack's compile_gemm_kernel sets on a GEMM before tracing it: A and B as given,
    no packed C; D transposed for a layout-owning A transform (W4A16 writes D = out^T)."""
    gemm.b_transposed = False
    gemm.a_transposed = False
    gemm.cd_transposed = cd_transposed
    gemm.cd_packed = None
    return gemm


def scheduler_options(max_active_clusters: int, max_swizzle_size: int, **extra):
    """quack's TileSchedulerOptions with the persistent grid as a compile-time constant (the
    adapters' docstrings say why), built at trace time."""
    from cutlass import Int32
    from quack.tile_scheduler import TileSchedulerOptions

    return TileSchedulerOptions(max_active_clusters=Int32(max_active_clusters),
                                max_swizzle_size=Int32(max_swizzle_size), **extra)  # fmt: skip

