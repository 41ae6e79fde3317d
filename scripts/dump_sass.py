"""Cut the cubins out of a store's kernel .so files and disassemble them with nvdisasm
(present on the GPU machine). Writes one .sass file per entry under OUT_DIR and prints, per
entry, registers/local-memory evidence: registers per thread (store_format.cubin_registers), LDL/STL counts
(local memory) and wide global ops."""

import re
import subprocess
import sys
from pathlib import Path

from nvfp4_aot.runtime.store_format import cubin_registers, embedded_cubins, read_index


PATTERNS = {
    "LDL": r"\bLDL\b",
    "STL": r"\bSTL\b",
    "LDG.128": r"LDG\.E(\.\w+)*\.128",
    "LDGSTS.128": r"LDGSTS\.E(\.\w+)*\.128",
    "STG.128": r"STG\.E(\.\w+)*\.128",
    "HGMMA": r"HGMMA",
    "UTCMMA": r"UTC\w*MMA",
}


def disassemble(cubin: Path) -> tuple[str, int]:
    """(SASS text, return code) of a standalone cubin: nvdisasm, or cuobjdump where older tools refuse it."""
    r = subprocess.run(["nvdisasm", "-c", str(cubin)], capture_output=True, text=True)
    if r.returncode:  # older tools: cuobjdump reads standalone cubins too
        r = subprocess.run(["cuobjdump", "--dump-sass", str(cubin)], capture_output=True, text=True)
    return r.stdout + r.stderr, r.returncode


def main(store: str, out_dir: str, limit_per_family: int = 2) -> None:
    root, out = Path(store), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = read_index(root)
    seen: dict[tuple, int] = {}
    for key, rec in sorted(index["entries"].items(), key=lambda kv: (kv[1]["family"], kv[1]["arch"])):
        tag = (rec["family"], rec["arch"])
        if seen.get(tag, 0) >= limit_per_family:
            continue
        seen[tag] = seen.get(tag, 0) + 1
        for arch, img in embedded_cubins((root / "entries" / key / "kernel.so").read_bytes()):
            cubin = out / f"{rec['family']}-{arch}-{key[:8]}.cubin"
            cubin.write_bytes(img)
            sass, rc = disassemble(cubin)
            (out / f"{cubin.stem}.sass").write_text(sass)
            cubin.unlink()
            params = " ".join(f"{k}={v}" for k, v in sorted(rec["params"].items()))
            counts = {name: len(re.findall(pat, sass)) for name, pat in PATTERNS.items()}
            regs = ",".join(str(v) for v in cubin_registers(img).values())
            print(f"{rec['family']:20} {arch:8} {params:50} regs={regs} " + " ".join(f"{n}={c}" for n, c in counts.items())
                  + f" rc={rc}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:4]))  # [LIMIT_PER_FAMILY]
