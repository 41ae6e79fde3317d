"""CPU checks of the w4a16 families: their weights are quack's nvfp4 layout (prepare_weights), and
the kernel's own bit-level decode replayed in torch on it equals the exact dequantization for
every E2M1 code and every non-NaN E4M3 scale byte; the validity predicate, the grouping
generator and that the checker really fails on wrong outputs."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.quack_w4a16.prepare import dequantize, random_nvfp4_weights
from nvfp4_aot.kernels.w4a16 import DECODE_SEL
from nvfp4_aot.kernels.w4a16_common import random_groups
from nvfp4_aot.kernels.w4a16.prepare import emulate_weights, prepare_weights, prmt, unprepare_weights
from nvfp4_aot.runtime.word_order import word_order

DENSE = get_family("w4a16_gemm")
GROUPED = get_family("w4a16_grouped_gemm")


@settings(max_examples=12, deadline=None)
@given(g=st.integers(1, 3), kt=st.integers(1, 5), seed=st.integers(0, 2**31 - 1),
       decode=st.sampled_from(["mul", "sel", "rot"]))
def test_kernel_decode_is_exact_on_random_weights(g, kt, seed, decode):
    gen = torch.Generator().manual_seed(seed)
    q, sf = random_nvfp4_weights(64 * g, 64 * kt, gen, "cpu")
    blob, strip = prepare_weights(q, sf)
    q2, sf2 = unprepare_weights(blob, strip)
    assert torch.equal(q2, q) and torch.equal(sf2, sf)
    # the decode's prmt / multiply / mask, the 2^-126 / 2^119 / 2^7 scale folding and the
    # fragment mapping, replayed on the blob words, give the exact weights
    assert torch.equal(emulate_weights(_ordered(blob, decode), strip, decode), dequantize(q, sf).double())


def _ordered(blob, decode):
    """The blob in the word order the decode reads (decode_rot: "rot", runtime/word_order.py)."""
    return word_order(blob, "rot" if decode == "rot" else "nibble")


def test_rot_decode_needs_the_rot_word_order():
    g = torch.Generator().manual_seed(2)
    q, sf = random_nvfp4_weights(64, 256, g, "cpu")
    blob, strip = prepare_weights(q, sf)
    want = dequantize(q, sf).double()
    assert not torch.equal(emulate_weights(blob, strip, "rot"), want)
    assert not torch.equal(emulate_weights(word_order(blob, "rot"), strip, "sel"), want)


@pytest.mark.parametrize("decode", ["mul", "sel", "rot"])
def test_kernel_decode_is_exact_for_every_code_and_scale_byte(decode):
    """All 256 code bytes (every E2M1 pair) in every position, against all 254 non-NaN E4M3
    scale bytes (zero, subnormals, negatives, 448) in every (row, group) position."""
    scales = torch.tensor([b for b in range(256) if b & 0x7F != 0x7F], dtype=torch.uint8)  # 254 bytes
    n, groups = 64, 64  # 4096 scale slots: every scale byte at many (row, group) positions
    sf = scales[torch.arange(n * groups) * 37 % scales.numel()].reshape(n, groups)
    codes = torch.arange(256, dtype=torch.uint8)
    q = codes[(torch.arange(n * groups * 8) * 11 + torch.arange(n * groups * 8) // 256) % 256].reshape(n, groups * 8)
    assert set(sf.unique().tolist()) == set(scales.tolist()) and q.unique().numel() == 256
    blob, strip = prepare_weights(q, sf)
    want = dequantize(q, sf).double()
    got = emulate_weights(_ordered(blob, decode), strip, decode)
    assert torch.equal(torch.isnan(got), torch.isnan(want)) and not torch.isnan(want).any()
    assert torch.equal(got, want)
    # signed zero: code 8 (-0) decodes to a bf16 -0 (sign bit set, magnitude 0) in both decodes
    assert torch.equal(torch.signbit(got[want == 0]), torch.signbit(want[want == 0]))


def test_prmt_selectors_place_the_nibbles():
    lo, hi = torch.tensor([0x0D0C0B0A]), torch.tensor([0x04030201])
    for p in range(4):
        assert prmt(lo, hi, DECODE_SEL[p]).item() == (0x0A + p) | (0x01 + p) << 16


@pytest.mark.parametrize("decode", ["mul", "sel", "rot"])
def test_emulation_detects_a_wrong_layout(decode):
    g = torch.Generator().manual_seed(1)
    q, sf = random_nvfp4_weights(64, 512, g, "cpu")
    blob, strip = prepare_weights(q, sf)
    blob = _ordered(blob, decode)
    swapped = blob.clone()
    swapped[:, :, 0, [0, 1]] = blob[:, :, 0, [1, 0]]  # two code bytes (row halves) of lane 0 exchanged
    assert not torch.equal(emulate_weights(swapped, strip, decode), dequantize(q, sf).double())
    s2 = strip.clone()
    s2[:, :, 0, 0] = strip[:, :, 0, 1]  # block 0's scale of row g+8 used for row g
    assert not torch.equal(emulate_weights(blob, s2, decode), dequantize(q, sf).double())


def test_sel_constants_match_the_kernel():
    """prepare.py restates decode_sel's constants (ptx.py imports cutlass): the same numbers."""
    ptx = pytest.importorskip("nvfp4_aot.kernels.w4a16.ptx")
    from nvfp4_aot.kernels.w4a16 import prepare

    assert (ptx.SEL_MASK, ptx.SEL_EVEN, ptx.SEL_ODD, ptx.SEL_PLAN) == (
        prepare.SEL_MASK, prepare.SEL_EVEN, prepare.SEL_ODD, prepare.SEL_PLAN)


