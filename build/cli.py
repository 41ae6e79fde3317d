"""`nvfp4-build`: compile manifests into a verified artifact store, on a machine without a GPU.

Exit codes (all commands):
  0  success
  1  failure: a variant failed to compile, `verify` found an entry whose files do not match its
     record, or NVFP4_AOT_NO_BUILD=1 forbids building here
  2  usage error (bad option or argument; click's own code)
  3  invalid manifest (the message names file:line and key)
  4  the store directory is locked by another build and --lock-timeout expired
  5  the store is unreadable or malformed: index.json not valid JSON, a field of the wrong type
     or unknown to this format, a key that is not the one its record gives, a digest that does
     not match, a symlink inside the store (the message names the file and the field)
  6  `plan`: the checkpoint (config.json included) is unreadable, malformed, inconsistent with
     its config, or holds no NVFP4 GEMM; options that do not fit the checkpoint (an --ep-size
     that does not divide the experts, an --ep-rank out of range) are usage errors (2)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from nvfp4_aot.runtime.store_format import NO_BUILD_ENV
from nvfp4_aot.runtime.word_order import WORD_ORDERS

EXIT_FAILED, EXIT_USAGE, EXIT_MANIFEST, EXIT_LOCKED, EXIT_STORE, EXIT_CHECKPOINT = 1, 2, 3, 4, 5, 6

# Options defined once and shared by the commands that take them.
out_option = click.option(
    "-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts"),
    show_default=True, help="Artifact directory.",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
manifests_argument = click.argument("manifests", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))


def _fail(code: int, msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


def _load(paths: tuple[Path, ...]):
    from .manifest import ManifestError, default_manifest_path, load_manifest

    try:
        return [load_manifest(p) for p in (paths or (default_manifest_path(),))]
    except ManifestError as e:
        _fail(EXIT_MANIFEST, str(e))


def _emit(as_json: bool, payload: dict[str, Any]) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=1, sort_keys=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nvfp4-aot")
def main() -> None:
    """Build CuTe DSL kernels ahead of time into a content-addressed artifact store."""


@main.command("compile")
@manifests_argument
@out_option
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True, help="Parallel compile processes.")
@click.option("--lock-timeout", type=float, default=-1, help="Seconds to wait for another build's lock (-1: forever).")
@click.option("--shard", "shard", default=None, callback=lambda c, p, v: _shard(v), help="Build only shard I of N (e.g. 2/4), partitioned by content key; combine with `merge`.")
@click.option("--arch", "only_archs", default=None, callback=lambda c, p, v: v and _arch_list(c, p, v), help="Build only these archs' variants (comma-separated; a shard job's arch).")
@json_option
def compile_cmd(manifests: tuple[Path, ...], out: Path, jobs: int, lock_timeout: float, shard, only_archs, as_json: bool) -> None:
    """Compile MANIFESTS (default: the packaged default manifest) into --out.

    Variants whose content key is already in the store are skipped. With --shard/--arch only a
    part is built and the dispatch tables go to shard.json, for `nvfp4-build merge`.
    """
    from rich.progress import Progress

    from nvfp4_aot.runtime.store_format import StoreFormatError

    from .keys import variant_key
    from .shard import selector, write_pending_tables
    from .store_writer import LockBusyError, StoreWriter, manifest_table
    from .worker import BuildFailure

    if os.environ.get(NO_BUILD_ENV, "") not in ("", "0"):
        _fail(EXIT_FAILED, f"{NO_BUILD_ENV} is set: building is disabled on this machine (production mode)")
    loaded = _load(manifests)
    summary: dict[str, Any] = {"out": str(out), "manifests": {}}
    select = selector(shard, only_archs)
    if select is not None:
        summary.update(shard=str(shard) if shard else None, archs=list(only_archs or ()))
    failed = False
    console_err = not as_json
    try:
        with StoreWriter(out, lock_timeout, on_wait=lambda m: click.echo(m, err=True)) as w:
            for man in loaded:
                n = len([v for v in man.variants() if select is None or select(v, variant_key(v))])
                with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
                    task = bar.add_task(f"{man.name}", total=n)

                    def tick(arch: str, rec) -> None:
                        bar.advance(task)
                        if isinstance(rec, BuildFailure):
                            click.echo(f"FAILED {rec.key} ({arch}): {rec.error}", err=True)

                    rep = w.build(man, jobs=jobs, progress=tick, select=select)
                failed |= bool(rep.failed)
                if select is not None and not rep.failed:
                    keys = {v.ident: variant_key(v) for v in man.variants()}
                    write_pending_tables(out, {man.name: manifest_table(man, keys)}, shard, only_archs)
                summary["manifests"][man.name] = {
                    "variants": n,
                    "built": [r.key for r in rep.built],
                    "skipped": len(rep.skipped),
                    "failed": [{"key": r.key, "error": r.error} for r in rep.failed],
                    "cleaned": rep.cleaned,
                    "seconds": rep.seconds,
                    "compile_seconds": round(sum(r.compile_seconds for r in rep.built), 3),
                }
                if console_err:
                    click.echo(
                        f"{man.name}: {n} variants, built {len(rep.built)}, skipped {len(rep.skipped)}, "
                        f"failed {len(rep.failed)} in {rep.seconds:.1f}s -> {out}",
                        err=True,
                    )
    except LockBusyError as e:
        _fail(EXIT_LOCKED, str(e))
    except StoreFormatError as e:
        _fail(EXIT_STORE, f"{e}; remove the directory or pick another --out")
    except OSError as e:
        _fail(EXIT_STORE, f"{out}: {e}")
    summary["conflicts"] = _conflicts(out)
    for c in summary["conflicts"]:
        if console_err:
            click.echo(f"warning: op {c['op']} ({c['arch']}) is defined differently by manifests "
                       f"{c['manifests'][0]!r} and {c['manifests'][1]!r}: open_store() refuses this store "
                       f"without manifest=...; give the op one definition (or build into separate stores)", err=True)  # fmt: skip
    _emit(as_json, summary)
    sys.exit(EXIT_FAILED if failed else 0)


def _conflicts(out: Path) -> list[dict[str, Any]]:
    """The ops two manifests of the store define differently (store_format.op_conflicts), per arch."""
    from nvfp4_aot.runtime.store_format import StoreFormatError, load_index, op_conflicts

    try:
        index = load_index(out)
    except (StoreFormatError, OSError):  # no committed index (nothing built) or a bad one (open reports it)
        return []
    archs = sorted({r.arch for r in index.entries.values()})
    return [{"op": op, "arch": a, "manifests": [m1, m2]} for a in archs for op, m1, m2 in op_conflicts(index.manifests, a)]


@main.command("ls")
@click.argument("store", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts"))
@json_option
def ls_cmd(store: Path, as_json: bool) -> None:
    """List the entries and ops of STORE (and its digest)."""
    from nvfp4_aot.runtime.store_format import StoreFormatError, load_index

    try:
        index = load_index(_resolve_store(store, fail=False))
    except (StoreFormatError, OSError) as e:
        _fail(EXIT_STORE, str(e))
    if as_json:
        _emit(True, index.to_json())
        return
    for key, r in sorted(index.entries.items(), key=lambda kv: (kv[1].family, kv[1].arch, str(kv[1].params))):
        params = " ".join(f"{k}={v}" for k, v in sorted(r.params.items()))
        click.echo(f"{key}  {r.arch:8} {r.family:20} {params}  {r.size // 1024} KiB  {r.compile_seconds:.1f}s")
    for mname, m in sorted(index.manifests.items()):
        click.echo(f"manifest {mname}: {len(m.ops)} ops")
        for op, spec in sorted(m.ops.items()):
            click.echo(f"  {op}: " + ", ".join(f"M {b.lo}-{b.hi}" for b in spec.buckets))
    click.echo(f"digest {index.digest}")


@main.command("verify")
@click.argument("store", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts"))
@click.option("--load", is_flag=True, help="Also load every module through tvm_ffi (imports torch: ~1 s).")
@click.option("--run", is_flag=True, help="Also load and run every variant against its reference (needs a GPU).")
@click.option("--seed", type=int, default=None, help="Seed of the random inputs for --run (default: fresh).")
@json_option
def verify_cmd(store: Path, load: bool, run: bool, seed: int | None, as_json: bool) -> None:
    """Check STORE: index, hashes, archs, ABI, exported symbols; with --run, numerics on a GPU."""
    import secrets

    from .verify import run_store, verify_store

    store, package = _resolve_store(store, with_package=True)
    rep = verify_store(store, load=load or run)
    if rep.malformed:
        _fail(EXIT_STORE, rep.errors[0])
    if package and rep.digest != package["store_digest"]:  # an installed or unpacked package
        rep.errors.append(f"{store}: store digest {rep.digest} differs from its package's {package['store_digest']} (modified after packing)")
    if run and rep.ok:
        seed = secrets.randbelow(1 << 30) if seed is None else seed
        try:
            run_store(store, rep, seed)
        except Exception as e:  # a refusal (arch, ABI) is a verification failure
            rep.errors.append(f"{type(e).__name__}: {e}")
    for n in rep.notes:
        click.echo(f"note: {n}", err=True)
    for e in rep.errors:
        click.echo(f"error: {e}", err=True)
    if not as_json:
        click.echo(f"{store}: {rep.checked} entries checked, {rep.ran} runs, {len(rep.errors)} errors, digest {rep.digest}", err=True)
    _emit(as_json, {"ok": rep.ok, "checked": rep.checked, "ran": rep.ran, "errors": rep.errors, "notes": rep.notes,
                    "digest": rep.digest})  # fmt: skip
    sys.exit(0 if rep.ok else EXIT_FAILED)


@main.command("gc")
@manifests_argument
@out_option
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@json_option
def gc_cmd(manifests: tuple[Path, ...], out: Path, dry_run: bool, as_json: bool) -> None:
    """Remove entries of --out that none of MANIFESTS (default: the default manifest) references."""
    from .store_writer import StoreWriter

    from nvfp4_aot.runtime.store_format import StoreFormatError

    loaded = _load(manifests)
    try:
        with StoreWriter(out) as w:
            dropped = w.gc(loaded, dry_run=dry_run)
    except (StoreFormatError, OSError) as e:
        _fail(EXIT_STORE, str(e))
    if not as_json:
        for k in dropped:
            click.echo(f"{'would remove' if dry_run else 'removed'} {k}", err=True)
    _emit(as_json, {"removed": dropped, "dry_run": dry_run})


def _int_list(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(sorted({int(x) for x in value.replace(" ", "").split(",") if x}))
    except ValueError:
        raise click.BadParameter(f"expected a comma-separated list of token counts, got {value!r}") from None
    if not out or out[0] < 1:
        raise click.BadParameter(f"token counts must be positive, got {value!r}")
    return out


def _arch_list(ctx, param, value: str) -> tuple[str, ...]:
    from .manifest import ARCH_RE

    archs = tuple(dict.fromkeys(a for a in value.replace(" ", "").split(",") if a))
    bad = [a for a in archs if not ARCH_RE.fullmatch(a)]
    if not archs or bad:
        raise click.BadParameter(f"expected archs like sm_90a,sm_100a, got {value!r}")
    return archs


def _ep_rank(ctx, param, value: str) -> int | None:
    if value == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"expected a rank number or 'all', got {value!r}") from None


@main.command("plan")
@click.argument("checkpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option("--arch", "archs", default="sm_90a,sm_100a", show_default=True, callback=_arch_list, help="Comma-separated target archs.")
@click.option("--ep-size", type=click.IntRange(1), default=1, show_default=True, help="Expert-parallel ranks.")
@click.option("--ep-rank", default="all", show_default=True, callback=_ep_rank, help="The rank to plan for (R), or all.")
@click.option("--max-num-batched-tokens", "max_tokens", type=click.IntRange(1), default=8192, show_default=True, help="vLLM's max_num_batched_tokens.")
@click.option("--capture-sizes", callback=_int_list, help="CUDA-graph capture sizes, comma-separated [default: vLLM's up to --max-capture-size].")
@click.option("--max-capture-size", type=click.IntRange(1), default=512, show_default=True, help="vLLM's max_cudagraph_capture_size.")
@click.option("--word-order", type=click.Choice(WORD_ORDERS), default=None,
              help="sm_90a: one blob word order for both runners (runtime/word_order.py; rotq: Nvfp4Linear's only, MoERunner "
                   "keeps its own) [default: each runner's own: MoERunner rot, Nvfp4Linear nibble].")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Manifest file to write [default: stdout].")
@json_option
def plan_cmd(checkpoint: Path, archs, ep_size: int, ep_rank, max_tokens: int, capture_sizes, max_capture_size: int, word_order: str | None,
             out: Path | None, as_json: bool) -> None:
    """Plan the manifest for the NVFP4 checkpoint in CHECKPOINT (reads only config and safetensors headers).

    Plans what the runtime opens: on sm_90a Nvfp4Linear's ops per dense (N, K) and MoERunner's
    six ops per MoE shape (both as the runners declare them); on sm_100a MoERunner's block-scaled
    path per MoE shape and the dense block-scaled GEMMs with their activation quantizers. What no
    kernel family can run is listed on stderr and at the end of the manifest.
    """
    from nvfp4_aot.runtime.checkpoint import CheckpointError

    from .manifest import ManifestError, loads_manifest
    from .plan import PlanError, Settings, plan_checkpoint, render

    if as_json and out is None:
        _fail(EXIT_USAGE, "--json prints the summary on stdout: give the manifest a file with -o")
    settings = Settings(archs, ep_size, ep_rank, max_tokens, capture_sizes, max_capture_size, word_order)
    cmd = ["nvfp4-build plan CHECKPOINT_DIR", f"--arch {','.join(archs)}", f"--ep-size {ep_size}", f"--ep-rank {'all' if ep_rank is None else ep_rank}", f"--max-num-batched-tokens {max_tokens}"]
    cmd.append(f"--capture-sizes {','.join(map(str, capture_sizes))}" if capture_sizes else f"--max-capture-size {max_capture_size}")
    if word_order is not None:
        cmd.append(f"--word-order {word_order}")
    cmd.append(f"-o {out.name if out else '-'}")
    try:
        plan = plan_checkpoint(checkpoint, settings, " ".join(cmd))
    except CheckpointError as e:
        _fail(EXIT_CHECKPOINT, str(e))
    except PlanError as e:
        _fail(EXIT_USAGE, str(e))
    text = render(plan)
    try:  # the planned manifest must load exactly as `compile` will load it
        manifest = loads_manifest(text, out or Path(f"{plan.name}.toml"))
    except ManifestError as e:  # pragma: no cover (a planner bug)
        _fail(EXIT_MANIFEST, f"the planned manifest is invalid: {e}")
    if out is None:
        click.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text)
        tmp.replace(out)
    counts = plan.manifest.variant_counts()
    for u in plan.unsupported:
        click.echo(f"unsupported: {u}", err=True)
    for u in plan.served_by_vllm:
        click.echo(f"served by vLLM: {u}", err=True)
    click.echo(
        f"{plan.name}: {len(plan.manifest.ops)} ops, {len(manifest.variants())} variants ("
        + ", ".join(f"{a} {n}" for a, n in counts.items())
        + f"), {len(plan.unsupported)} unsupported -> {out or 'stdout'}",
        err=True,
    )
    _emit(as_json, {
        "manifest": str(out), "name": manifest.name, "variants": len(manifest.variants()), "per_arch": counts,
        "ops": [{"family": o.family, "problem": dict(o.problem), "archs": list(o.archs), "buckets": [[b.lo, b.hi] for b in o.buckets]} for o in plan.manifest.ops],
        "unsupported": plan.unsupported, "served_by_vllm": plan.served_by_vllm,
    })  # fmt: skip


@main.command("cache-key")
@manifests_argument
def cache_key_cmd(manifests: tuple[Path, ...]) -> None:
    """Print a key for a CI cache of the artifact dir: it changes iff any variant's content key does."""
    from .keys import cache_key, variant_key

    click.echo(cache_key(variant_key(v) for m in _load(manifests) for v in m.variants()))


