"""CuTe DSL kernel families (import of this package never imports cutlass)."""

from .family import Arg, Family, ParamError, Signature, eval_dim
from .registry import ENTRY_POINT_GROUP, UnknownFamilyError, families, get_family

__all__ = [
    "Arg",
    "ENTRY_POINT_GROUP",
    "Family",
    "ParamError",
    "Signature",
    "UnknownFamilyError",
    "eval_dim",
    "families",
    "get_family",
]