def test_decode_rot_ptx_computes_the_rot_plan():
    """Interpret decode_rot's PTX (its integer instructions; the multiply's operand is recorded)
    on random words: register $q is multiplied from OR over ROT_PLAN[q] of rotl(word, r) & mask,
    by sl (row g) for even q and sh (row g + 8) for odd q, as decode_block's registers."""
    import re

    ptx = pytest.importorskip("nvfp4_aot.kernels.w4a16.ptx")
    from nvfp4_aot.runtime.word_order import ROT_PLAN

    def rotl(x, r):
        return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF if r else x

    lines = [ln.strip().rstrip(";") for ln in ptx.rot_asm().replace("\n\t", "\n").splitlines()]
    ops = [ln for ln in lines if re.match(r"(mov\.b32 \w+, \$|shl|shr|shf|and|lop3|mul)", ln)]
    assert sum(1 for ln in ops if not ln.startswith(("mul", "mov"))) == 9  # + 4 multiplies = 13
    g = torch.Generator().manual_seed(3)
    for w in torch.randint(0, 2**32, (64,), generator=g, dtype=torch.int64).tolist():
        reg, out = {"$4": w}, {}
        val = lambda t: reg[t] if t in reg else int(t, 0)  # noqa: E731
        for ln in ops:
            op, args = ln.split(None, 1)
            d, *src = [a.strip() for a in args.split(",")]
            if op == "mov.b32":  # a register copy (ptxas renames it away)
                reg[d] = val(src[0])
            elif op == "shl.b32":
                reg[d] = (val(src[0]) << int(src[1])) & 0xFFFFFFFF
            elif op == "shr.u32":
                reg[d] = val(src[0]) >> int(src[1])
            elif op == "shf.l.wrap.b32":
                assert src[0] == src[1]
                reg[d] = rotl(val(src[0]), int(src[2]))
            elif op == "and.b32":
                reg[d] = val(src[0]) & val(src[1])
            elif op == "lop3.b32":
                a, b, c, lut = (val(x) for x in src)
                reg[d] = sum(((lut >> ((a >> i & 1) << 2 | (b >> i & 1) << 1 | (c >> i & 1))) & 1) << i for i in range(32))
            else:  # mul.rn.bf16x2 $r, a, sl|sh
                out[d] = (reg[src[0]], src[1])
        for q, terms in enumerate(ROT_PLAN):
            want = 0
            for r, m in terms:
                want |= rotl(w, r) & m
            assert out[f"${q}"] == (want, "sh" if q & 1 else "sl"), (q, hex(w))


def test_prepare_refuses_bad_shapes():
    with pytest.raises(ValueError, match="multiple of 64"):
        prepare_weights(torch.zeros((16, 128), dtype=torch.uint8), torch.zeros((16, 16), dtype=torch.uint8))
    with pytest.raises(ValueError, match="sf shape"):
        prepare_weights(torch.zeros((64, 128), dtype=torch.uint8), torch.zeros((64, 8), dtype=torch.uint8))


