"""`nvfp4-build verify`: check a store without trusting it.

Static checks (any machine): the index schema (every field typed, keys recomputed from their
records, symbols naming the keys, manifest tables pointing at entries of their family, arch
and params, the store digest), each entry's files (no symlinks, size and sha256, meta.json
equal to the index record, the exported symbol, the embedded cubin arch: store_format.
check_entry, shared with the runtime's open), the ABI versions against what is installed.
A malformed index is reported alone (exit 5); file mismatches are verification failures. With load=True each
module is also loaded through tvm_ffi and its function looked up (no GPU needed; the build
worker already did this once before committing the entry). Leftovers of an
interrupted build (staging dirs, unlisted entry dirs) are reported as notes, not failures:
readers ignore them and the next build removes them.

With run=True (GPU): open the store through the runtime, prime, and run every variant at the
edges of each of its buckets against the family's reference on fresh random inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nvfp4_aot.runtime import native
from nvfp4_aot.runtime.store_format import (
    ENTRIES_DIR,
    LIB_NAME,
    TMP_DIR,
    StoreFormatError,
    check_entry,
    entry_dir,
    load_index,
)


@dataclass
class VerifyReport:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: int = 0
    ran: int = 0
    malformed: bool = False  # the index itself is unreadable or malformed (exit 5)
    digest: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def verify_store(root: Path, load: bool = False) -> VerifyReport:
    rep = VerifyReport()
    try:
        index = load_index(root)
    except (StoreFormatError, OSError) as e:
        rep.errors.append(str(e))
        rep.malformed = True
        return rep
    rep.digest = index.digest
    tvm_version, dsl_version = native.tvm_ffi_version(), native.dsl_version()
    if load:
        native.preload()
    for key, rec in sorted(index.entries.items()):
        rep.checked += 1
        where = f"entry {key} ({rec.family} {rec.arch})"
        try:
            check_entry(root, rec)
        except (StoreFormatError, OSError) as e:
            rep.errors.append(f"{where}: {e}")
            continue
        if rec.tvm_ffi_version != tvm_version:
            rep.errors.append(f"{where}: built for apache-tvm-ffi {rec.tvm_ffi_version}, installed {tvm_version}")
        if dsl_version is not None and rec.dsl_version != dsl_version:
            rep.errors.append(f"{where}: built with nvidia-cutlass-dsl {rec.dsl_version}, installed {dsl_version}")
        if load and not rep.errors:
            import tvm_ffi

            try:
                tvm_ffi.load_module(str(entry_dir(root, key) / LIB_NAME))[rec.symbol]
            except Exception as e:
                rep.errors.append(f"{where}: tvm_ffi cannot load {rec.symbol}: {e}")
    for d in sorted((root / TMP_DIR).glob("*")) if (root / TMP_DIR).is_dir() else []:
        rep.notes.append(f"staging leftover {d} (interrupted build; removed by the next compile)")
    for d in sorted((root / ENTRIES_DIR).glob("*")) if (root / ENTRIES_DIR).is_dir() else []:
        if d.name not in index.entries:
            rep.notes.append(f"unlisted entry dir {d} (interrupted build; ignored by readers, removed by the next compile)")
    return rep


SMOKE_MAX_M = 8192


def run_store(root: Path, rep: VerifyReport, seed: int) -> None:
    """Smoke-run every loaded variant at its bucket edges against the reference (needs a GPU)."""
    import torch

    from nvfp4_aot.kernels import get_family
    from nvfp4_aot.runtime import open_store

    store = open_store(root)
    store.prime()
    # Bucket edges above SMOKE_MAX_M are capped: the float64 references of the large GEMMs at
    # M = 65536 would need tens of GiB (q_b: 65536 x 65536 x 8 B). The families' own GPU tests
    # cover large M.
    for op in store.ops.values():
        fam = get_family(op.spec["family"])
        for lo, hi, kern in op._buckets:
            params = fam.parse_params(kern.record["params"])
            for m in sorted({min(x, SMOKE_MAX_M) for x in (lo, hi, (lo + hi) // 2)}):
                inputs = fam.make_inputs(params, m, torch.device("cuda"), seed=seed + m)
                want = fam.reference(params, inputs)
                op(*[inputs[a.name] for a in kern.validator.args])
                torch.cuda.synchronize()
                bad = fam.check(params, inputs, want)
                rep.ran += 1
                if bad:
                    rep.errors.append(f"run {op.name} M={m} ({kern.key}): {'; '.join(bad)}")
