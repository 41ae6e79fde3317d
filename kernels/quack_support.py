"""Import quack-kernels' GEMM modules on the CPU build box (used by the quack adapter families).

quack/__init__.py imports triton (absent on the build box) through rmsnorm's autotuner and,
with CUTE_DSL_PTXAS_PATH set, swaps ptxas for a system one. Skipping it keeps the build
independent of both; the one side effect the GEMMs need (quack.dsl's DSL patches, imported
first by __init__) is replayed. A quack already imported in this process is used as is.
Both quack families' keys include this file (it is in their source closures).
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