def test_can_implement_names_the_problem():
    p = GROUPED.parse_params({"n": 6144, "k": 7168, "experts": 48})
    assert GROUPED.can_implement(p, "sm_90a") == []
    assert any("sm_100a" in r for r in GROUPED.can_implement(p, "sm_100a"))
    bad = GROUPED.parse_params({"n": 100, "k": 300, "experts": 48, "warps": 3, "nt": 5})
    msgs = " | ".join(GROUPED.can_implement(bad, "sm_90a"))
    for frag in ("k=300", "n=100", "warps=3", "nt=5"):
        assert frag in msgs
    msgs = " | ".join(GROUPED.can_implement(GROUPED.parse_params({"n": 96, "k": 256, "rb": 2}), "sm_90a"))
    for frag in ("n=96", "multiple of 64"):
        assert frag in msgs
    wg = GROUPED.parse_params({"n": 6144, "k": 7168, "experts": 48, "warps": 2, "nt": 16, "split": "wg"})
    assert any("split='wg' is one or two warpgroups" in r for r in GROUPED.can_implement(wg, "sm_90a"))
    ok = GROUPED.parse_params({"n": 6144, "k": 7168, "experts": 48, "warps": 4, "rb": 2, "nt": 16, "split": "wg"})
    assert GROUPED.can_implement(ok, "sm_90a") == []
    assert any("split='x'" in r for r in GROUPED.can_implement(GROUPED.parse_params({"n": 64, "k": 256, "split": "x"}), "sm_90a"))
    # the cp.async ring (stages > 1): split 'wg' (2-3 stages) and 'n' (2-4), within Hopper's shared memory
    base = {"n": 6144, "k": 7168, "experts": 48, "warps": 4, "split": "wg"}
    for tun in ({"rb": 1, "nt": 16, "stages": 2}, {"rb": 1, "nt": 16, "stages": 3}, {"rb": 2, "nt": 8, "stages": 3}):
        assert GROUPED.can_implement(GROUPED.parse_params({**base, **tun}), "sm_90a") == [], tun
    too_big = GROUPED.parse_params({**base, "rb": 2, "nt": 16, "stages": 3})
    assert any("shared memory" in r and "stages=3" in r for r in GROUPED.can_implement(too_big, "sm_90a"))
    assert any("stages=4" in r for r in GROUPED.can_implement(GROUPED.parse_params({**base, "stages": 4, "nt": 8}), "sm_90a"))
    ring_n = {"n": 6144, "k": 7168, "experts": 48, "warps": 8, "split": "n", "act_order": "quad"}
    for tun in ({"nt": 2, "stages": 2}, {"nt": 2, "stages": 4}, {"rb": 2, "nt": 2, "stages": 3, "ctas": 1},
                {"nt": 4, "stages": 3}, {"nt": 4, "stages": 2, "ctas": 3}, {"warps": 4, "nt": 4, "stages": 2, "ctas": 4}):
        assert GROUPED.can_implement(GROUPED.parse_params({**ring_n, **tun}), "sm_90a") == [], tun
    # ctas (the ring's CTAs per SM, default 2): shared memory for that many, threads, ring only
    # 2 x (3 x (16 rows x 528 B + 8 warps x 2 x 2304 B -> 46080 B) + 1 KiB) = 278528 B > 228 KiB
    two = GROUPED.parse_params({**ring_n, "rb": 2, "nt": 2, "stages": 3})
    assert any("ctas=2" in r and "per SM" in r and "ctas=1" in r for r in GROUPED.can_implement(two, "sm_90a"))
    # 3 x (2 x (32 rows x 528 B + 8 warps x 2 x 2304 B -> 54272 B) + 1 KiB) = 328704 B
    three = GROUPED.parse_params({**ring_n, "rb": 2, "nt": 4, "stages": 2, "ctas": 3})
    assert any("ctas=3" in r and "328704 B" in r for r in GROUPED.can_implement(three, "sm_90a"))
    # word_order "rot" (decode_rot, decode_block's registers): every mode, act orders natural / quad
    for tun in ({"split": "k", "stages": 1}, {"nt": 4, "stages": 2}, {"act_order": "natural", "nt": 2, "stages": 2},
                {"act_order": "natural", "split": "wg", "nt": 8, "stages": 2}):
        ok = GROUPED.parse_params({**ring_n, "word_order": "rot", **tun})
        assert GROUPED.can_implement(ok, "sm_90a") == [], tun
    msgs = GROUPED.can_implement(GROUPED.parse_params({**ring_n, "act_order": "quad8", "nt": 2, "stages": 2,
                                                       "word_order": "rot"}), "sm_90a")
    assert any("word_order='rot'" in r and "quad8" in r for r in msgs)
    assert any("word_order='zig'" in r for r in GROUPED.can_implement(GROUPED.parse_params({**ring_n, "word_order": "zig"}), "sm_90a"))
    for bad in ({"ctas": 5}, {"split": "k", "stages": 1, "ctas": 2}, {"stages": 1, "ctas": 3}):
        msgs = GROUPED.can_implement(GROUPED.parse_params({**ring_n, "nt": 2, "stages": 2, **bad}), "sm_90a")
        assert any(f"ctas={bad['ctas']}" in r for r in msgs), bad
    # tail (the last wave's units as half CTAs): the split 'n' ring with an even rb only
    assert GROUPED.can_implement(GROUPED.parse_params({**ring_n, "rb": 2, "nt": 4, "stages": 2, "tail": 132}), "sm_90a") == []
    for bad in ({"rb": 1, "nt": 2, "stages": 2, "tail": 132}, {"rb": 2, "nt": 2, "stages": 1, "tail": 132},
                {"rb": 2, "split": "k", "stages": 1, "tail": 132}, {"rb": 2, "nt": 2, "stages": 2, "tail": -1},
                {"rb": 2, "nt": 2, "stages": 2, "tail": 5000}):
        msgs = GROUPED.can_implement(GROUPED.parse_params({**ring_n, **bad}), "sm_90a")
        assert any(f"tail={bad['tail']}" in r for r in msgs), bad
    dense_tail = DENSE.parse_params({"n": 6144, "k": 7168, "warps": 8, "rb": 2, "nt": 2, "split": "n", "stages": 2, "tail": 132})
    assert any("tail=132" in r and "grouped" in r for r in DENSE.can_implement(dense_tail, "sm_90a"))
    # 4 x (64 rows x 528 B + 8 warps x 2 x 2304 B) = 282624 B
    big_n = GROUPED.parse_params({**ring_n, "rb": 2, "nt": 8, "stages": 4})
    assert any("shared memory" in r and "stages=4" in r for r in GROUPED.can_implement(big_n, "sm_90a"))
    split_k = GROUPED.parse_params({"n": 6144, "k": 7168, "experts": 48, "warps": 4, "nt": 2, "stages": 2})
    assert any("split 'wg' / 'n' mainloop" in r for r in GROUPED.can_implement(split_k, "sm_90a"))
    assert any("stages=5" in r for r in GROUPED.can_implement(GROUPED.parse_params({**ring_n, "stages": 5}), "sm_90a"))
    assert any("dense family" in r for r in DENSE.can_implement(DENSE.parse_params({"n": 64, "k": 256, "experts": 2}), "sm_90a"))