# -- ship: shards, merge, packages (build/shard.py, build/pack.py) ------------------------------


def _resolve_store(store: Path, fail: bool = True, with_package: bool = False):
    """STORE arguments also take an installed store's name (runtime.installed): its directory
    (and, with_package, its package metadata or None)."""
    from nvfp4_aot.runtime.installed import resolve
    from nvfp4_aot.runtime.store_format import StoreFormatError

    try:
        root, package = resolve(store)
        return (root, package) if with_package else root
    except StoreFormatError as e:
        if fail:
            _fail(EXIT_STORE, str(e))
        raise


def _store_name(value: str) -> str:
    from nvfp4_aot.runtime.installed import NAME_RE

    if not NAME_RE.fullmatch(value):
        raise click.BadParameter(f"{value!r}: use 1-64 lowercase letters, digits and inner hyphens (e.g. dsv4-ep8)")
    return value


def _version(value: str | None) -> str | None:
    from .pack import VERSION_RE

    if value is not None and not VERSION_RE.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a PEP 440 version (e.g. 1.2.0 or 1.2.0+cu13)")
    return value


def _shard(value: str | None):
    from .shard import Shard

    if value is None:
        return None
    try:
        return Shard.parse(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@main.command("merge")
@click.argument("stores", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Store to merge into (created if absent).")
@click.option("--lock-timeout", type=float, default=-1, help="Seconds to wait for another writer's lock (-1: forever).")
@json_option
def merge_cmd(stores: tuple[Path, ...], out: Path, lock_timeout: float, as_json: bool) -> None:
    """Verify the shard STORES and merge them (with their dispatch tables) into --out.

    The same key in two stores must have identical records; a conflict, a store that does not
    verify, or a table whose variants are in no given store (a missing shard) is an error (exit 1).
    """
    from nvfp4_aot.runtime.store_format import StoreFormatError

    from .shard import MergeError, merge_stores
    from .store_writer import LockBusyError

    try:
        rep = merge_stores(list(stores), out, lock_timeout, on_wait=lambda m: click.echo(m, err=True))
    except MergeError as e:
        _fail(EXIT_FAILED, str(e))
    except LockBusyError as e:
        _fail(EXIT_LOCKED, str(e))
    except StoreFormatError as e:
        _fail(EXIT_STORE, str(e))
    if not as_json:
        click.echo(f"merged {len(stores)} stores: {len(rep.added)} entries added, {rep.present} already present, "
                   f"{rep.entries} in all, manifests {', '.join(rep.manifests) or 'none'} -> {out}", err=True)  # fmt: skip
    _emit(as_json, {"out": str(out), "sources": [str(s) for s in stores], "added": rep.added, "present": rep.present,
                    "entries": rep.entries, "manifests": rep.manifests, "cleaned": rep.cleaned, "seconds": rep.seconds})  # fmt: skip


@main.command("pack")
@click.argument("store", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--name", required=True, callback=lambda c, p, v: _store_name(v), help="Store name: the wheel is nvfp4-aot-store-NAME; open(NAME) finds it once installed.")
@click.option("--version", "version", default=None, callback=lambda c, p, v: _version(v), help="Package version [default: 0+d<digest prefix>, from the content].")
@click.option("--format", "fmt", type=click.Choice(["wheel", "tar"]), default="wheel", show_default=True, help="A pip-installable wheel, or a tarball for plain caches.")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"), show_default=True, help="Directory to write the package to.")
@json_option
def pack_cmd(store: Path, name: str, version: str | None, fmt: str, out: Path, as_json: bool) -> None:
    """Package the verified STORE reproducibly (same store, same bytes), with its digest and cache-key."""
    from nvfp4_aot.runtime.store_format import StoreFormatError

    from .pack import PackError, pack

    try:
        p = pack(store, name, out, version, fmt)
    except PackError as e:
        _fail(EXIT_FAILED, str(e))
    except StoreFormatError as e:
        _fail(EXIT_STORE, str(e))
    if not as_json:
        click.echo(f"{p.path}: {p.files} files, {p.bytes / 1e6:.1f} MB, store digest {p.store_digest[:16]}..., {p.cache_key}", err=True)
    _emit(as_json, {"path": str(p.path), "name": p.name, "version": p.version, "format": fmt, "store_digest": p.store_digest,
                    "cache_key": p.cache_key, "files": p.files, "bytes": p.bytes})  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    main()
