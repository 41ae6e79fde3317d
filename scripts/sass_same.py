"""Do two stores hold the same machine code? Every entry of each store is matched by (family, params; those at
their dataclass default dropped, as a knob older stores lack) and its cubin disassembled (nvdisasm >= 13.4 on
PATH, as for scripts/dump_sass.py), addresses stripped; prints how many entries have identical instruction streams and
names the others. Used when a source edit moves a family's keys without meaning to change its code (a
docstring, a refactor): the GPU results of the old keys then still describe the new ones
(docs/PERFORMANCE.md "session 25").

    python scripts/sass_same.py OLD_STORE NEW_STORE   (exit 1 when any entry differs or is unmatched, 2 on a bad store)"""

import functools
import json
import re
import sys
import tempfile
from dataclasses import MISSING, fields
from pathlib import Path

from dump_sass import disassemble  # scripts/ is sys.path[0] when run as a script

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime.store_format import ENTRIES_DIR, StoreFormatError, embedded_cubins, read_index

ADDRESS = re.compile(r"/\*[0-9a-f]{4,}\*/")


@functools.cache
def _defaults(family: str) -> dict:
    """The family's params dataclass fields that have a default (name -> default)."""
    return {f.name: f.default for f in fields(get_family(family).params_type) if f.default is not MISSING}


def instructions(root: Path) -> dict[tuple[str, str], list[str]]:
    out = {}
    for key, rec in read_index(root)["entries"].items():
        # a knob at its default is dropped: an older store's entry (built before the knob, e.g. tail, sk, wpf) matches
        # it, and an entry with the knob set (tail 132, sk 1) stays its own
        defaults = _defaults(rec["family"])
        params = {k: v for k, v in rec["params"].items() if defaults.get(k, MISSING) != v}
        ((_, image),) = embedded_cubins((root / ENTRIES_DIR / key / "kernel.so").read_bytes())
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(image)
            f.flush()
            text, rc = disassemble(Path(f.name))
        if rc:
            raise SystemExit(f"{root}: entry {key}: the disassembler failed ({text.strip()[:200]})")
        out[(rec["family"], json.dumps(params, sort_keys=True))] = [ADDRESS.sub("", line).strip()
                                                                   for line in text.splitlines() if ADDRESS.search(line)]
    return out


def main(old: str, new: str) -> int:
    try:
        a, b = instructions(Path(old)), instructions(Path(new))
    except StoreFormatError as e:  # not a store, a torn index: one line, exit 2
        print(f"sass_same: {e}", file=sys.stderr)
        return 2
    same = [k for k in a.keys() & b.keys() if a[k] == b[k]]
    print(f"{len(same)} of {len(a)} / {len(b)} entries: identical SASS ({sum(len(v) for v in a.values())} instructions)")
    for k in sorted(a.keys() ^ b.keys()):
        print("UNMATCHED", *k)
    for k in sorted(k for k in a.keys() & b.keys() if a[k] != b[k]):
        print("DIFFERS", *k, len(a[k]), len(b[k]))
    return 0 if len(same) == len(a) == len(b) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