def test_split_k_staging_knobs_and_the_dense_tables():
    """sk / wpf (split 'k' natural-K staging by k64 tiles, next step's weights in flight): refused off that mode,
    checked against shared memory with their own staging size; DenseFamily picks them at 9-16 tokens everywhere and
    from one token on the thin shapes (one 16-row CTA per SM or fewer); the quad L1 (N < K) decode row splits K."""
    from nvfp4_aot.kernels.w4a16 import TAIL_SMS, sk_stage_bytes

    base = {"n": 6144, "k": 7168, "warps": 8, "nt": 2}
    assert DENSE.can_implement(DENSE.parse_params({**base, "sk": 1, "wpf": 1}), "sm_90a") == []
    for bad in ({"sk": 2}, {"wpf": -1}, {"sk": 1, "act_order": "quad"}, {"wpf": 1, "split": "n"},
                {"sk": 1, "split": "wg", "warps": 4, "nt": 8}):
        knob = "sk" if "sk" in bad else "wpf"
        msgs = DENSE.can_implement(DENSE.parse_params({**base, **bad}), "sm_90a")
        assert any(r.startswith(f"{knob}={bad[knob]}:") for r in msgs), (bad, msgs)
    p0, p1 = (DENSE.parse_params({**base, "sk": v}) for v in (0, 1))
    assert (sk_stage_bytes(p0), sk_stage_bytes(p1)) == (16 * 528, 2 * 16 * 144)
    # nt = 8 at 8 warps: 8 x 64 rows x 528 B > 227 KiB with sk 0; 8 x 2 x 64 x 144 B (+ the reduction) fit
    big = {"n": 6144, "k": 7168, "warps": 8, "nt": 8}
    assert any("shared memory" in r for r in DENSE.can_implement(DENSE.parse_params(big), "sm_90a"))
    assert DENSE.can_implement(DENSE.parse_params({**big, "sk": 1}), "sm_90a") == []
    skw = {"sk": 1, "wpf": 1}
    for (n, k), first in (((6144, 7168), {}), ((2048, 7168), skw), ((7168, 3072), {}), ((65536, 1536), {})):
        table = DENSE.tile_table({"n": n, "k": k})
        assert [e for e, _ in table] == [8, 16, None]
        assert skw.items() <= table[1][1].items() and not {"sk", "wpf"} & set(table[2][1])
        assert {kk: table[0][1][kk] for kk in ("sk", "wpf") if kk in table[0][1]} == first, (n, k)
        for _, tun in table:
            assert DENSE.can_implement(DENSE.parse_params({"n": n, "k": k, **tun}), "sm_90a") == [], (n, k, tun)
    assert 2048 // 16 <= TAIL_SMS < 6144 // 16
    # N >= K: 8 warps split K at M <= 8 from DenseFamily.DEEP_K (down 7168 x 3072), 4 below (o_b 7168 x 2048), in
    # both word orders; the rows above are the same
    for order in ("nibble", "rotq"):
        down, o_b = (DENSE.tile_table({"n": 7168, "k": k, "word_order": order}) for k in (3072, 2048))
        assert (down[0][1]["warps"], o_b[0][1]["warps"]) == (8, 4) and down[1:] == o_b[1:], order
    l1 = GROUPED.tile_table({"n": 6144, "k": 7168, "experts": 48, "act_order": "quad"})
    l2 = GROUPED.tile_table({"n": 7168, "k": 3072, "experts": 48, "act_order": "quad"})
    q8 = GROUPED.tile_table({"n": 6144, "k": 7168, "experts": 48, "act_order": "quad8"})
    assert l1[0] == (240, {"warps": 8, "rb": 1, "nt": 1}) and l2[0] == q8[0] == (240, {"warps": 1, "rb": 1, "nt": 1})
    assert l1[1:] == l2[1:] == q8[1:]


