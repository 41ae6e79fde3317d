"""Instruction mix of the MMA loops of nvdisasm output (scripts/dump_sass.py writes the .sass files),
on the CPU box: for every backward branch whose body holds an MMA (HGMMA: w4a16_ws's consumer k
loop; HMMA: w4a16's mma.sync loops), innermost first, the body's instruction count by class and by
the pipe that issues it. The pipe-16 loop of w4a16_ws traces one k64 step per iteration, so its
innermost body is one k64 step of one consumer warp (pipe 64 traces two). A probe-2 kernel
(w4a16_ws `probe = 2`: no wgmma) has no MMA loop: then the loops holding the blob words' LDS.128.
Used for docs/PERFORMANCE.md's per-step counts (session 7 `wsdec` and `wgdec`).

    python scripts/sass_loops.py [--all] FILE.sass [...]     (default: the innermost loop only)"""

import re
import sys
from collections import Counter

# (class, opcode regex, issuing pipe) in priority order; the first match wins
CLASSES = (
    ("mma (HGMMA / HMMA)", r"^H[G]?MMA", "mma"),
    ("wgmma fence/wait", r"^WARPGROUP\.(ARRIVE|DEPBAR)", "sync"),
    ("mbarrier", r"^SYNCS", "mbarrier"),
    ("shared load", r"^(LDS|LDSM)", "lds"),
    ("global / shared memory (LDG / STG / STS / LDGSTS)", r"^(LDG|STG|STS|LDGSTS)", "mem"),
    ("fp convert (F2FP)", r"^F2FP", "alu"),
    ("bf16 mul (scale)", r"^H(MUL2|FMA2|ADD2)", "fma"),
    ("fp32 math", r"^F(MUL|FMA|ADD)", "fma"),
    ("prmt", r"^PRMT", "alu"),
    ("lop3", r"^LOP3", "alu"),
    # IMAD (IMAD.SHL included: ptxas's shifts on the multiply-add datapath) issues on the FMA pipe, not the ALU
    # pipe (before session 23 both were counted as "alu")
    ("shift on the FMA pipe (IMAD.SHL)", r"^IMAD\.SHL", "fma"),
    ("shift (SHF)", r"^SHF", "alu"),
    ("int multiply-add (IMAD)", r"^IMAD", "fma"),
    ("uniform (U*)", r"^U", "uniform"),
    ("int math (IMAD / IADD / LEA / VIADD / SEL)", r"^(IMAD|IADD|LEA|VIADD|SEL|IABS|MOV|CS2R|I2F|F2I|IMNMX|VIMNMX|BMSK|SGXT)",
     "alu"),
    ("predicate / branch", r"^(ISETP|PLOP3|BRA|BSYNC|BSSY|WARPSYNC|NOP|BAR)", "alu"),
)

LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*?);")
LABEL = re.compile(r"^\s*(\.L_x_\d+):")


def parse(text):
    """-> (instructions [(addr, opcode, operands)], labels {name: index of the next instruction})."""
    ins, labels = [], {}
    for line in text.splitlines():
        m = LABEL.match(line)
        if m:
            labels[m.group(1)] = len(ins)
            continue
        m = LINE.search(line)
        if m:
            ins.append((int(m.group(1), 16), m.group(3), m.group(4)))
    return ins, labels


def mma_loops(ins, labels, marker=r"^H[G]?MMA"):
    """[(lo, hi)] index spans of every backward branch's body holding `marker`, innermost
    (shortest) first; none with an MMA: the loops holding LDS.128 (a probe-2 kernel)."""
    spans = []
    for i, (_, op, rest) in enumerate(ins):
        if op != "BRA":
            continue
        m = re.search(r"\((\.L_x_\d+)\)", rest)
        if not m or labels.get(m.group(1), i + 1) > i:
            continue
        lo = labels[m.group(1)]
        if any(re.match(marker, o) for _, o, _ in ins[lo:i + 1]):
            spans.append((lo, i))
    if not spans and marker != r"^LDS\.128":
        return mma_loops(ins, labels, r"^LDS\.128")
    return sorted(spans, key=lambda s: s[1] - s[0])


def classify(op):
    """-> (class, pipe) of an opcode."""
    for name, pat, pipe in CLASSES:
        if re.match(pat, op):
            return name, pipe
    return "other", "other"


def main(argv):
    every = "--all" in argv
    for path in (a for a in argv if a != "--all"):
        ins, labels = parse(open(path).read())
        spans = mma_loops(ins, labels)
        if not spans:
            print(f"{path}: no MMA loop found")
            continue
        for lo, hi in spans if every else spans[:1]:
            kinds = [classify(op) for _, op, _ in ins[lo:hi + 1]]
            by_class, by_pipe = Counter(c for c, _ in kinds), Counter(p for _, p in kinds)
            print(f"{path}: loop {ins[lo][0]:#x}..{ins[hi][0]:#x}, {len(kinds)} instructions per iteration "
                  f"({by_class['mma (HGMMA / HMMA)']} MMA); by pipe: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(by_pipe.items())))
            for name, _, _ in (*CLASSES, ("other", "", "")):
                if by_class[name]:
                    print(f"  {name:50} {by_class[name]:4}")


if __name__ == "__main__":
    main(sys.argv[1:])
