"""Per-iteration instruction counts, by class, of the consumer k loop of a w4a16_ws kernel's SASS
(scripts/dump_sass.py writes the .sass files; nvdisasm -c output).

The consumer k loop is the innermost backward branch (`@P BRA .L_x_N` to a label above it)
whose body holds HGMMA instructions: the pipe-16 loop traces one k64 step per iteration, so
its body is one k64 step of one consumer warp (pipe 64 traces two: the counts are then halved
and say so). Usage: python scripts/sass_loop_counts.py FILE.sass [FILE.sass ...]"""

import re
import sys
from collections import Counter

# (class, opcode regex) in priority order; the first match wins
CLASSES = (
    ("wgmma", r"^HGMMA"),
    ("wgmma fence/wait", r"^WARPGROUP\.(ARRIVE|DEPBAR)"),
    ("mbarrier", r"^SYNCS"),
    ("shared load", r"^LDS"),
    ("bf16 mul (scale)", r"^H(MUL2|FMA2)"),
    ("prmt", r"^PRMT"),
    ("lop3", r"^LOP3"),
    ("shift (SHF / IMAD.SHL)", r"^(SHF|IMAD\.SHL)"),
    ("uniform (U*)", r"^U"),
    ("int math (IMAD / IADD / LEA / VIADD / SEL)", r"^(IMAD|IADD|LEA|VIADD|SEL|IABS|MOV|CS2R)"),
    ("predicate / branch", r"^(ISETP|PLOP3|BRA|BSYNC|BSSY|WARPSYNC|NOP)"),
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


def consumer_loop(ins, labels, marker="HGMMA"):
    """(start, end) indices of the innermost backward branch's body holding `marker` (HGMMA; a
    probe-2 kernel has none: then the blob words' LDS.128)."""
    best = None
    for i, (_, op, rest) in enumerate(ins):
        if op != "BRA":
            continue
        m = re.search(r"\((\.L_x_\d+)\)", rest)
        if not m or labels.get(m.group(1), i + 1) > i:
            continue
        lo = labels[m.group(1)]
        if any(o.startswith(marker) for _, o, _ in ins[lo:i + 1]) and (best is None or i - lo < best[1] - best[0]):
            best = (lo, i)
    if best is None and marker == "HGMMA":
        return consumer_loop(ins, labels, "LDS.128")
    return best


def classify(op):
    for name, pat in CLASSES:
        if re.match(pat, op):
            return name
    return "other"


def counts(path):
    ins, labels = parse(open(path).read())
    loop = consumer_loop(ins, labels)
    if loop is None:
        return None, Counter()
    lo, hi = loop
    c = Counter(classify(op) for _, op, _ in ins[lo:hi + 1])
    return (lo, hi, ins[lo][0], ins[hi][0]), c


def main(paths):
    for path in paths:
        span, c = counts(path)
        if span is None:
            print(f"{path}: no HGMMA loop found")
            continue
        total = sum(c.values())
        print(f"{path}: consumer loop {span[2]:#x}..{span[3]:#x}, {total} instructions per iteration "
              f"({c['wgmma']} HGMMA)")
        for name, _ in (*CLASSES, ("other", "")):
            if c[name]:
                print(f"  {name:44} {c[name]:4}")


if __name__ == "__main__":
    main(sys.argv[1:])