def test_l2pf_is_split_k_only_and_bounded():
    """l2pf (a warp's weights prefetched into L2 K steps ahead): 0 .. L2PF_MAX with split 'k' on one stage, any act
    order (natural, quad); refused in the split 'n' / 'wg' mainloops and the ring, with a message naming the knob."""
    from nvfp4_aot.kernels.w4a16 import L2PF_MAX

    base = {"n": 6144, "k": 7168, "warps": 8, "nt": 1}
    for ok in ({"l2pf": 1}, {"l2pf": L2PF_MAX, "wpf": 1}, {"l2pf": 2, "act_order": "quad"}):
        assert DENSE.can_implement(DENSE.parse_params({**base, **ok}), "sm_90a") == [], ok
    assert GROUPED.can_implement(GROUPED.parse_params({**base, "experts": 48, "act_order": "quad", "l2pf": 2}),
                                 "sm_90a") == []
    for bad in ({"l2pf": -1}, {"l2pf": L2PF_MAX + 1}, {"l2pf": 1, "split": "n"},
                {"l2pf": 1, "split": "wg", "warps": 4, "nt": 8}):
        msgs = DENSE.can_implement(DENSE.parse_params({**base, **bad}), "sm_90a")
        assert any(r.startswith(f"l2pf={bad['l2pf']}:") for r in msgs), (bad, msgs)


@pytest.mark.parametrize("dist", ["uniform", "skewed", "single", "empty"])
def test_random_groups_fit(dist):
    """Both W4A16 families' grouping (kernels/w4a16_common.py): every expert's counted rows and
    padding inside [0, m), sizes summing to m, some rows counted."""
    g = torch.Generator().manual_seed(3)
    for m in (0, 1, 7, 1000):
        off, cnt = random_groups(m, 8, dist, g)
        assert off[0] == 0 and off[-1] == m
        assert torch.all(off[1:] - off[:-1] >= cnt) and torch.all(cnt >= 0)
        assert m == 0 or int(cnt.sum()) > 0


def test_checker_fails_on_wrong_output_and_stray_writes():
    p = GROUPED.parse_params({"n": 64, "k": 256, "experts": 3})
    inputs = GROUPED.make_inputs(p, 40, "cpu", seed=5, dist="skewed")
    want = GROUPED.reference(p, inputs)
    good = {"out": want["out"].to(torch.bfloat16)}
    assert GROUPED.check(p, good, want) == []
    rows = ~torch.isnan(want["out"]).all(dim=1)
    assert rows.any()
    off = good["out"].clone()
    off[rows] = off[rows] * 1.01  # 1% error: above the 3e-3 bound
    assert GROUPED.check(p, {"out": off}, want)
    if (~rows).any():
        stray = good["out"].clone()
        stray[~rows] = 0
        assert any("outside" in m for m in GROUPED.check(p, {"out": stray}, want))


