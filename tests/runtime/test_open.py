"""Runtime on the CPU box: verification and refusals happen at open, before any launch."""

import json
import shutil

import pytest
import torch
from conftest import tamper_lib

from nvfp4_aot.kernels.family import Arg, Signature
from nvfp4_aot.runtime import (
    AbiMismatchError,
    ArchMismatchError,
    ArgumentError,
    MissingVariantError,
    StoreFormatError,
    TamperedArtifactError,
    native,
    open_store,
)
from nvfp4_aot.runtime.store_format import ENTRIES_DIR, INDEX_NAME
from nvfp4_aot.runtime.validate import CallValidator


def _index(store):
    return json.loads((store / INDEX_NAME).read_text())


def test_open_dispatches_by_bucket(built_store):
    s = open_store(built_store, arch="sm_90a", load=False)
    op = s.op("test_scale", n=64, alpha=2.0)
    k_small, k_big = op.kernel_for(1), op.kernel_for(17)
    assert k_small is op.kernel_for(16) and k_big is op.kernel_for(4096) and k_small is not k_big
    assert k_small.record["params"]["threads"] == 64 and k_big.record["params"]["threads"] == 128
    assert all(k.record["arch"] == "sm_90a" for k in s.kernels.values())
    with pytest.raises(ArgumentError, match=r"M=4097 is outside the manifest's buckets \[1, 4096\]"):
        op.kernel_for(4097)
    with pytest.raises(ArgumentError, match="M=0"):
        op.kernel_for(0)


def test_missing_variant_names_the_manifest_entry_to_add(built_store):
    s = open_store(built_store, arch="sm_90a", load=False)
    with pytest.raises(MissingVariantError) as e:
        s.op("test_scale", n=96, alpha=2.0)
    msg = str(e.value)
    assert "no variant for test_scale.alpha=2.0.n=96 on sm_90a" in msg
    assert "family = 'test_scale'" in msg and "problem = { alpha = 2.0, n = 96 }" in msg


def test_flipped_byte_refused_at_open(store_copy):
    key = tamper_lib(store_copy, which=-1, at=100, mask=0x40)
    with pytest.raises(TamperedArtifactError, match=f"{key}.*sha256 does not match"):
        open_store(store_copy, arch="sm_90a", load=False)


def test_missing_file_and_bad_index_refused(store_copy):
    key = sorted(_index(store_copy)["entries"])[0]
    shutil.rmtree(store_copy / ENTRIES_DIR / key)
    with pytest.raises(TamperedArtifactError, match="listed in the index but missing"):
        open_store(store_copy, arch="sm_90a", load=False)
    (store_copy / INDEX_NAME).write_text("{not json")
    with pytest.raises(StoreFormatError, match="unreadable index"):
        open_store(store_copy, arch="sm_90a", load=False)
    with pytest.raises(StoreFormatError, match="no such artifact directory"):
        open_store(store_copy / "nope", arch="sm_90a", load=False)


def test_mislabelled_arch_refused_by_the_key(store_copy):
    idx = _index(store_copy)
    key, rec = next((k, r) for k, r in idx["entries"].items() if r["arch"] == "sm_100a")
    rec["arch"] = "sm_90a"  # index lies about the arch: the key is no longer the one its fields give
    (store_copy / INDEX_NAME).write_text(json.dumps(idx))
    with pytest.raises(StoreFormatError, match=rf"entries.{key}.key: does not match the record's own fields"):
        open_store(store_copy, arch="sm_90a", load=False)


@pytest.fixture
def fake_device(monkeypatch):
    """Inject a CUDA device of a given compute capability into torch.cuda."""

    def set_cap(major, minor):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))

    return set_cap


def test_arch_refusal_with_injected_device(built_store, fake_device):
    fake_device(8, 0)
    with pytest.raises(ArchMismatchError, match=r"holds kernels for \['sm_100a', 'sm_90a'\], none for this device \(sm_80a\)"):
        open_store(built_store)
    fake_device(9, 0)
    with pytest.raises(ArchMismatchError, match="arch sm_100a requested but the device is sm_90a"):
        open_store(built_store, arch="sm_100a")
    s = open_store(built_store)  # the Hopper entries of a two-arch store load on Hopper
    assert s.arch == "sm_90a" and len(s.kernels) == 4


