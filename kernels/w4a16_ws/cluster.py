"""PTX of the dense cluster split-K reduction (kernel.py _cluster_reduce): the split_k CTAs of
one output tile form a thread-block cluster; each non-leader writes its fp32 partial to its own
shared memory and signals the leader (rank 0) through a remote mbarrier; the leader reads the
partials over distributed shared memory (DSMEM), sums them in split order and signals back that
the peers' shared memory may be reused (or the peer may exit: a CTA's shared memory must outlive
every remote access to it). All volatile asm: none may move across the mbarrier operations.
"""

from cutlass import Float32, Int32
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import T, dsl_user_op


def _effect(text, vals, cons, loc, ip):
    llvm.inline_asm(None, [v.ir_value(loc=loc, ip=ip) for v in vals], text, cons, has_side_effects=True,
                    loc=loc, ip=ip)


@dsl_user_op
def mapa(addr: Int32, rank: Int32, *, loc=None, ip=None):
    """This CTA's shared address -> the same offset in cluster CTA `rank` (a shared::cluster address)."""
    return Int32(llvm.inline_asm(T.i32(), [Int32(addr).ir_value(loc=loc, ip=ip), Int32(rank).ir_value(loc=loc, ip=ip)],
                                 "mapa.shared::cluster.u32 $0, $1, $2;", "=r,r,r", has_side_effects=True,
                                 loc=loc, ip=ip))


@dsl_user_op
def sts_f32(addr: Int32, v: Float32, *, loc=None, ip=None):
    _effect("st.shared.f32 [$0], $1;", [Int32(addr), Float32(v)], "r,f", loc, ip)


@dsl_user_op
def ldc_f32(addr: Int32, *, loc=None, ip=None):
    """Load from another cluster CTA's shared memory (addr from mapa)."""
    return Float32(llvm.inline_asm(T.f32(), [Int32(addr).ir_value(loc=loc, ip=ip)],
                                   "ld.shared::cluster.f32 $0, [$1];", "=f,r", has_side_effects=True, loc=loc, ip=ip))


@dsl_user_op
def mbar_arrive_remote(mbar: Int32, *, loc=None, ip=None):
    """Arrive (release, cluster scope: this thread's earlier shared-memory writes and reads are
    ordered before it) on an mbarrier of a cluster CTA (address from mapa)."""
    _effect("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [$0];", [Int32(mbar)], "r", loc, ip)


@dsl_user_op
def mbar_wait_cluster(mbar: Int32, phase: Int32, *, loc=None, ip=None):
    """Spin until this CTA's mbarrier phase of parity `phase` completed, acquiring (cluster scope)
    what the remote arrivals released."""
    _effect("{.reg .pred done;\n\tWAITC:\n\t"
            "mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 done, [$0], $1;\n\t"
            "@!done bra WAITC;}", [Int32(mbar), Int32(phase)], "r,r", loc, ip)
