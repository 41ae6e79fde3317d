"""Runtime-side checks for a serving container (no build extra: no cutlass, click or rich).

    python -m nvfp4_aot.runtime verify NAME|DIR [--load] [--json]
    python -m nvfp4_aot.runtime stores [--json]

`verify` opens the store as a server would, for every arch it holds (index, each file's sha256
and embedded arch, dispatch tables, and an installed store's digest against its package
metadata); `--load` also loads the modules through tvm-ffi with the ABI checks (the device's
arch on a GPU machine, every arch without one). `nvfp4-build verify --run` (build side, GPU)
runs the kernels against their references. Exit codes as nvfp4-build: 0 ok, 1 verification
failed, 2 usage, 5 unreadable or malformed store.
"""

from __future__ import annotations

import argparse
import json
import sys

EXIT_FAILED, EXIT_STORE = 1, 5


def verify(spec: str, load: bool) -> dict:
    from .errors import Nvfp4AotError
    from .installed import resolve
    from .native import NativeLibraryError
    from .store import _device_available, open_store
    from .store_format import StoreFormatError, read_index

    out: dict = {"store": spec, "ok": False}
    try:
        root, package = resolve(spec)
        out["path"] = str(root)
        index = read_index(root)  # validated: schema, keys, symbols, tables, digest
        archs = sorted({r["arch"] for r in index["entries"].values()})
        out.update(archs=archs, entries=len(index["entries"]), store_digest=index["digest"])
        if package:
            out["package"] = {k: package[k] for k in ("name", "version", "cache_key") if k in package}
        for arch in archs:
            open_store(spec, arch=arch, load=False)
        if load:
            if _device_available():
                out["loaded"] = len(open_store(spec).kernels)
            else:
                out["loaded"] = sum(len(open_store(spec, arch=a).kernels) for a in archs)
    except StoreFormatError as e:  # includes TamperedArtifactError
        out["error"], out["exit"] = f"{type(e).__name__}: {e}", EXIT_STORE if type(e) is StoreFormatError else EXIT_FAILED
        return out
    except (Nvfp4AotError, NativeLibraryError) as e:
        out["error"], out["exit"] = f"{type(e).__name__}: {e}", EXIT_FAILED
        return out
    out["ok"], out["exit"] = True, 0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nvfp4_aot.runtime", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check a store directory or an installed store by name")
    v.add_argument("store", help="store directory or installed store name")
    v.add_argument("--load", action="store_true", help="also load every module through tvm-ffi (ABI checks)")
    v.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    s = sub.add_parser("stores", help="list the installed store packages")
    s.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "stores":
        from .installed import installed_stores, resolve

        found = {name: str(resolve(name)[0]) for name in sorted(installed_stores())}
        print(json.dumps(found, indent=1) if a.json else "\n".join(f"{n}  {p}" for n, p in found.items()) or "no installed stores")
        return 0
    res = verify(a.store, a.load)
    if a.json:
        print(json.dumps(res, indent=1, sort_keys=True))
    if res["ok"]:
        pkg = f" (package {res['package']['name']} {res['package']['version']})" if "package" in res else ""
        print(f"{a.store}: ok, {res['entries']} entries for {', '.join(res['archs'])}{pkg}, "
              f"store digest {res['store_digest'][:16]}..., {res.get('loaded', 0)} loaded", file=sys.stderr)  # fmt: skip
    else:
        print(f"error: {res['error']}", file=sys.stderr)
    return res["exit"]


if __name__ == "__main__":
    sys.exit(main())