@pytest.mark.parametrize("nt", [1, 2, 4])
def test_ring_stage_addresses_feed_the_fragments(nt):
    """split 'n' cp.async ring (kernels/w4a16/ring.py), replayed with its own address helpers on
    random bytes: the activation copies tile the stage without overlap, and every lane's reads of
    token fragment j, k64 tile kt return the bytes its fragment needs: quad, row g's 32 bytes at
    32 t of the tile (what split 'k' reads from global memory); natural, ldmatrix row lane % 8 of
    matrix lane // 8 = K 8 (lane // 8) .. + 7 (and + 32 for the second x4). The weight slots of
    every (warp, row block) are disjoint and fill the stage (up to the 1024-byte rounding)."""
    from nvfp4_aot.kernels.w4a16 import W_STEP_BYTES, stage_bytes
    from nvfp4_aot.kernels.w4a16.ring import act_slot, n_frag_slot, w_slot

    bt = 8 * nt
    gen = torch.Generator().manual_seed(nt)
    chunk = torch.randint(0, 256, (bt, 512), generator=gen, dtype=torch.uint8)  # one K step of bt rows
    act_bytes = bt * 528
    stage = torch.zeros(act_bytes, dtype=torch.uint8)
    owner = torch.full((act_bytes,), -1)
    for tok in range(bt):
        for kv in range(32):
            a = act_slot(0, tok, kv, bt, False)
            assert (owner[a:a + 16] == -1).all() and a + 16 <= act_bytes
            owner[a:a + 16] = tok * 32 + kv
            stage[a:a + 16] = chunk[tok, 16 * kv:16 * kv + 16]
    for j in range(nt):
        for kt in range(4):
            for lane in range(32):
                a = n_frag_slot(0, j, lane, kt, True)
                row, t = 8 * j + lane // 4, lane % 4
                assert torch.equal(stage[a:a + 32], chunk[row, 128 * kt + 32 * t:128 * kt + 32 * t + 32])
                a = n_frag_slot(0, j, lane, kt, False)
                row, i = 8 * j + lane % 8, lane // 8
                for x4 in range(2):
                    lo = 128 * kt + 64 * x4 + 16 * i
                    assert torch.equal(stage[a + 64 * x4:a + 64 * x4 + 16], chunk[row, lo:lo + 16])
    # SW128 ("wg"): a bijection of the 16-byte vectors onto bt * 512 bytes
    slots = {act_slot(0, tok, kv, bt, True) for tok in range(bt) for kv in range(32)}
    assert len(slots) == bt * 32 and all(s % 16 == 0 and 0 <= s < bt * 512 for s in slots)
    for warps, rb in ((4, 1), (8, 1), (4, 2), (8, 2)):
        ranges = sorted((w_slot(0, act_bytes, w, rb) + r * W_STEP_BYTES, W_STEP_BYTES)
                        for w in range(warps) for r in range(rb))
        assert all(a + n <= b for (a, n), (b, _) in zip(ranges, ranges[1:])) and ranges[0][0] >= act_bytes
        assert ranges[-1][0] + W_STEP_BYTES <= stage_bytes(bt, warps, rb, "n") < ranges[-1][0] + W_STEP_BYTES + 1024



