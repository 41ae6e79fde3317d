"""Open a verified artifact store and dispatch calls to its kernels. Never compiles anything.

    store = nvfp4_aot.runtime.open("artifacts/")          # verify index, hashes, ABI, arch
    store.prime()                                          # first call of each kernel, eagerly
    quant = store.op("nvfp4_quantize", k=7168, sf_layout="swizzled")
    quant(x, global_scale, q, sf)                          # bucket by M, validate, launch

Order of refusals, all before any kernel code is loaded: index schema (keys recomputed from
their records, symbols naming them, tables bound to their entries, the store digest), every
entry's files (store_format.check_entry: no symlinks, sha256, meta.json, exported symbol,
embedded arch), device arch, tvm-ffi / DSL ABI; with load=True each module is then looked up
by the symbol its key names, so a module cannot serve another record. A launch uses torch's current stream (tvm-ffi's env stream),
allocates nothing and never synchronizes with the host, so it is safe inside a CUDA graph
capture once `prime()` has run.
"""

from __future__ import annotations

import bisect
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import installed, native
from .errors import (
    AbiMismatchError,
    ArchMismatchError,
    ArgumentError,
    MissingVariantError,
    TamperedArtifactError,
)
from .store_format import (  # noqa: F401  (NO_BUILD_ENV re-exported)
    LIB_NAME,
    NO_BUILD_ENV,
    EntryRecord,
    StoreFormatError,
    StoreIndex,
    arch_of_capability,
    check_entry,
    entry_dir,
    load_index,
    op_conflicts,
    op_id,
)
from .signature import Signature
from .validate import CallValidator



@dataclass
class Kernel:
    """One loaded variant: its record, its validator and the tvm-ffi function."""

    record: EntryRecord  # (a Mapping in tests that build a Kernel by hand)
    path: Path
    validator: CallValidator
    fn: Any = None
    primed: bool = False

    @property
    def key(self) -> str:
        return self.record["key"]

    def __call__(self, *args: Any, check: bool | str = True) -> None:
        """check=True: quick checks here, the rest by the exported function's own argument
        decoding (in C, before its launch), re-checked in full to name a refused argument;
        check="full": every rule in Python first; check=False: none (caller guarantees)."""
        if not check:
            self.fn(*args)
            return
        if check == "full":
            self.validator(args)
        else:
            self.validator.quick(args)
        try:
            self.fn(*args)
        except (TypeError, ValueError) as e:  # tvm-ffi's argument checks; nothing was launched
            self.validator(args)
            raise ArgumentError(f"{self.record['symbol']}: {e}") from e


