"""Instruction mix of the innermost MMA loops of nvdisasm output (scripts/dump_sass.py writes the
.sass files): for every backward branch whose body holds an HGMMA or HMMA, the body's instruction
count, its MMAs and its mix by kind (uniform-datapath U*, integer ALU, half-precision FMA pipe,
shared loads, warpgroup syncs, mbarrier ops). Used on the CPU box to compare k-loops per weight
byte (docs/PERFORMANCE.md "session 7, wgdec").

    python scripts/sass_loops.py FILE.sass [...]"""

import re
import sys
from collections import Counter

INSN = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(\.[\w.]+)?")
LABEL = re.compile(r"^\s*(\.L_x_\d+):")
BRANCH = re.compile(r"\bBRA\s+`?\(?(\.L_x_\d+)")
KINDS = {
    "uniform": lambda op: op.startswith("U") and op not in ("UTMALDG",),
    "alu": lambda op: op in ("PRMT", "LOP3", "SHF", "IMAD", "IADD3", "VIADD", "ISETP", "SEL", "LEA", "MOV", "PLOP3",
                             "IABS", "I2F", "F2I", "IMNMX", "VIMNMX", "BMSK", "SGXT"),
    "fma_pipe": lambda op: op in ("HMUL2", "HFMA2", "HADD2", "FMUL", "FFMA", "FADD"),
    "lds": lambda op: op in ("LDS", "LDSM"),
    "mma": lambda op: op in ("HGMMA", "HMMA"),
    "wg_sync": lambda op: op in ("WARPGROUP", "WARPSYNC", "BAR"),
    "mbarrier": lambda op: op == "SYNCS",
}


def loops(lines: list[str]):
    """(label, body lines) of every backward branch whose body has an MMA, innermost first."""
    where = {}
    for i, line in enumerate(lines):
        m = LABEL.match(line)
        if m:
            where[m.group(1)] = i
    out = []
    for i, line in enumerate(lines):
        m = BRANCH.search(line)
        if m and m.group(1) in where and where[m.group(1)] < i:
            body = lines[where[m.group(1)]: i + 1]
            if any(re.search(r"\bH[G]?MMA\b", b) for b in body):
                out.append((m.group(1), body))
    return sorted(out, key=lambda lb: len(lb[1]))


def mix(body: list[str]) -> tuple[int, int, Counter]:
    ops = [m.group(1) for b in body if (m := INSN.search(b))]
    kinds = Counter(next((k for k, f in KINDS.items() if f(op)), "other") for op in ops)
    return len(ops), kinds["mma"], kinds


def main(paths: list[str]) -> None:
    for path in paths:
        lines = open(path).read().splitlines()
        found = loops(lines)
        print(f"{path}: {len(found)} MMA loop(s)")
        for label, body in found:
            n, mma, kinds = mix(body)
            print(f"  {label}: {n} instructions, {mma} MMA; " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))


if __name__ == "__main__":
    main(sys.argv[1:])