def test_ring_copy_assignment_tiles_the_stage():
    """split 'n' ring (ring.n_copy), every tiling it serves (8 * nt / warps <= 32 rows per warp):
    the threads' activation copies of a K step cover each (token row, 16-byte vector) of the tile
    exactly once; a thread's copies lie in one row at a constant vector stride (one row pointer
    plus constants); and each copy instruction (one v over the warp's lanes) reads whole 32-byte
    sectors (up to 16 rows per warp) and writes its 512 B to the 528-byte staged rows in 4
    shared-memory wavefronts."""
    from nvfp4_aot.kernels.w4a16 import N_TILES, WARPS
    from nvfp4_aot.kernels.w4a16.ring import act_slot, n_copy

    for warps in WARPS:
        for nt in N_TILES:
            bt = 8 * nt
            rows = bt // warps
            if (bt * 32) % (32 * warps) or rows > 32:
                continue
            seen = set()
            for w in range(warps):
                for lane in range(32):
                    tok0, kv0 = n_copy(w, lane, 0, bt, warps)
                    for v in range(rows):
                        tok, kv = n_copy(w, lane, v, bt, warps)
                        assert tok == tok0 and kv == kv0 + v * (32 // rows) and 0 <= kv < 32
                        seen.add((tok, kv))
                for v in range(rows):
                    copies = [n_copy(w, lane, v, bt, warps) for lane in range(32)]
                    sectors = {}
                    for tok, kv in copies:  # global: 16-byte vector kv of row tok
                        sectors.setdefault((tok, kv // 2), set()).add(kv % 2)
                    if rows <= 16:  # 32 rows: a lane's copies v, v + 1 are one sector's halves
                        assert all(len(halves) == 2 for halves in sectors.values()), (warps, nt, v)
                    banks = [(act_slot(0, tok, kv, bt, False) // 16) % 8 for tok, kv in copies]
                    assert max(banks.count(b) for b in range(8)) == 4, (warps, nt, v)
            assert seen == {(tok, kv) for tok in range(bt) for kv in range(32)}, (warps, nt)


def test_served_tail_table_is_valid():
    """GroupedFamily.quad_slot_tiles: every row passes the predicate at 48 experts on both routed shapes and both
    decode orders, and tail is on exactly the split 'n' ring rows up to 24 slots per expert (the t = 32 ring,
    bound by its MMAs, lost with it: docs/PERFORMANCE.md "session 25")."""
    from nvfp4_aot.kernels.w4a16 import TAIL_SMS

    table = GROUPED.quad_slot_tiles
    for (n, k) in ((6144, 7168), (7168, 3072)):
        for order, word in (("quad", "rot"), ("quad8", "nibble")):
            for _, tun in table:
                p = GROUPED.parse_params({"n": n, "k": k, "experts": 48, "act_order": order, "word_order": word, **tun})
                assert GROUPED.can_implement(p, "sm_90a") == [], tun
    assert [edge for edge, _ in table] == [5, 8, 24, None]
    assert [tun.get("tail", 0) for _, tun in table] == [0, TAIL_SMS, TAIL_SMS, 0]
    assert {**table[2][1], "tail": 0} == {**table[3][1], "tail": 0}


def _makespan(durations, slots: int) -> float:
    """Greedy list scheduling in issue order on `slots` identical slots (how the CTA scheduler fills
    SMs): each job starts on the slot that frees first."""
    free = [0.0] * slots
    for d in durations:
        i = min(range(slots), key=free.__getitem__)
        free[i] += d
    return max(free)


@pytest.mark.parametrize("slots", [6, 228, 264])
def test_ring_tail_item_covers_every_unit_once_and_shortens_the_last_wave(slots):
    """tail_item (W4A16Params.tail), replayed with Python integers over every unit count up to
    five waves, on a grid of units + slots // 2 CTAs: every unit is run exactly once, whole or as its
    two halves (parts 1 and 2, adjacent in issue order); halves only for the last r = units mod slots
    units and only when 2 r <= slots; the other CTAs get a unit past the last (no work); whole units
    keep their order. Then the schedule the greedy CTA scheduler makes of it (a half = half a whole
    CTA's time) ends half a wave earlier than whole units wherever halves are used, and never later."""
    from nvfp4_aot.kernels.w4a16 import tail_item

    for units in range(0, 5 * slots + 3):
        r = units % slots
        x = r if 2 * r <= slots else 0
        got = [tail_item(c, units, slots, min, max) for c in range(units + slots // 2)]
        whole = [u for u, part in got if part == 0 and u < units]
        halves = [(u, part) for u, part in got if part and u < units]
        assert whole == list(range(units - x)), (units, slots)
        assert halves == [(u, p) for u in range(units - x, units) for p in (1, 2)], (units, slots)
        assert all(u >= units for u, _ in got[units + x:]), (units, slots)
        if slots <= 64 or units % 7 == 0:  # the schedule: every count on the small grid, a sample on the large
            jobs = [1.0 if part == 0 else 0.5 for u, part in got if u < units]
            plain = -(-units // slots)
            assert _makespan(jobs, slots) == (plain - 0.5 if x else plain), (units, slots)


@pytest.mark.slow
def test_l2pf_reaches_the_ptx(tmp_path):
    """l2pf = 2 puts sm_90's bulk L2 prefetch into the split 'k' kernel: per 16-row slice (rb = 2 here) one 512-byte
    blob piece and one 64-byte scale strip per prefetched K step, for the walk's first two steps before the loop and
    one step (two ahead) inside it: 2 x rb x (2 + 1) instructions; l2pf = 0 has none."""
    import os
    import re
    import subprocess
    import sys

    counts = {}
    for l2pf in (0, 2):
        d = tmp_path / f"pf{l2pf}"
        (d / "ptx").mkdir(parents=True)
        (d / "m.toml").write_text('archs = ["sm_90a"]\n[[op]]\nfamily = "w4a16_gemm"\n'
                                  'problem = { n = 128, k = 1024 }\n'
                                  f'buckets = [{{ m = [1, 8], tuning = {{ warps = 1, rb = 2, nt = 1, l2pf = {l2pf} }} }}]\n')
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "CUTE_DSL_NO_CACHE": "1", "CUTE_DSL_KEEP": "ptx",
               "CUTE_DSL_DUMP_DIR": str(d / "ptx")}
        r = subprocess.run([sys.executable, "-m", "nvfp4_aot.build.cli", "compile", str(d / "m.toml"), "-o",
                            str(d / "store"), "-j", "1"], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        (ptx,) = (d / "ptx").glob("*.ptx")
        counts[l2pf] = sorted(re.findall(r"cp\.async\.bulk\.prefetch\.L2\.global \[%rd\d+\], (\d+);", ptx.read_text()))
    assert counts[0] == []
    assert counts[2] == ["512"] * 6 + ["64"] * 6, counts[2]


@pytest.mark.slow
def test_ring_kernels_fit_their_ctas_per_sm(tmp_path):
    """The served split "n" ring tilings (GroupedFamily.quad_slot_tiles above t = 5) hold one
    K loop per live fragment count (ring.py); their stages are sized for ring_ctas(p) CTAs per SM
    (RING_CTAS = 2 by default, 3 for the 128-row tilings tried against the last wave's waste),
    and the launch's min_blocks_per_mp must keep ptxas within that register share: without it the
    nt 4 kernel took 130 registers, one CTA per SM, 8-15% slower on an H200 (PERFORMANCE.md
    "session 20")."""
    import subprocess
    import sys

    from nvfp4_aot.build.manifest import toml_value
    from nvfp4_aot.kernels.hopper import REGS_PER_SM
    from nvfp4_aot.kernels.w4a16 import RING_CTAS, ring_ctas
    from nvfp4_aot.runtime.store_format import ENTRIES_DIR, cubin_registers, embedded_cubins, read_index

    ring = [tun for _, tun in GROUPED.quad_slot_tiles if tun.get("split") == "n" and tun.get("stages", 1) > 1]
    assert ring, "no split 'n' ring tiling in quad_slot_tiles"
    ring += [{"warps": 8, "rb": 1, "nt": 4, "split": "n", "stages": 2, "ctas": 3},
             {"warps": 4, "rb": 2, "nt": 4, "split": "n", "stages": 2, "ctas": 3},
             # the tail's half CTAs (a second copy of the mainloop) within the same register share
             {"warps": 8, "rb": 2, "nt": 4, "split": "n", "stages": 2, "tail": 132}]
    problem = {"n": 6144, "k": 7168, "experts": 48, "act_order": "quad8"}
    buckets = [{"m": [i + 1, i + 1], "tuning": tun} for i, tun in enumerate(ring)]
    (tmp_path / "ring.toml").write_text(f'archs = ["sm_90a"]\n[[op]]\nfamily = "{GROUPED.name}"\n'
                                        f"problem = {toml_value(problem)}\nbuckets = {toml_value(buckets)}\n")
    out = tmp_path / "store"
    r = subprocess.run([sys.executable, "-m", "nvfp4_aot.build.cli", "compile", str(tmp_path / "ring.toml"), "-o",
                        str(out), "-j", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    seen = set()
    for key, rec in read_index(out)["entries"].items():
        ((arch, image),) = embedded_cubins((out / ENTRIES_DIR / key / "kernel.so").read_bytes())
        (regs,) = cubin_registers(image).values()
        params = rec["params"]
        ctas = ring_ctas(GROUPED.params_type(**params))
        assert ctas == (params["ctas"] or RING_CTAS)
        threads = 32 * params["warps"]
        assert arch == "sm_90a" and 0 < regs <= REGS_PER_SM // (ctas * threads), (params, regs)
        seen.add((params["warps"], params["rb"], params["nt"], ctas, params["tail"]))
    assert seen == {(tun["warps"], tun["rb"], tun["nt"], tun.get("ctas") or RING_CTAS, tun.get("tail", 0)) for tun in ring}


@pytest.mark.parametrize("family", ["w4a16_grouped_gemm", "w4a16_ws_grouped_gemm", "w4a16_ws_gemm"])
def test_make_inputs_and_reference_honour_the_word_order(family):
    """word_order "rot": the same random weights as "nibble" (same seed), the blob permuted by
    word_order, and a reference that reads the blob back through word_unorder when the unprepared
    weights are absent; an unknown order is refused by the predicate."""
    fam = get_family(family)
    base = {"n": 128, "k": 256, **({"experts": 2} if "grouped" in family else {})}
    nib, rot = fam.parse_params(base), fam.parse_params({**base, "word_order": "rot"})
    a = fam.make_inputs(nib, 9, "cpu", seed=5)
    b = fam.make_inputs(rot, 9, "cpu", seed=5)
    assert torch.equal(a["w_q"], b["w_q"]) and torch.equal(a["sf"], b["sf"]) and torch.equal(a["act"], b["act"])
    assert torch.equal(b["blob"], word_order(a["blob"], "rot")) and not torch.equal(a["blob"], b["blob"])
    want = fam.reference(nib, a)["out"]
    bare = {k: v for k, v in b.items() if k not in ("w_q", "w_sf")}
    assert torch.equal(fam.reference(rot, bare)["out"].nan_to_num(7.0), want.nan_to_num(7.0))
    assert any("word_order='zig'" in r for r in fam.can_implement(fam.parse_params({**base, "word_order": "zig"}), "sm_90a"))