def test_abi_mismatch_refused(built_store, monkeypatch):
    monkeypatch.setattr(native, "tvm_ffi_version", lambda: "0.1.99")
    with pytest.raises(AbiMismatchError, match="apache-tvm-ffi 0.1.11, installed is 0.1.99"):
        open_store(built_store, arch="sm_90a")
    monkeypatch.undo()
    monkeypatch.setattr(native, "dsl_version", lambda: "4.9.0")
    with pytest.raises(AbiMismatchError, match="nvidia-cutlass-dsl 4.8.0, the installed DSL runtime is 4.9.0"):
        open_store(built_store, arch="sm_90a")


def test_abi_checked_by_library_hash_without_package_metadata(built_store, monkeypatch, tmp_path):
    # The serving container may carry only libcute_dsl_runtime.so (no dist metadata): then the
    # library's sha256 must equal the one recorded at build time.
    other = tmp_path / "libcute_dsl_runtime.so"
    other.write_bytes(native.find_dsl_runtime().read_bytes() + b"\0")
    monkeypatch.setattr(native, "dsl_version", lambda: None)
    monkeypatch.setenv(native.DSL_RUNTIME_ENV, str(other))
    monkeypatch.setattr(native, "preload", lambda: other)
    with pytest.raises(AbiMismatchError, match="not the DSL runtime library it was built against"):
        open_store(built_store, arch="sm_90a")


def test_loaded_kernels_reject_cpu_tensors_before_launch(built_store):
    s = open_store(built_store, arch="sm_90a")  # loads every sm_90a module through tvm_ffi
    op = s.op("test_scale", n=64, alpha=2.0)
    assert all(k.fn is not None for k in s.kernels.values())
    with pytest.raises(ArgumentError, match="argument #0 'x': must be on a CUDA device"):
        op(torch.randn(3, 64), torch.empty(3, 64))


SIG = Signature(
    (
        Arg("x", "bfloat16", ("M", "K")),
        Arg("gs", "float32", (1,), align=4),
        Arg("sf", "uint8", ("round_up(M, 128)", "K // 16"), align=4, output=True),
    ),
    static={"K": 64},
)


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda a: a.__setitem__(0, a[0].float()), "'x': dtype float32, expected bfloat16"),
        (lambda a: a.__setitem__(2, torch.zeros(3, 4, dtype=torch.uint8)), r"'sf': shape \(3, 4\), expected \(128, 4\)"),
        (lambda a: a.__setitem__(0, torch.zeros(64, 3, dtype=torch.bfloat16).t()), "'x': must be contiguous"),
        (lambda a: a.__setitem__(1, torch.zeros(2, dtype=torch.float32)), r"'gs': shape \(2,\), expected \(1,\)"),
        (lambda a: a.__setitem__(0, torch.zeros(3, 65, dtype=torch.bfloat16)[:, 1:]), "'x': must be contiguous"),
        (lambda a: a.__setitem__(0, torch.zeros(3 * 64 + 1, dtype=torch.bfloat16)[1:].view(3, 64)), "not 16-byte aligned"),
        (lambda a: a.__setitem__(1, 1.0), "'gs': expected a torch.Tensor, got float"),
        (lambda a: a.pop(), "expected 3 arguments"),
    ],
)
def test_validator_names_the_argument(mutate, needle):
    v = CallValidator("sym", SIG, device_type="cpu")
    args = [torch.zeros(3, 64, dtype=torch.bfloat16), torch.ones(1), torch.zeros(128, 4, dtype=torch.uint8)]
    v(args)  # the well-formed call passes
    mutate(args)
    with pytest.raises(ArgumentError, match=needle):
        v(args)


def test_op_empty_allocates_signature_shapes(built_store):
    s = open_store(built_store, arch="sm_90a", load=False)
    op = s.op("test_scale", n=64, alpha=2.0)
    t = op.empty("y", 5, device="cpu")
    assert t.shape == (5, 64) and t.dtype == torch.float32
    with pytest.raises(ArgumentError, match="no argument 'z'"):
        op.empty("z", 5, device="cpu")


