"""Content keys: a variant's key changes exactly when its generated code could change.

key = sha256 of (store format, family, params, arch, compile options, nvidia-cutlass-dsl and
apache-tvm-ffi versions, the DSL runtime library's sha256, the family's source closure, and
for third-party kernels that package's version and sources). Each entry record carries these
values (store_format.KEY_FIELDS, the source closure as its digest `source`), and readers
recompute the key from them (store_format.content_key): a record cannot be relabelled.

The source closure of a family is its declared modules plus, transitively, every module of
this project (nvfp4_aot.*) or of the family's own top-level package that they import, read
from disk (never imported: kernel modules import cutlass). An edit to one family's files
changes that family's keys only.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime.store_format import content_key

from .manifest import Variant


def compile_options(arch: str) -> str:
    return f"--gpu-arch {arch} --enable-tvm-ffi"


def _imports(path: Path, modname: str, is_pkg: bool) -> Iterable[tuple[str, tuple[str, ...]]]:
    """(module, names imported from it) for every import statement, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = modname if is_pkg else modname.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name, ()) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            yield mod, tuple(a.name for a in node.names)


def _spec(name: str):
    """find_spec without importing anything but the parent packages (which never import cutlass
    or torch in this project: package __init__ modules keep those imports lazy)."""
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def source_closure(roots: Iterable[str], prefixes: tuple[str, ...]) -> dict[str, Path]:
    """Module name -> file for `roots` and every module under `prefixes` they import."""
    found: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        spec = _spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue  # a C extension or a namespace package
        path = Path(spec.origin)
        found[name] = path
        for mod, names in _imports(path, name, spec.submodule_search_locations is not None):
            if not mod.startswith(prefixes):
                continue
            todo.append(mod)
            # "from pkg import sub" names a submodule only if pkg is a package holding sub.py or
            # sub/; checked on disk so that importing a name from a module never runs that module.
            dep = _spec(mod) if names else None
            for d in (dep.submodule_search_locations or []) if dep else []:
                todo.extend(f"{mod}.{n}" for n in names if (Path(d) / f"{n}.py").exists() or (Path(d) / n).is_dir())
    return found


@lru_cache(maxsize=None)
def family_fingerprint(name: str) -> str:
    fam = get_family(name)
    roots = fam.modules or (type(fam).__module__,)
    prefixes = ("nvfp4_aot.",) + tuple({r.split(".")[0] + "." for r in roots})
    closure = source_closure(roots, prefixes)
    if not closure:
        raise ValueError(f"family {name}: no source files found for modules {roots}")
    h = hashlib.sha256()
    for mod in sorted(closure):
        h.update(mod.encode() + b"\0" + closure[mod].read_bytes() + b"\0")
    for dist in fam.third_party:
        h.update(third_party_fingerprint(dist).encode())
    return h.hexdigest()


@lru_cache(maxsize=None)
def third_party_fingerprint(dist: str) -> str:
    """Version plus a hash of every Python source file the distribution installed."""
    d = importlib.metadata.distribution(dist)
    h = hashlib.sha256(f"{dist}=={d.version}".encode())
    for f in sorted(d.files or [], key=str):
        if str(f).endswith(".py"):
            h.update(str(f).encode() + b"\0" + Path(d.locate_file(f)).read_bytes())
    return f"{dist}=={d.version}:{h.hexdigest()[:16]}"


@lru_cache(maxsize=None)
def toolchain() -> dict[str, str]:
    """Versions and library identity that enter every key (computed once per process)."""
    from nvfp4_aot.runtime import native

    lib = native.find_dsl_runtime()
    return {
        "dsl_version": importlib.metadata.version("nvidia-cutlass-dsl"),
        "tvm_ffi_version": importlib.metadata.version("apache-tvm-ffi"),
        "dsl_runtime_fingerprint": native.dsl_runtime_fingerprint(str(lib)),
    }


def key_material(v: Variant) -> dict[str, object]:
    """The values of store_format.KEY_FIELDS for a variant; its entry record carries the same
    values, from which the runtime recomputes the key (store_format.content_key)."""
    return {
        "family": v.family,
        "params": dict(v.params),
        "arch": v.arch,
        "options": compile_options(v.arch),
        "source": family_fingerprint(v.family),
        **toolchain(),
    }


def variant_key(v: Variant) -> str:
    return content_key(key_material(v))


def cache_key(keys: Iterable[str]) -> str:
    """A key for a CI cache of a store built from these content keys (changes iff one does)."""
    return "nvfp4-aot-" + hashlib.sha256("\n".join(sorted(set(keys))).encode()).hexdigest()[:32]