class Op:
    """A family + problem parameters, dispatching on the token count M to a bucket's kernel."""

    def __init__(self, op_name: str, spec: Mapping[str, Any], buckets: list[tuple[int, int, Kernel]]):
        self.name = op_name
        self.spec = spec
        self._hi = [hi for _, hi, _ in buckets]
        self._buckets = buckets
        self.max_m = buckets[-1][1]
        v = buckets[0][2].validator
        self._m_arg, self._m_dim = v.bind_position("M")
        # Buckets may differ only by trailing scratch arguments (e.g. a split-K variant's flags +
        # workspace): the same data arguments, in the same order, M bound at the same place.
        data = [a.name for a in v.args if not a.scratch]
        for lo, _, k in buckets:
            names, flags = [a.name for a in k.validator.args], [a.scratch for a in k.validator.args]
            if names[: len(data)] != data or any(flags[: len(data)]) or not all(flags[len(data):]):
                raise StoreFormatError(f"op {op_name}: bucket from M={lo} takes {names}, the first bucket {data} "
                                       "(buckets may differ only by trailing scratch arguments)")

    def kernel_for(self, m: int) -> Kernel:
        i = bisect.bisect_left(self._hi, m)
        if m < 1 or i == len(self._buckets):
            raise ArgumentError(
                f"{self.name}: token count M={m} is outside the manifest's buckets [1, {self.max_m}] "
                f"(manifest {self.spec['manifest']!r}: extend the last bucket of this op)"
            )
        return self._buckets[i][2]

    def __call__(self, *args: Any, check: bool | str = True) -> None:
        # The hot path of every eager call: kept flat (one bisect, one quick check, one call);
        # the same rules as Kernel.__call__, which serves check="full" and direct kernel use.
        try:
            m = args[self._m_arg].shape[self._m_dim]
        except (AttributeError, IndexError, TypeError):
            self._buckets[0][2].validator(args)  # names the argument that is not a fitting tensor
            raise
        kern = self.kernel_for(m)
        if len(args) != len(kern.validator.args):
            raise ArgumentError(
                f"{self.name}: expected {len(kern.validator.args)} arguments at M={m} "
                f"({', '.join(a.name for a in kern.validator.args)}), got {len(args)}"
            )
        if check is True:
            kern.validator.quick(args, m)
            try:
                kern.fn(*args)
            except (TypeError, ValueError) as e:  # tvm-ffi's argument checks; nothing was launched
                kern.validator(args)
                raise ArgumentError(f"{kern.record['symbol']}: {e}") from e
        elif not check:
            kern.fn(*args)
        else:
            kern(*args, check=check)

    def kernels(self) -> list[Kernel]:
        return [k for _, _, k in self._buckets]

    def bucket_edges(self) -> list[tuple[int, int]]:
        """(lo, hi) token counts of each bucket, in order."""
        return [(lo, hi) for lo, hi, _ in self._buckets]

    def scratch(self, m: int) -> list[tuple[str, tuple[int, ...], Any]]:
        """(name, shape, torch dtype) of the scratch arguments (Arg.scratch: caller-owned,
        allocated once; always the trailing arguments) of the kernel serving token count m."""
        v = self.kernel_for(m).validator
        return [(a.name, v.shape_of(i, m), v.dtypes[i]) for i, a in enumerate(v.args) if a.scratch]

    def empty(self, name: str, m: int, device: Any = "cuda") -> Any:
        """An uninitialised tensor for argument `name` at token count m (shape from the signature,
        e.g. the round_up(M, 128) rows of swizzled scales). Allocate outside the hot path."""
        import torch

        v = self.kernel_for(m).validator
        i = next((i for i, a in enumerate(v.args) if a.name == name), None)
        if i is None:
            raise ArgumentError(f"{self.name}: no argument {name!r} (arguments: {[a.name for a in v.args]})")
        return torch.empty(v.shape_of(i, m), dtype=v.dtypes[i], device=device)


class ArtifactStore:
    def __init__(self, root: Path, index: StoreIndex, arch: str, kernels: dict[str, Kernel], ops: dict[str, Op]):
        self.root = root
        self.index = index
        self.arch = arch
        self.kernels = kernels
        self.ops = ops
        self._prime_lock = threading.Lock()

    def op(self, family: str, **problem: Any) -> Op:
        name = op_id(family, problem)
        if name not in self.ops:
            known = sorted(n for n in self.ops if n.startswith(family + ".") or n == family)
            raise MissingVariantError(
                f"no variant for {name} on {self.arch} in {self.root}. Add to a manifest:\n"
                f"  [[op]]\n  family = {family!r}\n  archs = [{self.arch!r}]\n"
                f"  problem = {{ {', '.join(f'{k} = {v!r}' for k, v in sorted(problem.items()))} }}\n"
                f"then run `nvfp4-build compile`. Ops of this family present: {known or 'none'}"
            )
        return self.ops[name]

    def prime(self, device: Any = None) -> int:
        """Call each loaded kernel once, eagerly, on zero-filled tensors of its signature at
        M = 1: the first call of an exported function loads its CUDA module, which must never
        happen inside a graph capture. Zeros are valid input for every family here (indices 0,
        empty groups, zero scales); kernels accept any M in range, buckets only route."""
        import torch

        n = 0
        with self._prime_lock:
            for kern in self.kernels.values():
                if not kern.primed:
                    kern(*kern.validator.zeros(1, device or torch.device("cuda")))
                    kern.primed = True
                    n += 1
            torch.cuda.synchronize()
        return n


def _device_arch(device: Any) -> str:
    import torch

    if not torch.cuda.is_available():
        raise ArchMismatchError("no CUDA device is visible; pass arch= to open the store for inspection only")
    return arch_of_capability(*torch.cuda.get_device_capability(device))