def test_quick_check_catches_what_the_kernel_cannot():
    # Derived dims (round_up(M, 128)) are checked in Python on every call;
    # the rest is left to the exported function's own decoding, then named by the full check.
    v = CallValidator("sym", SIG, device_type="cpu")
    good = [torch.zeros(3, 64, dtype=torch.bfloat16), torch.ones(1), torch.zeros(128, 4, dtype=torch.uint8)]
    v.quick(good)
    with pytest.raises(ArgumentError, match=r"'sf': shape \(3, 4\), expected \(128, 4\)"):
        v.quick([*good[:2], torch.zeros(3, 4, dtype=torch.uint8)])
    # alignment, dtype, strides, device: left to the exported function (checked on a GPU in
    # tests/gpu: the refusal happens before the launch and the full check names the argument)
    v.quick([torch.zeros(3 * 64 + 1, dtype=torch.bfloat16)[1:].view(3, 64), *good[1:]])
    z = v.zeros(5, "cpu")
    assert [t.shape for t in z] == [(5, 64), (1,), (128, 4)] and all(not t.any() for t in z)
    with pytest.raises(ArgumentError, match="expected 3 arguments"):
        v.quick(good[:2])


def test_op_hot_path_dispatches_checks_and_names_native_refusals():
    from nvfp4_aot.runtime.store import Kernel, Op

    calls = []

    def fn(*args):  # stands in for the exported function: refuses a float16 x like tvm-ffi does
        if args[0].dtype != torch.bfloat16:
            raise ValueError("Mismatched Tensor on argument #0")
        calls.append(args[0].shape[0])

    kerns = [Kernel({"key": n, "symbol": n}, None, CallValidator(n, SIG, device_type="cpu"), fn=fn) for n in ("a", "b")]
    op = Op("op", {"manifest": "m"}, [(1, 128, kerns[0]), (129, 256, kerns[1])])
    for m in (1, 128, 129, 1, 129):  # the per-M cache of derived dims follows M
        op(torch.zeros(m, 64, dtype=torch.bfloat16), torch.ones(1), torch.zeros(-(-m // 128) * 128, 4, dtype=torch.uint8))
    assert calls == [1, 128, 129, 1, 129]
    with pytest.raises(ArgumentError, match=r"'sf': shape \(128, 4\), expected \(256, 4\)"):
        op(torch.zeros(129, 64, dtype=torch.bfloat16), torch.ones(1), torch.zeros(128, 4, dtype=torch.uint8))
    with pytest.raises(ArgumentError, match="'x': dtype float16, expected bfloat16"):  # native refusal, named by us
        op(torch.zeros(2, 64, dtype=torch.float16), torch.ones(1), torch.zeros(128, 4, dtype=torch.uint8))
    with pytest.raises(ArgumentError, match="'x': expected a torch.Tensor, got list"):
        op([1, 2], torch.ones(1), torch.zeros(128, 4, dtype=torch.uint8))
    with pytest.raises(ArgumentError, match="expected 3 arguments"):
        op(torch.zeros(2, 64, dtype=torch.bfloat16))
    assert calls == [1, 128, 129, 1, 129]  # nothing reached the kernel


def test_op_buckets_may_differ_only_by_trailing_scratch():
    """An op's buckets share their data arguments; a bucket may add trailing scratch ones (quack's
    split-K flags + workspace), and a call is checked against the arity of its own bucket."""
    from pathlib import Path

    from nvfp4_aot.runtime.store import Kernel, Op
    from nvfp4_aot.runtime.store_format import StoreFormatError

    x, out = Arg("x", "bfloat16", ("M", "K")), Arg("out", "bfloat16", ("M", "K"), output=True)
    flags = Arg("flags", "int32", ("cdiv(M, 64)",), align=4, scratch=True)

    def kern(*args):
        return Kernel({"key": "k", "symbol": "s"}, Path("x"), CallValidator("s", Signature(args, {"K": 64}), device_type="cpu"))

    op = Op("fam.k=64", {"manifest": "m"}, [(1, 32, kern(x, out)), (33, 256, kern(x, out, flags))])
    assert op.scratch(32) == [] and op.scratch(100) == [("flags", (2,), torch.int32)]
    with pytest.raises(ArgumentError, match="expected 3 arguments at M=100"):
        op(torch.empty(100, 64, dtype=torch.bfloat16), torch.empty(100, 64, dtype=torch.bfloat16))
    for bad in ((x, flags, out), (out, x, flags), (x, out, flags, Arg("y", "int32", (1,)))):
        with pytest.raises(StoreFormatError, match="only by trailing scratch"):
            Op("fam.k=64", {"manifest": "m"}, [(1, 32, kern(x, out)), (33, 256, kern(*bad))])
