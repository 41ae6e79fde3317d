"""Accuracy bounds in one place, with the reason for each.

Bit-exact families (quantize, global scale) define their rounding in the torch reference
and must match it exactly: any difference is a bug, not noise.
"""

# Relative Frobenius error bound by output dtype, for kernels that accumulate in fp32 and
# round once to the output dtype: bf16 has an 8-bit mantissa (unit roundoff 2^-9 ~ 2e-3),
# fp16 11 bits, fp32 accumulation-order noise stays far below 1e-5 for K <= 64k.
REL_FROBENIUS = {
    "bfloat16": 3e-3,
    "float16": 5e-4,
    "float32": 1e-5,
}

EXACT = 0  # quantize codes, scale bytes, global scale: bit-for-bit