def _check_abi(rec: EntryRecord, tvm_version: str, dsl_ver: str | None, dsl_lib: Path | None) -> None:
    if rec["tvm_ffi_version"] != tvm_version:
        raise AbiMismatchError(
            f"entry {rec['key']} was built against apache-tvm-ffi {rec['tvm_ffi_version']}, "
            f"installed is {tvm_version}: rebuild the artifacts or install the matching version"
        )
    if dsl_ver is not None:
        if rec["dsl_version"] != dsl_ver:
            raise AbiMismatchError(
                f"entry {rec['key']} was built with nvidia-cutlass-dsl {rec['dsl_version']}, the installed "
                f"DSL runtime is {dsl_ver}: rebuild the artifacts or install the matching version"
            )
    elif dsl_lib is not None and native.dsl_runtime_fingerprint(str(dsl_lib)) != rec["dsl_runtime_fingerprint"]:
        raise AbiMismatchError(
            f"entry {rec['key']}: {dsl_lib} is not the DSL runtime library it was built against "
            f"(nvidia-cutlass-dsl {rec['dsl_version']}; its fingerprint differs)"
        )


def open_store(
    root: os.PathLike | str,
    *,
    device: Any = None,
    arch: str | None = None,
    manifest: str | None = None,
    load: bool = True,
) -> ArtifactStore:
    """Verify and open an artifact directory, or an installed store by name (runtime.installed),
    for the device's arch (or `arch`, e.g. for tests).

    With load=False nothing native is loaded (inspection on a machine without the DSL runtime).
    """
    root, package = installed.resolve(root)
    index = load_index(root)
    records = index.entries
    for rec in records.values():
        try:
            check_entry(root, rec)
        except OSError as e:
            raise TamperedArtifactError(f"{entry_dir(root, rec.key)}: unreadable: {e}") from e
    installed.check_package(root, index.digest, package)
    target = arch or _device_arch(device)
    if arch is not None and load and _device_available():
        dev_arch = _device_arch(device)
        if dev_arch != arch:
            raise ArchMismatchError(f"arch {arch} requested but the device is {dev_arch}: launching would fail")
    present = sorted({r.arch for r in records.values()})
    mine = {k: r for k, r in records.items() if r.arch == target}
    if not mine:
        raise ArchMismatchError(
            f"{root} holds kernels for {present or 'no arch'}, none for this device ({target}); "
            f"build the manifest with --arch {target}"
        )
    if load:
        dsl_lib = native.preload()
        tvm_version, dsl_ver = native.tvm_ffi_version(), native.dsl_version()
        for rec in mine.values():
            _check_abi(rec, tvm_version, dsl_ver, dsl_lib)
    kernels = {k: _make_kernel(root, r, load) for k, r in mine.items()}
    ops = _build_ops(index, target, kernels, manifest)
    return ArtifactStore(root, index, target, kernels, ops)


def _device_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _make_kernel(root: Path, rec: EntryRecord, load: bool) -> Kernel:
    path = entry_dir(root, rec.key) / LIB_NAME
    kern = Kernel(rec, path, CallValidator(rec.symbol, Signature.from_json(rec.signature)))
    if load:
        import tvm_ffi

        try:  # rec.symbol names rec.key (checked by the schema): the module must export it
            kern.fn = tvm_ffi.load_module(str(path))[rec.symbol]
        except Exception as e:
            raise TamperedArtifactError(f"{path}: cannot load exported function {rec.symbol!r}: {e}") from e
    return kern


def _build_ops(index: StoreIndex, arch: str, kernels: dict[str, Kernel], manifest: str | None) -> dict[str, Op]:
    manifests = index.manifests
    if manifest is not None:
        if manifest not in manifests:
            raise MissingVariantError(f"manifest {manifest!r} was not built into this store (built: {sorted(manifests)})")
        manifests = {manifest: manifests[manifest]}
    if conflicts := op_conflicts(manifests, arch):
        name, first, other = conflicts[0]
        raise MissingVariantError(
            f"op {name} is defined differently by manifests {first!r} and {other!r}; "
            f"open the store with manifest=... to pick one"
        )
    ops: dict[str, Op] = {}
    for mname, m in sorted(manifests.items()):
        for name, spec in m.ops.items():
            rows = [(b.lo, b.hi, b.variants.get(arch)) for b in spec.buckets]
            if any(key is None for *_, key in rows):
                continue  # this op is not built for this arch
            missing = [key for *_, key in rows if key not in kernels]
            if missing:
                raise StoreFormatError(f"manifest {mname}: op {name} refers to entries {missing} absent from the index")
            buckets = [(lo, hi, kernels[key]) for lo, hi, key in rows]
            ops[name] = Op(name, {**spec.to_json(), "manifest": mname}, buckets)
    return ops
