"""Collective cost models: Hockney alpha-beta-gamma forms per operation and algorithm.

Notation (every docstring below uses it)
-----------------------------------------
``p`` ranks, ``n`` bytes (see *Message size* below), ``alpha`` seconds per message, ``beta``
seconds per byte on one rank's link, ``gamma`` seconds per byte reduced. ``lg p`` is ``log2 p``;
``p' = 2**floor(lg p)`` is the largest power of two <= p and ``r = p - p'`` the excess ranks;
``[r>0]`` is 1 when p is not a power of two. Formulas are those of Thakur, Rabenseifner & Gropp,
"Optimization of Collective Communication Operations in MPICH", IJHPCA 19(1), 2005 (TRG05), with
MPICH's handling of non-power-of-two rank counts: the ``r`` excess ranks first fold their data
onto a partner (one step of ``alpha + n*beta (+ n*gamma)``), the ``p'`` remaining ranks run the
power-of-two algorithm, and the result is sent back to the excess ranks (one more step). The
recursive-doubling allgather and reduce-scatter are the exceptions: MPICH patches the missing
blocks inside the doubling loop (:func:`_allgather_recursive_doubling`,
:func:`_reduce_scatter_recursive_doubling`); and after the fold, recursive halving counts the
folded ranks' blocks twice (:func:`_merged_halving`).

Eager sends (``eager=True``): below ``eager_threshold`` bytes (default: SimGrid's 65536,
``data/reference/collectives.yaml`` ``mpi_eager``) a send does not wait for its transfer, so the
sends one rank posts in a row share its link. The binomial broadcast and the non-power-of-two
recursive-doubling allgather and reduce-scatter and the van de Geijn broadcast's scatter are
costed that way; the other forms are unchanged (each of their steps is one exchange per rank).
Checked against SimGrid in ``tests/test_simgrid.py``.

Every step costs ``max(alpha + s*beta, gap)`` where ``s`` is the bytes that step sends and
``gap = m / message_rate`` is the message-rate floor for the ``m`` messages a host issues in that
step (a fabric's message rate is per host; ``m`` is the number of ranks on the host that send at
once). Without a message-rate limit ``gap = 0`` and the forms are exactly TRG05's.

Message size: the nccl-tests convention
---------------------------------------
``nbytes`` is the ``size`` column of nccl-tests (NVIDIA/nccl-tests doc/PERFORMANCE.md), so
``algbw = nbytes / t`` and ``busbw`` compare directly with nccl-tests output:

==============  ===============================================  =======================
op              nbytes is                                        busbw = algbw * factor
==============  ===============================================  =======================
allreduce       the buffer on each rank (input = output size)    2 (p-1) / p
allgather       the gathered output on each rank (p x sendcount)  (p-1) / p
reduce_scatter  the input on each rank (p x recvcount)           (p-1) / p
alltoall        the send buffer on each rank (p blocks of n/p)   (p-1) / p
broadcast       the buffer broadcast from the root               1
reduce          the buffer reduced to the root                   1
barrier         ignored (a barrier moves no payload)             (no bandwidth: NaN)
==============  ===============================================  =======================

Nodes, fabrics and rails
------------------------
``ranks_per_node=g`` (default 1) puts ``g`` consecutive ranks on each host, ``N = ceil(p/g)``
hosts; ``intra_fabric`` (default ``"shm"``) joins the ranks of one host and ``fabric`` joins the
hosts. When everything fits on one host (``N == 1``) all steps use the intra fabric. Otherwise a
flat algorithm (all but ``ring`` and ``hierarchical``) is costed with every step on ``fabric``,
the ``g`` ranks of a host sharing its ``links_per_host`` links (``beta * max(1, g/links)``) and
its message rate (``m = g``) -- pessimistic for packed ranks, which is why MPI libraries and NCCL
use hierarchical and node-aware schemes at scale. ``ring`` is node-aware as in NCCL: consecutive
ranks of a host are neighbours, so only host-boundary edges use the fabric, and
``C = min(links_per_host, g)`` rings run in parallel, one per NIC (rail). ``hierarchical`` runs an
intra-node phase on ``intra_fabric``, an inter-node phase between the ``N`` hosts (one
sub-collective per local rank, each on its rail) and a final intra-node phase.

``topology=`` (a :class:`~hpclab.network.topology.Topology` or preset name) adds
``extra_hops(N) * per_hop_latency`` to the inter-node ``alpha`` and multiplies the inter-node
``beta`` by the oversubscription of the highest tier crossed (rings by
``max(1, ratio / hosts_per_leaf)``, see :mod:`hpclab.network.topology`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hpclab._validate import (MAX_NBYTES, MAX_RANKS, HpclabError, check_choice, check_finite_array,
                              check_positive)
from hpclab.network.fabrics import Fabric, fabric as _fabric

__all__ = ["OPS", "ALGORITHMS", "collective_time", "best_algorithm", "algorithm_times",
           "busbw", "algbw", "busbw_factor", "sweep", "nccl_time", "NCCL_ALGORITHMS", "NCCL_PROTOCOLS"]

OPS = ("allreduce", "allgather", "reduce_scatter", "broadcast", "reduce", "alltoall", "barrier")

#: Algorithms per operation (``"auto"`` picks the fastest of these per point).
ALGORITHMS = {
    "allreduce": ("ring", "recursive_doubling", "rabenseifner", "double_binary_tree", "hierarchical"),
    "allgather": ("ring", "recursive_doubling", "bruck", "hierarchical"),
    "reduce_scatter": ("ring", "pairwise", "recursive_halving", "recursive_doubling", "hierarchical"),
    "broadcast": ("binomial", "scatter_allgather", "ring", "double_binary_tree", "hierarchical"),
    "reduce": ("binomial", "rabenseifner", "ring", "double_binary_tree", "hierarchical"),
    "alltoall": ("pairwise", "bruck", "hierarchical"),
    "barrier": ("bruck", "recursive_doubling", "binomial", "hierarchical"),
}
ALL_ALGORITHMS = tuple(dict.fromkeys(a for algs in ALGORITHMS.values() for a in algs))
OPTIONS = ("ranks_per_node", "intra_fabric", "topology", "eager", "eager_threshold")
#: Options of ``library="nccl"`` (see :func:`nccl_time`).
NCCL_OPTIONS = ("ranks_per_node", "intra_fabric", "nvls", "generation", "channels", "cpu", "launch",
                "protocol", "topology")

_RING_LIKE = {"ring"}


# --------------------------------------------------------------------------------------------
# Step primitives (all vectorised; arguments broadcast)


def _step(k, s, a, b, gap):
    """``k`` steps of ``s`` bytes: ``k * max(alpha + s*beta, gap)``."""
    return k * np.maximum(a + s * b, gap)


def _halving(L, n, a, b, gap):
    """``sum_{j=1..L} max(alpha + n*beta/2**j, gap)`` in closed form (recursive halving/doubling).

    Without the floor this is ``L*alpha + (1 - 2**-L) * n * beta``. With it, the first ``m``
    steps (the large ones) are above the floor, where ``m = floor(lg(n*beta/(gap-alpha)))``
    clipped to ``[0, L]``.
    """
    nb = n * b
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(gap > a, nb / np.where(gap > a, gap - a, 1.0), np.inf)
        m = np.where(ratio >= 1.0, np.floor(np.log2(np.maximum(ratio, 1.0))), 0.0)
    m = np.clip(m, 0.0, L)
    return m * a + nb * (1.0 - np.exp2(-m)) + (L - m) * np.maximum(gap, a)


def _bruck_like(L, total, a, b, gap):
    """``L`` steps whose sizes halve and sum to ``total`` bytes (Bruck / binomial scatter)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(L > 0, total / np.where(L > 0, 1.0 - np.exp2(-L), 1.0), 0.0)
    return _halving(L, scale, a, b, gap)


def _pipe(depth, n, a, bb, gap):
    """Optimally pipelined tree or chain of ``depth`` levels carrying ``n`` bytes.

    With ``k`` segments: ``(depth - 1 + k) * max(alpha + n*bb/k, gap)``; the segment count that
    minimises the unfloored form is ``k = max(1, sqrt((depth-1) * n*bb / alpha))``, which gives
    ``(sqrt((depth-1)*alpha) + sqrt(n*bb))**2`` (the classic pipelining optimum; e.g.
    Pjesivac-Grbovic et al., Cluster Computing 10, 2007). Zero when ``depth == 0``.
    """
    d = np.maximum(depth - 1.0, 0.0)
    x = n * bb
    k = np.maximum(1.0, np.sqrt(d * x / a))
    return np.where(depth > 0, (d + k) * np.maximum(a + x / k, gap), 0.0)


def _logs(p):
    """floor(lg p), ceil(lg p), p' = 2**floor(lg p), [r>0] -- exact for integers (frexp)."""
    mant, expo = np.frexp(p)
    lgf = expo - 1.0
    pow2 = mant == 0.5
    lgc = np.where(pow2, lgf, lgf + 1.0)
    p2 = np.exp2(lgf)
    return lgf, lgc, p2, (~pow2).astype(float)


# --------------------------------------------------------------------------------------------
# Flat algorithms on one link type (a, b, g = alpha, beta, gamma; gap = message-rate floor)


def _allreduce(alg, n, p, a, b, g, gap):
    """Allreduce of n bytes on every rank (TRG05 section 4.4; p' = 2**floor(lg p), r = p - p').

    ring: ``2(p-1) a + 2(p-1)/p n b + (p-1)/p n g``;
    recursive_doubling: ``lg p' (a + n b + n g) + [r>0](2a + 2n b + n g)``;
    rabenseifner: ``2 lg p' a + 2(p'-1)/p' n b + (p'-1)/p' n g + [r>0](2a + 2n b + n g)``;
    double_binary_tree: ``P(ceil lg p, n(b+g)) + P(ceil lg p, n b)`` (see :func:`_pipe`).
    """
    lgf, lgc, p2, extra = _logs(p)
    if alg == "ring":
        return _step(2 * (p - 1), n / p, a, b, gap) + (p - 1) / p * n * g
    if alg == "recursive_doubling":
        return _step(lgf, n, a, b, gap) + lgf * n * g + extra * (_step(2, n, a, b, gap) + n * g)
    if alg == "rabenseifner":
        return (2 * _halving(lgf, n, a, b, gap) + (p2 - 1) / p2 * n * g
                + extra * (_step(2, n, a, b, gap) + n * g))
    if alg == "double_binary_tree":
        return _pipe(lgc, n, a, b + g, gap) + _pipe(lgc, n, a, b, gap)
    raise AssertionError(alg)


def _allgather_recursive_doubling(n, p, a, b, gap, eager=0.0):
    """Recursive-doubling allgather as MPICH codes it for any ``p``
    (``MPIR_Allgather_intra_recursive_doubling``, pmodels/mpich
    src/mpi/coll/allgather/allgather_intra_recursive_doubling.c; SimGrid's ``allgather__rdb``).

    With ``s = n/p`` one rank's block and ``p = p' + r`` (``p' = 2**floor(lg p)``): the ``p'``
    ranks run the power-of-two exchange (``T(p') = lg p' alpha + (p'-1) s beta``) while the ``r``
    ranks above run the same algorithm among themselves (``T(r)``); in the last doubling step
    ranks ``0..r-1`` swap with ``p'..p-1`` (``alpha + p' s beta``: the larger half is sent one
    way), and the ``p' - r`` ranks without a partner get the ``r`` missing blocks inside the
    step, from the ranks that have them, over ``lg p' - floor(lg r)`` halving rounds of
    ``alpha + r s beta`` each::

        T(p) = max(T(p'), T(r)) + alpha + p' s beta + (lg p' - floor(lg r)) (alpha + r s beta)

    applied to the binary digits of ``p`` from the lowest (a power of two is one digit; 24 =
    16 + 8 gives ``6 alpha + 39/24 n beta`` against ``6 alpha + 47/24 n beta`` had the 8 extra ranks
    folded onto partners first). Exact when ``r`` is a power of two; otherwise ``T(r)`` is the
    slowest of the upper ranks, an upper bound (checked against SimGrid, ``tests/test_simgrid.py``).

    Eager sends (below the threshold ``eager``, bytes): a rank that has the ``r`` blocks posts
    its patch sends of all rounds at once, so they share its link and the patch is a binomial
    fan-out, ``sum_{i=1..k} (alpha + i r s beta)`` for ``k`` rounds (:func:`_fan_chain`); and when
    ``p' s`` is eager too, ranks ``0..r-1`` start the patch once their ``r`` blocks arrived, sharing
    the link with the rest of the large send (its ``R = (p' - r) s beta - alpha`` seconds left when
    the patch sends start moving): the last step costs ``max(alpha + r s beta + patch',
    alpha + (p' + k r) s beta)`` where ``patch'`` adds ``min(R, r s beta)`` to the fan-out's first
    level. Not modelled: an eager patch still in flight when the next doubling step starts (it
    slows that step's sends; SimGrid shows up to 6% at 28 ranks, where ``r = 12`` is itself
    patched). Every step is floored at the message gap as elsewhere.
    """
    s = n / p
    lgf, lgc, p2, extra = _logs(p)
    if not np.any(extra):  # every p a power of two: TRG05's form
        return _halving(lgf, n, a, b, gap)

    def patched(start, m, low, rounds):
        patch = rounds * _step(1, low * s, a, b, gap)
        if np.any(eager > 0):
            patch = np.where(low * s < eager, _fan_chain(rounds, low * s, a, b, gap), patch)
        out = start + _step(1, m * s, a, b, gap) + patch
        if np.any(eager > 0):  # the first fan-out level shares the link with what is left
            left = np.maximum(0.0, (m - low) * s * b - a)  # of the large send, in seconds
            x = low * s * b
            first = np.maximum(a + rounds * x + np.minimum(left, x), rounds * gap)
            chain = _step(1, low * s, a, b, gap) + first + _fan_chain(rounds - 1, low * s, a, b, gap)
            shared = np.maximum(chain, _step(1, (m + rounds * low) * s, a, b, gap))
            out = np.where(m * s < eager, start + shared, out)
        return out

    # T(2**j) = sum_{i<j} max(alpha + 2**i s beta, gap)
    return _digit_recursion(p, np.broadcast(n, p, a, b, gap).shape,
                            lambda m: np.maximum(a + (m / 2) * s * b, gap), patched)


def _digit_recursion(p, shape, grow, patched):
    """The non-power-of-two recursion over the binary digits of ``p`` that the recursive-doubling
    allgather and reduce-scatter share (MPICH patches the missing blocks inside the doubling
    loop). ``full`` is the time of ``2**j`` ranks, grown by ``grow(m)`` at each digit ``j > 0``
    (``m = 2**j``); at a set digit above lower digits worth ``low``, the time becomes
    ``patched(max(full, T), m, low, rounds)`` with ``rounds = j - floor(lg low)``; at the lowest
    set digit it is ``full``."""
    pk = np.asarray(p, dtype=np.int64)
    nbits = int(np.max(p)).bit_length()
    t = np.zeros(shape)
    full = t
    low = np.zeros(np.shape(p))  # the value of the digits below the current one
    lg_low = np.zeros(np.shape(p))  # floor(lg low)
    for j in range(nbits):
        m = float(2 ** j)
        if j > 0:
            full = full + grow(m)
        bit = (pk >> j) & 1 == 1
        if not np.any(bit):
            continue
        has_low = bit & (low > 0)
        if np.any(has_low):
            t = np.where(has_low, patched(np.maximum(full, t), m, low, j - lg_low), t)
        first_bit = bit & (low == 0)
        if np.any(first_bit):
            t = np.where(first_bit, full, t)
        lg_low = np.where(bit, float(j), lg_low)  # floor(lg low) for the digits above
        low = low + np.where(bit, m, 0.0)
    return t


def _fan_chain(k, x, a, b, gap):
    """``sum_{i=1..k} max(alpha + i x beta, i gap)``: the slowest path of a binomial fan-out of
    ``k`` levels whose nodes post all their sends of ``x`` bytes at once (they share the node's
    link, so ``i`` of them take ``i x beta``); ``k`` may be an array."""
    kmax = int(np.max(k)) if np.size(k) else 0
    out = np.zeros(np.broadcast(k, x).shape)
    for i in range(1, kmax + 1):
        out = out + np.where(k >= i, np.maximum(a + i * x * b, i * gap), 0.0)
    return out


def _allgather(alg, n, p, a, b, g, gap, eager=0.0):
    """Allgather, n = gathered bytes per rank (TRG05 section 4.1).

    ring: ``(p-1) a + (p-1)/p n b``; recursive_doubling: ``lg p a + (p-1)/p n b`` for a power of
    two, MPICH's in-loop patching otherwise (:func:`_allgather_recursive_doubling`; ``eager``: the
    eager threshold, bytes);
    bruck: ``ceil(lg p) a + (p-1)/p n b``.
    """
    lgf, lgc, p2, extra = _logs(p)
    if alg == "ring":
        return _step(p - 1, n / p, a, b, gap)
    if alg == "recursive_doubling":
        return _allgather_recursive_doubling(n, p, a, b, gap, eager)
    if alg == "bruck":
        return _bruck_like(lgc, (p - 1) / p * n, a, b, gap)
    raise AssertionError(alg)


def _merged_halving(L, r, s, a, b, gap):
    """Recursive halving over ``p' = 2**L`` ranks of which the first ``r`` hold two ranks' blocks
    (``s`` bytes each), as MPICH and Open MPI run it after folding: the step that halves a
    group of ``g`` ranks moves the heavier half, ``g/2 + min(r, g/2)`` blocks, so the steps
    sum to ``sum_{i<L} (2**i + min(r, 2**i)) s`` (``(p'-1) s`` when ``r = 0``). Returns
    (seconds, bytes reduced on the slowest rank)."""
    t = np.zeros(np.broadcast(L, r, s, a, b, gap).shape)
    vol = np.zeros(np.broadcast(L, r, s).shape)
    for i in range(int(np.max(L)) if np.size(L) else 0):
        size = (2.0 ** i + np.minimum(r, 2.0 ** i)) * s
        on = i < L
        t = t + np.where(on, np.maximum(a + size * b, gap), 0.0)
        vol = vol + np.where(on, size, 0.0)
    return t, vol


def _reduce_scatter(alg, n, p, a, b, g, gap, eager=0.0):
    """Reduce-scatter, n = input bytes per rank (TRG05 section 4.3).

    ring, pairwise: ``(p-1) a + (p-1)/p n (b+g)``; recursive_halving (MPICH's
    ``MPIR_Reduce_scatter_intra_recursive_halving``, Open MPI's basic recursive halving): the
    ``r`` excess ranks fold onto partners, whose blocks then count double in the halving
    (:func:`_merged_halving`): ``lg p' a + sum_{i<lg p'} (2**i + min(r, 2**i)) n/p (b+g) +
    [r>0](2a + n b + n g + n/p b)``, which is ``lg p a + (p-1)/p n (b+g)`` for a power of two;
    recursive_doubling (non-commutative): ``lg p a + n (lg p - (p-1)/p)(b+g)`` for a power of two, MPICH's
    in-loop patching otherwise (:func:`_reduce_scatter_recursive_doubling`).
    """
    lgf, lgc, p2, extra = _logs(p)
    if alg in ("ring", "pairwise"):
        return _step(p - 1, n / p, a, b, gap) + (p - 1) / p * n * g
    if alg == "recursive_halving":
        t, vol = _merged_halving(lgf, p - p2, n / p, a, b, gap)
        return t + vol * g + extra * (_step(1, n, a, b, gap) + n * g + _step(1, n / p, a, b, gap))
    if alg == "recursive_doubling":
        return _reduce_scatter_recursive_doubling(n, p, a, b, g, gap, eager)
    raise AssertionError(alg)


def _reduce_scatter_recursive_doubling(n, p, a, b, g, gap, eager=0.0):
    """Recursive-doubling reduce-scatter (for non-commutative operations) as MPICH codes it
    (``MPIR_Reduce_scatter_intra_recursive_doubling``, pmodels/mpich
    src/mpi/coll/reduce_scatter/reduce_scatter_intra_recursive_doubling.c; SimGrid's
    ``reduce_scatter__mpich_rdb``).

    With ``s = n/p``: the step with distance ``2**i`` exchanges every block except the sender's
    subtree of ``2**i`` ranks, ``(p - 2**i) s`` bytes, received and reduced: a power of two takes
    ``sum_{i<lg p} (alpha + (p - 2**i) s (beta+gamma)) = lg p alpha + n (lg p - (p-1)/p)(beta+gamma)``
    (TRG05). Otherwise the missing partners are patched inside the loop as in the allgather
    (:func:`_allgather_recursive_doubling`), with the same digit recursion: for ``q = q' + r``
    ranks of the ``p``, ``R(q) = max(R(q'), R(r)) + (1 + k)(alpha + (p - r) s (beta+gamma))``,
    ``k = lg q' - floor(lg r)`` patch rounds, each sending the ``(p - r)`` blocks just received
    (24 ranks: ``6 alpha + 113/24 n (beta+gamma)`` against TRG05's ``5 alpha + 97/24 n``).
    With eager sends (below ``eager`` bytes) the patch rounds fan out on one link as in the
    allgather (:func:`_fan_chain`).
    """
    s = n / p

    def step(size):
        return np.maximum(a + size * b, gap) + size * g

    def patched(start, m, low, rounds):
        size = (p - low) * s
        patch = rounds * step(size)
        if np.any(eager > 0):  # eager patch sends of all rounds fan out on one link
            patch = np.where(size < eager, _fan_chain(rounds, size, a, b, gap) + rounds * size * g, patch)
        return start + step(size) + patch

    # R(2**j) = sum_{i<j} step((p - 2**i) s)
    return _digit_recursion(p, np.broadcast(n, p, a, b, g, gap).shape,
                            lambda m: np.where(m / 2 < p, step((p - m / 2) * s), 0.0), patched)


def _binomial_broadcast_eager(n, p, a, b, gap):
    """Binomial broadcast whose sends are eager: a parent posts all its sends at once and they
    share its link, so its ``k`` children all receive at ``alpha + k n beta`` after it did.

    In the binomial tree of MPICH (``MPIR_Bcast_intra_binomial``; SimGrid's
    ``bcast__binomial_tree``) a rank whose lowest set bit is ``2**j`` has ``j`` children (fewer
    at the tail of a non-power-of-two tree). The time is the slowest root-to-leaf path, each node
    on it adding ``alpha + k n beta``. A full subtree of order ``i`` takes
    ``F(i) = sum_{k=1..i} (alpha + k n beta) = i alpha + i(i+1)/2 n beta``; for ``p`` that is not a
    power of two (``p = 2**e + q``, ``0 < q < 2**e``) the root has ``e + 1`` children, the last a
    tree of ``q`` ranks::

        E(p) = alpha + (e+1) n beta + max(F(e-1), E(q)),   E(2**e) = F(e)

    (applied to the binary digits of ``p`` from the lowest). A step of ``k`` messages is floored
    at ``k`` message gaps.
    """
    nbits = int(np.max(p)).bit_length()
    nb = n * b
    shape = np.broadcast(n, p).shape
    t = np.zeros(shape)
    f_prev = np.zeros(shape)  # F(j-1)
    f = np.zeros(shape)  # F(j)
    seen = np.zeros(np.shape(p), dtype=bool)  # a lower digit is set
    for j in range(nbits):
        if j > 0:
            f_prev, f = f, f + np.maximum(a + j * nb, j * gap)
        bit = np.mod(np.floor(p / float(2 ** j)), 2.0) == 1.0
        upper = np.maximum(a + (j + 1) * nb, (j + 1) * gap) + np.maximum(f_prev, t)
        t = np.where(bit, np.where(seen, upper, f), t)
        seen = seen | bit
    return t


def _binomial_scatter_eager(n, p, a, b, gap):
    """Binomial scatter (MPICH's, as in the van de Geijn broadcast) whose sends are all eager: a
    node posts its pieces at once and they share its link, so (max-min fairness) a piece of
    ``x`` bytes arrives ``alpha + sum_y min(x, y) beta`` after the node got its own, ``y`` over
    the node's pieces. A full subtree of order ``i`` (pieces ``s, 2s, .., 2**(i-1) s``, ``s = n/p``)
    takes ``S(i) = sum_{k=1..i} (alpha + (2**k - 1) s beta)`` along its largest pieces; a tree of
    ``q = 2**e + q2`` ranks sends ``2**i s`` (i < e) and ``q2 s`` (to a tree of ``q2`` ranks)::

        S(q) = max(alpha + (2**e - 1 + min(q2, 2**(e-1))) s beta + S(e-1),
                   alpha + (sum_{k<e} min(2**k, q2) + q2) s beta + S(q2))

    (digits of ``p`` from the lowest, as :func:`_binomial_broadcast_eager`). Each piece is
    floored at one message gap.
    """
    s = n / p
    x = s * b  # seconds per block
    pk = np.asarray(p, dtype=np.int64)
    nbits = int(np.max(p)).bit_length()
    shape = np.broadcast(n, p, a, b, gap).shape
    t = np.zeros(shape)
    full_prev = np.zeros(shape)  # S(e-1)
    full = np.zeros(shape)  # S(e)
    low = np.zeros(np.shape(p))
    lg_low = np.zeros(np.shape(p))
    for e in range(nbits):
        if e > 0:
            full_prev, full = full, full + np.maximum(a + (2.0 ** e - 1) * x, gap)
        bit = (pk >> e) & 1 == 1
        if not np.any(bit):
            continue
        has_low = bit & (low > 0)
        if np.any(has_low):
            shared = (2.0 ** (lg_low + 1) - 1) + low * (e - 1 - lg_low)  # sum_{k<e} min(2**k, low)
            last = np.maximum(a + (shared + low) * x, gap) + t
            if e > 0:
                big = np.maximum(a + (2.0 ** e - 1 + np.minimum(low, 2.0 ** (e - 1))) * x, gap) + full_prev
                last = np.maximum(last, big)
            t = np.where(has_low, last, t)
        first_bit = bit & (low == 0)
        if np.any(first_bit):
            t = np.where(first_bit, full, t)
        lg_low = np.where(bit, float(e), lg_low)
        low = low + np.where(bit, 2.0 ** e, 0.0)
    return t


def _broadcast(alg, n, p, a, b, g, gap, eager=0.0):
    """Broadcast of n bytes (TRG05 section 4.2).

    binomial: ``ceil(lg p)(a + n b)``, or for messages below the eager threshold ``eager`` (0:
    none) with a parent's sends sharing its link, :func:`_binomial_broadcast_eager`;
    scatter_allgather (van de Geijn): ``(ceil(lg p) + p - 1) a + 2(p-1)/p n b``, with an eager
    scatter (its largest piece below ``eager``) :func:`_binomial_scatter_eager` instead; ring:
    ``P(p-1, n b)``; double_binary_tree: ``P(ceil lg p, n b)``.
    """
    lgf, lgc, p2, extra = _logs(p)
    if alg == "binomial":
        t = _step(lgc, n, a, b, gap)
        if np.any(eager > 0):
            t = np.where(n < eager, _binomial_broadcast_eager(n, p, a, b, gap), t)
        return t
    if alg == "scatter_allgather":
        scatter = _bruck_like(lgc, (p - 1) / p * n, a, b, gap)
        if np.any(eager > 0):  # every piece eager (the largest is about n/2)
            piece = np.ceil(p / 2) / p * n
            scatter = np.where(piece < eager, _binomial_scatter_eager(n, p, a, b, gap), scatter)
        return scatter + _step(p - 1, n / p, a, b, gap)
    if alg == "ring":
        return _pipe(p - 1, n, a, b, gap)
    if alg == "double_binary_tree":
        return _pipe(lgc, n, a, b, gap)
    raise AssertionError(alg)


def _reduce(alg, n, p, a, b, g, gap):
    """Reduce of n bytes to a root (TRG05 section 4.5).

    binomial: ``ceil(lg p)(a + n b + n g)``; rabenseifner (reduce-scatter + gather):
    ``2 lg p' a + 2(p'-1)/p' n b + (p'-1)/p' n g + [r>0](a + n b + n g)``; ring:
    ``P(p-1, n(b+g))``; double_binary_tree: ``P(ceil lg p, n(b+g))``.
    """
    lgf, lgc, p2, extra = _logs(p)
    if alg == "binomial":
        return _step(lgc, n, a, b, gap) + lgc * n * g
    if alg == "rabenseifner":
        return (2 * _halving(lgf, n, a, b, gap) + (p2 - 1) / p2 * n * g
                + extra * (_step(1, n, a, b, gap) + n * g))
    if alg == "ring":
        return _pipe(p - 1, n, a, b + g, gap)
    if alg == "double_binary_tree":
        return _pipe(lgc, n, a, b + g, gap)
    raise AssertionError(alg)


def _alltoall(alg, n, p, a, b, g, gap):
    """Alltoall, n = send bytes per rank (TRG05 section 4.6).

    pairwise: ``(p-1)(a + n/p b)``; bruck: step ``k`` (``k < ceil(lg p)``) sends the blocks whose
    index has bit ``k`` set, ``c_k = floor(p / 2**(k+1)) 2**k + max(0, p mod 2**(k+1) - 2**k)`` of
    them: ``sum_k (a + c_k n/p b)``, which is ``lg p (a + n/2 b)`` for a power of two.
    """
    lgf, lgc, p2, extra = _logs(p)
    if alg == "pairwise":
        return _step(p - 1, n / p, a, b, gap)
    if alg == "bruck":
        if not np.any(extra):
            return _step(lgc, n / 2, a, b, gap)
        t = np.zeros(np.broadcast(n, p, a, b, gap).shape)
        for k in range(int(np.max(lgc))):
            half, whole = 2.0 ** k, 2.0 ** (k + 1)
            count = np.floor(p / whole) * half + np.maximum(0.0, np.mod(p, whole) - half)
            t = t + np.where(k < lgc, np.maximum(a + count * n / p * b, gap), 0.0)
        return t
    raise AssertionError(alg)


def _barrier(alg, n, p, a, b, g, gap):
    """Barrier (no payload). bruck (dissemination): ``ceil(lg p) a``; recursive_doubling:
    ``lg p' a + [r>0] 2a``; binomial (gather + release): ``2 ceil(lg p) a``."""
    lgf, lgc, p2, extra = _logs(p)
    if alg == "bruck":
        return _step(lgc, 0.0, a, b, gap)
    if alg == "recursive_doubling":
        return _step(lgf, 0.0, a, b, gap) + extra * _step(2, 0.0, a, b, gap)
    if alg == "binomial":
        return _step(2 * lgc, 0.0, a, b, gap)
    raise AssertionError(alg)


_FLAT = {"allreduce": _allreduce, "allgather": _allgather, "reduce_scatter": _reduce_scatter,
         "broadcast": _broadcast, "reduce": _reduce, "alltoall": _alltoall, "barrier": _barrier}


def _flat(op, alg, n, p, a, b, g, gap, eager=0.0):
    """One flat algorithm; ``eager``: the eager threshold in bytes (0: every send waits for its
    transfer), which the binomial and van de Geijn broadcasts and the non-power-of-two
    recursive-doubling allgather and reduce-scatter depend on."""
    if op == "broadcast":
        return _broadcast(alg, n, p, a, b, g, gap, eager)
    if op == "allgather":
        return _allgather(alg, n, p, a, b, g, gap, eager)
    if op == "reduce_scatter":
        return _reduce_scatter(alg, n, p, a, b, g, gap, eager)
    return _FLAT[op](alg, n, p, a, b, g, gap)


def _flat_best(op, n, p, a, b, g, gap, b_ring=None, eager=0.0):
    """Fastest flat algorithm per point (``b_ring``: the beta a ring sees, if different)."""
    out = None
    for alg in ALGORITHMS[op]:
        if alg == "hierarchical":
            continue
        bb = b_ring if (b_ring is not None and alg in _RING_LIKE) else b
        t = _flat(op, alg, n, p, a, bb, g, gap, eager)
        out = t if out is None else np.minimum(out, t)
    return out


# --------------------------------------------------------------------------------------------
# Parameters of a (possibly two-level) network


@dataclass(frozen=True)
class _Net:
    """Fabric parameters as arrays (they broadcast, e.g. over a ``fabric`` axis in sweeps)."""

    a: np.ndarray  # inter-node alpha, beta, gamma, seconds per message (1/rate, 0 if none)
    b: np.ndarray
    g: np.ndarray
    gap: np.ndarray
    hop: np.ndarray  # per_hop_latency
    links: np.ndarray
    ai: np.ndarray  # intra-node
    bi: np.ndarray
    gi: np.ndarray
    gapi: np.ndarray
    ppn: int
    topo: object  # Topology or None
    eager: float = 0.0  # eager threshold, bytes (0: no eager sends)

    @classmethod
    def of(cls, fabrics, intra: Fabric, ppn: int, topo, axis_shape=None, eager=0.0):
        fs = list(fabrics)

        def col(attr):
            v = np.array([getattr(f, attr) for f in fs], dtype=float)
            return v.reshape(axis_shape) if axis_shape is not None else v[0]

        gaps = [f.message_gap for f in fs]
        gap = np.array(gaps, dtype=float)
        return cls(a=col("alpha"), b=col("beta"), g=col("gamma"),
                   gap=gap.reshape(axis_shape) if axis_shape is not None else gap[0],
                   hop=col("per_hop_latency"), links=col("links_per_host"),
                   ai=np.float64(intra.alpha), bi=np.float64(intra.beta), gi=np.float64(intra.gamma),
                   gapi=np.float64(intra.message_gap), ppn=ppn, topo=topo, eager=float(eager))


def _time(op, alg, n, p, net: _Net):
    """Seconds for one (op, algorithm) on arrays n, p (already validated, broadcastable)."""
    ppn = net.ppn
    nodes = np.ceil(p / ppn)
    multi = nodes > 1
    if net.topo is not None:
        hops = net.topo.extra_hops(nodes)
        over = (net.topo.ring_oversubscription_at(nodes) if alg in _RING_LIKE
                else net.topo.oversubscription_at(nodes))
    else:
        hops, over = 0.0, 1.0
    a_e = net.a + hops * net.hop
    # intra-node steps: the ranks of the host send at once (message rate is per host)
    gi = net.gapi * np.minimum(p, ppn)
    if alg == "hierarchical":
        over_ring = net.topo.ring_oversubscription_at(nodes) if net.topo is not None else 1.0
        return _hierarchical(op, n, p, nodes, net, a_e, over, over_ring)
    if alg in _RING_LIKE and ppn > 1:
        rings = np.minimum(net.links, ppn)
        a = np.where(multi, np.maximum(net.ai, a_e), net.ai)
        b = np.where(multi, np.maximum(net.bi, net.b * over / rings), net.bi)
        gap = np.where(multi, np.maximum(gi, rings * net.gap), gi)
        gam = np.where(multi, np.maximum(net.g, net.gi), net.gi)
    else:
        share = np.maximum(1.0, ppn / net.links)
        a = np.where(multi, a_e, net.ai) if ppn > 1 else a_e
        b = np.where(multi, net.b * over * share, net.bi) if ppn > 1 else net.b * over
        gap = np.where(multi, ppn * net.gap, gi) if ppn > 1 else net.gap
        gam = np.where(multi, net.g, net.gi) if ppn > 1 else net.g
    return _flat(op, alg, n, p, a, b, gam, gap, net.eager)


def _hierarchical(op, n, p, nodes, net: _Net, a_e, over, over_ring):
    ppn = net.ppn
    loc = np.minimum(p, ppn).astype(float)  # ranks on one host
    # intra-node phases on the intra fabric (all local ranks send at once)
    ai, bi, gmi, gapi = net.ai, net.bi, net.gi, net.gapi * loc
    # inter-node phase: one sub-collective per local rank (rail), sharing the host's links
    share = np.maximum(1.0, loc / net.links)
    ae, be, gme, gape = a_e, net.b * over * share, net.g, net.gap * loc
    be_ring = net.b * over_ring * share
    with np.errstate(divide="ignore", invalid="ignore"):
        part = n / loc

    def intra(o, size):
        return _flat_best(o, size, loc, ai, bi, gmi, gapi, eager=net.eager)

    def inter(o, size):
        return _flat_best(o, size, nodes, ae, be, gme, gape, b_ring=be_ring, eager=net.eager)

    if op == "allreduce":
        return intra("reduce_scatter", n) + inter("allreduce", part) + intra("allgather", n)
    if op == "allgather":
        return inter("allgather", part) + intra("allgather", n)
    if op == "reduce_scatter":
        return intra("reduce_scatter", n) + inter("reduce_scatter", part)
    if op == "broadcast":
        return inter("broadcast", n) + intra("broadcast", n)
    if op == "reduce":
        return intra("reduce", n) + inter("reduce", n)
    if op == "alltoall":
        return intra("alltoall", n) + inter("alltoall", n)
    if op == "barrier":
        return 2 * intra("barrier", n) + inter("barrier", n)
    raise AssertionError(op)


# --------------------------------------------------------------------------------------------
# Public API


def _check_op_alg(op, algorithm, allow_auto=True):
    check_choice("op", op, OPS)
    allowed = (("auto",) if allow_auto else ()) + ALGORITHMS[op]
    if algorithm not in allowed:
        raise HpclabError(f"algorithm for {op} must be one of {', '.join(allowed)}; got {algorithm!r}")
    return op, algorithm


def _options(options):
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise HpclabError(f"unknown option {sorted(unknown)[0]!r}; allowed: {', '.join(OPTIONS)}")
    ppn = options.get("ranks_per_node", 1)
    ppn = check_positive("ranks_per_node", ppn, integer=True)
    intra = _fabric(options.get("intra_fabric", "shm"))
    topo = options.get("topology")
    if topo is not None:
        from hpclab.network.topology import topology as _topology

        topo = _topology(topo)
    return ppn, intra, topo, _eager_threshold(options)


def _eager_threshold(options) -> float:
    """Bytes below which a send is eager (0 unless ``eager=True``): ``eager_threshold`` or the
    default of ``data/reference/collectives.yaml`` (``mpi_eager``)."""
    eager = options.get("eager", False)
    if not isinstance(eager, (bool, np.bool_)):
        raise HpclabError(f"eager must be True or False; got {eager!r}")
    threshold = options.get("eager_threshold")
    if threshold is None:
        threshold = _mpi_eager()["threshold_nbytes"]["value"]
    elif not eager:
        raise HpclabError("eager_threshold needs eager=True")
    threshold = check_finite_array("eager_threshold", threshold, minimum=0, maximum=MAX_NBYTES)
    if np.ndim(threshold) != 0:
        raise HpclabError(f"eager_threshold must be one number of bytes; got shape {np.shape(threshold)}")
    return float(threshold) if eager else 0.0


@lru_cache(maxsize=1)
def _mpi_eager() -> dict:
    """The eager-protocol figures (``data/reference/collectives.yaml``, ``mpi_eager``)."""
    from hpclab._paths import data_dir
    from hpclab._yaml import load_yaml

    return load_yaml(data_dir() / "reference" / "collectives.yaml")["mpi_eager"]


def _inputs(nbytes, ranks):
    n = check_finite_array("nbytes", nbytes, minimum=0, maximum=MAX_NBYTES)
    p = check_finite_array("ranks", ranks, minimum=1, strict=False, integer=True, maximum=MAX_RANKS)
    try:
        n, p = np.broadcast_arrays(n, p)
    except ValueError:
        raise HpclabError(f"nbytes and ranks must broadcast together, got shapes {np.shape(nbytes)} "
                          f"and {np.shape(ranks)}") from None
    return n, p


def _out(t):
    return float(t) if np.ndim(t) == 0 else t


def algorithm_times(op, nbytes, ranks, fabric, **options) -> dict:
    """Seconds for every algorithm of ``op``: ``{algorithm: array}`` (same inputs as
    :func:`collective_time`)."""
    check_choice("op", op, OPS)
    n, p = _inputs(nbytes, ranks)
    ppn, intra, topo, eager = _options(options)
    net = _Net.of([_fabric(fabric)], intra, ppn, topo, eager=eager)
    return {alg: np.broadcast_to(_time(op, alg, n, p, net), n.shape) for alg in ALGORITHMS[op]}


def collective_time(op, nbytes, ranks, fabric, algorithm="auto", **options):
    """Seconds one collective takes, by the Hockney alpha-beta-gamma model.

    Parameters
    ----------
    op : {"allreduce", "allgather", "reduce_scatter", "broadcast", "reduce", "alltoall", "barrier"}
    nbytes : float or array_like
        Message size in bytes, > 0, in the nccl-tests convention (module docstring table).
    ranks : int or array_like
        Number of ranks p >= 1 (1 rank costs 0 s). Broadcasts with ``nbytes``.
    fabric : Fabric or str
        The fabric between hosts (a :class:`Fabric` or a catalog name such as ``"erdma"``).
    algorithm : str
        ``"auto"`` (fastest per point, as NCCL's and MPICH's tuners choose; see
        :func:`best_algorithm` for which) or one of ``ALGORITHMS[op]``.
    ranks_per_node : int, optional
        Ranks (GPUs or processes) per host, default 1.
    intra_fabric : Fabric or str, optional
        Fabric inside a host, default ``"shm"`` (``"nvlink"`` for GPU hosts).
    topology : Topology or str, optional
        Fat-tree / rail-optimised topology adding hops and oversubscription (default: none).
    eager : bool, optional
        Sends below ``eager_threshold`` are eager: they do not wait for their transfer, so a
        rank's consecutive sends share its link (binomial and van de Geijn broadcast,
        non-power-of-two recursive-doubling allgather and reduce-scatter). Default False.
    eager_threshold : float, optional
        Bytes (>= 0) below which a send is eager, with ``eager=True``; default 65536 (SimGrid's
        ``smpi/send-is-detached-thresh``; MPICH CH3: 131072), ``data/reference/collectives.yaml``.

    Returns
    -------
    float or numpy.ndarray
        Seconds, broadcast over ``nbytes`` and ``ranks`` (a float when both are scalars).

    Notes
    -----
    Per-algorithm forms (TRG05 unless noted; the message-rate floor and nodes as in the module
    docstring):

    allreduce
        ring: ``2(p-1) alpha + 2(p-1)/p n beta + (p-1)/p n gamma`` (Patarasuk & Yuan 2009);
        recursive_doubling: ``lg p' (alpha + n beta + n gamma) + [r>0](2 alpha + 2 n beta + n gamma)``;
        rabenseifner (reduce-scatter by recursive halving + allgather by recursive doubling):
        ``2 lg p' alpha + 2 (p'-1)/p' n beta + (p'-1)/p' n gamma + [r>0](2 alpha + 2 n beta + n gamma)``;
        double_binary_tree (NCCL >= 2.4; Sanders, Speck & Traeff 2009): a pipelined reduce and a
        pipelined broadcast over two trees of depth ``ceil(lg p)``, each tree carrying n/2, so each
        rank moves n per phase: ``P(ceil(lg p), n(beta+gamma)) + P(ceil(lg p), n beta)`` with
        ``P(d, x) = (sqrt((d-1) alpha) + sqrt(x))**2``.
    allgather
        ring: ``(p-1) alpha + (p-1)/p n beta``; recursive_doubling: ``lg p alpha + (p-1)/p n beta``
        for a power of two, else MPICH's patching inside the loop, with ``s = n/p``:
        ``T(p) = max(T(p'), T(r)) + alpha + p' s beta + (lg p' - floor(lg r))(alpha + r s beta)``
        (24 ranks: ``6 alpha + 39/24 n beta``); bruck: ``ceil(lg p) alpha + (p-1)/p n beta``.
    reduce_scatter
        ring, pairwise: ``(p-1) alpha + (p-1)/p n (beta + gamma)``; recursive_halving (the folded
        ranks' blocks count double in the halving, as in MPICH and Open MPI):
        ``lg p' alpha + sum_{i<lg p'} (2**i + min(r, 2**i)) n/p (beta+gamma) + [r>0](2 alpha + n beta
        + n gamma + n/p beta)``;
        recursive_doubling (non-commutative): ``lg p alpha + n (lg p - (p-1)/p)(beta+gamma)`` for a
        power of two, else patched in the loop as MPICH does (24 ranks: ``6 alpha + 113/24 n (beta+gamma)``).
    broadcast
        binomial: ``ceil(lg p)(alpha + n beta)`` (with ``eager=True`` and n below the threshold,
        a parent's sends share its link: ``lg p alpha + lg p (lg p + 1)/2 n beta`` for a power of
        two); scatter_allgather (van de Geijn):
        ``(ceil(lg p) + p - 1) alpha + 2 (p-1)/p n beta``; ring (pipelined chain, NCCL):
        ``P(p-1, n beta)``; double_binary_tree: ``P(ceil(lg p), n beta)``.
    reduce
        binomial: ``ceil(lg p)(alpha + n beta + n gamma)``; rabenseifner (reduce-scatter + binomial
        gather): ``2 lg p' alpha + 2 (p'-1)/p' n beta + (p'-1)/p' n gamma + [r>0](alpha + n beta + n gamma)``;
        ring: ``P(p-1, n(beta+gamma))``; double_binary_tree: ``P(ceil(lg p), n(beta+gamma))``.
    alltoall
        pairwise: ``(p-1)(alpha + n/p beta)``; bruck: ``lg p (alpha + n/2 beta)`` for a power of
        two, else step ``k`` sends the ``c_k`` blocks whose index has bit ``k`` set:
        ``sum_{k<ceil(lg p)} (alpha + c_k n/p beta)``.
    barrier
        bruck (dissemination): ``ceil(lg p) alpha``; recursive_doubling: ``lg p' alpha + [r>0] 2 alpha``;
        binomial (gather + release): ``2 ceil(lg p) alpha``.
    hierarchical (``g`` ranks per host, ``N`` hosts, best flat algorithm in each phase)
        allreduce: intra reduce_scatter(n, g) + inter allreduce(n/g, N) + intra allgather(n, g);
        allgather: inter allgather(n/g, N) + intra allgather(n, g); reduce_scatter: intra
        reduce_scatter(n, g) + inter reduce_scatter(n/g, N); broadcast: inter + intra broadcast(n);
        reduce: intra + inter reduce(n); alltoall: intra alltoall(n, g) + inter alltoall(n, N);
        barrier: 2 intra + 1 inter barrier.

    library : {"mpi", "nccl"}, optional
        ``"mpi"`` (default): the MPI forms above. ``"nccl"``: NCCL's ring/tree/NVLS model with its
        protocols and its own choice per size (:func:`nccl_time`; options ``nvls``,
        ``protocol``, ``generation``, ``channels``, ``cpu``, ``launch``; ``algorithm`` then is
        ``auto``, ``ring``, ``tree``, ``nvls`` or ``nvls_tree``; ``topology`` is ignored).

    Examples
    --------
    >>> from hpclab.network import Fabric, collective_time
    >>> f = Fabric(alpha=1e-6, beta=1e-9)
    >>> round(collective_time("allreduce", 1e6, 4, f, algorithm="ring") * 1e6, 3)  # 6 a + 1.5 n b
    1506.0
    """
    library = options.pop("library", "mpi")
    check_choice("library", library, ("mpi", "nccl"))
    if library == "nccl":
        unknown = set(options) - set(NCCL_OPTIONS)
        if unknown:
            raise HpclabError(f"unknown option {sorted(unknown)[0]!r} for library='nccl'; allowed: "
                              f"{', '.join(NCCL_OPTIONS)}")
        options.pop("topology", None)
        options.setdefault("ranks_per_node", 1)
        options.setdefault("intra_fabric", "nvlink")
        return nccl_time(op, nbytes, ranks, fabric, algorithm=algorithm, **options)
    _check_op_alg(op, algorithm)
    n, p = _inputs(nbytes, ranks)
    ppn, intra, topo, eager = _options(options)
    net = _Net.of([_fabric(fabric)], intra, ppn, topo, eager=eager)
    if algorithm == "auto":
        times = [_time(op, alg, n, p, net) for alg in ALGORITHMS[op]]
        t = np.min(np.broadcast_arrays(*times), axis=0)
    else:
        t = _time(op, algorithm, n, p, net)
    t = np.where(p <= 1, 0.0, np.broadcast_to(t, n.shape))
    return _out(t)


def best_algorithm(op, nbytes, ranks, fabric, **options):
    """The algorithm ``algorithm="auto"`` picks per point (the fastest; ties go to the first in
    ``ALGORITHMS[op]``): a ``str`` for scalar inputs, else an array of names."""
    times = algorithm_times(op, nbytes, ranks, fabric, **options)
    names = np.array(list(times))
    idx = np.argmin(np.stack(list(times.values())), axis=0)
    out = names[idx]
    return str(out) if out.ndim == 0 else out


def busbw_factor(op, ranks):
    """nccl-tests' bus-bandwidth factor: allreduce ``2(p-1)/p``; allgather, reduce_scatter,
    alltoall ``(p-1)/p``; broadcast, reduce ``1``; barrier NaN (NVIDIA/nccl-tests
    doc/PERFORMANCE.md)."""
    check_choice("op", op, OPS)
    p = check_finite_array("ranks", ranks, minimum=1, strict=False, integer=True, maximum=MAX_RANKS)
    if op == "allreduce":
        f = 2 * (p - 1) / p
    elif op in ("allgather", "reduce_scatter", "alltoall"):
        f = (p - 1) / p
    elif op in ("broadcast", "reduce"):
        f = np.ones_like(p)
    else:
        f = np.full_like(p, np.nan)
    return _out(f)


def algbw(op, nbytes, seconds):
    """Algorithm bandwidth in bytes/s: ``nbytes / seconds`` (NaN for a barrier or 0 s)."""
    check_choice("op", op, OPS)
    n = check_finite_array("nbytes", nbytes, minimum=0, maximum=MAX_NBYTES)
    t = check_finite_array("seconds", seconds, minimum=0, strict=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        bw = np.where((t > 0) & (op != "barrier"), n / np.where(t > 0, t, 1.0), np.nan)
    return _out(bw)


def busbw(op, nbytes, ranks, seconds):
    """Bus bandwidth in bytes/s as nccl-tests reports it: ``algbw * busbw_factor(op, ranks)``."""
    return _out(np.asarray(algbw(op, nbytes, seconds)) * np.asarray(busbw_factor(op, ranks)))


def sweep(op=OPS, algorithm=("auto",), fabric=("tcp-vpc", "erdma", "rdma-hpn7"),
          ranks=(2, 8, 64, 512), nbytes=tuple(2.0 ** np.arange(3, 31, 3)), **options):
    """Evaluate the model over a grid and return an ``xarray.Dataset``.

    Dims ``op``, ``algorithm``, ``fabric``, ``ranks``, ``nbytes``; variables ``time`` (s),
    ``algbw`` and ``busbw`` (B/s; nccl-tests definitions), and ``chosen`` (dims op, fabric, ranks,
    nbytes: the algorithm ``auto`` picks). An (op, algorithm) pair that does not exist is NaN.
    Everything is vectorised: one numpy evaluation per (op, algorithm) over the whole
    fabric x ranks x nbytes grid.
    """
    import xarray as xr

    ops = [op] if isinstance(op, str) else list(op)
    algs = [algorithm] if isinstance(algorithm, str) else list(algorithm)
    fabs = [fabric] if isinstance(fabric, (str, Fabric)) else list(fabric)
    for o in ops:
        check_choice("op", o, OPS)
    for a in algs:
        check_choice("algorithm", a, ("auto",) + ALL_ALGORITHMS)
    if not ops or not algs or not fabs:
        raise HpclabError("sweep needs at least one op, algorithm and fabric")
    fobjs = [_fabric(f) for f in fabs]
    names = [f.name for f in fobjs]
    if len(set(names)) != len(names):
        names = [f"{nm}#{i}" for i, nm in enumerate(names)]
    n1 = check_finite_array("nbytes", nbytes, minimum=0, maximum=MAX_NBYTES).ravel()
    p1 = check_finite_array("ranks", ranks, minimum=1, strict=False, integer=True, maximum=MAX_RANKS).ravel()
    ppn, intra, topo, eager = _options(options)
    F, R, S = len(fobjs), p1.size, n1.size
    net = _Net.of(fobjs, intra, ppn, topo, axis_shape=(F, 1, 1), eager=eager)
    n = n1.reshape(1, 1, S)
    p = p1.reshape(1, R, 1)
    shape = (len(ops), len(algs), F, R, S)
    time = np.full(shape, np.nan)
    width = max(len(a) for a in ALL_ALGORITHMS)
    chosen = np.zeros((len(ops), F, R, S), dtype=f"<U{width}")  # "" unless auto is asked for
    want_auto = "auto" in algs
    for i, o in enumerate(ops):
        # every algorithm only when "auto" is asked for (it picks among them); else just those asked
        wanted = ALGORITHMS[o] if want_auto else [a for a in algs if a in ALGORITHMS[o]]
        per = {a: np.broadcast_to(_time(o, a, n, p, net), (F, R, S)) for a in wanted}
        if want_auto:
            stack = np.stack(list(per.values()))
            idx = np.argmin(stack, axis=0)
            chosen[i] = np.array(list(per), dtype=chosen.dtype)[idx]
            best = np.take_along_axis(stack, idx[None], axis=0)[0]
        for j, a in enumerate(algs):
            if a == "auto":
                time[i, j] = best
            elif a in per:
                time[i, j] = per[a]
        if np.any(p1 <= 1):
            time[i][:, :, p1 <= 1, :] = np.where(np.isnan(time[i][:, :, p1 <= 1, :]), np.nan, 0.0)
    factor = np.stack([np.asarray(busbw_factor(o, p1), dtype=float).reshape(1, R, 1)
                       for o in ops])[:, None]  # (op, 1, 1, R, 1): broadcasts, never copied out
    with np.errstate(divide="ignore", invalid="ignore"):
        alg_bw = n / time
    alg_bw[~(time > 0)] = np.nan
    for i, o in enumerate(ops):
        if o == "barrier":
            alg_bw[i] = np.nan
    coords = {"op": ops, "algorithm": algs, "fabric": names, "ranks": p1.astype(int), "nbytes": n1}
    dims = ("op", "algorithm", "fabric", "ranks", "nbytes")
    ds = xr.Dataset(
        {"time": (dims, time, {"units": "s", "long_name": "collective time"}),
         "algbw": (dims, alg_bw, {"units": "B/s", "long_name": "algorithm bandwidth (nccl-tests)"}),
         "busbw": (dims, alg_bw * factor, {"units": "B/s", "long_name": "bus bandwidth (nccl-tests)"}),
         "chosen": (("op", "fabric", "ranks", "nbytes"), chosen,
                    {"long_name": "algorithm picked by auto (empty unless 'auto' was asked for)"})},
        coords=coords,
        attrs={"model": "Hockney alpha-beta-gamma, Thakur, Rabenseifner & Gropp 2005",
               "ranks_per_node": ppn, "intra_fabric": intra.name,
               "topology": getattr(topo, "name", "none"),
               "eager_threshold_nbytes": eager})  # 0: no eager sends
    ds["nbytes"].attrs["units"] = "B"
    ds["ranks"].attrs["units"] = "1"
    return ds


# --------------------------------------------------------------------------------------------
# NCCL: ring / tree / NVLS with the LL, LL128 and Simple protocols, as NCCL's tuner models them

NCCL_OPS = ("allreduce", "allgather", "reduce_scatter", "broadcast", "reduce")
NCCL_ALGORITHMS = ("tree", "ring", "nvls", "nvls_tree")
NCCL_PROTOCOLS = ("LL", "LL128", "Simple")
_GENERATIONS = ("volta", "ampere", "hopper", "blackwell")


@lru_cache(maxsize=1)
def _nccl_constants() -> dict:
    """NCCL's tuner constants (``data/reference/collectives.yaml``, ``nccl_tuning``)."""
    from hpclab._paths import data_dir
    from hpclab._yaml import load_yaml

    doc = load_yaml(data_dir() / "reference" / "collectives.yaml")
    return doc["nccl_tuning"]


def launch_us() -> float:
    """One kernel launch, in microseconds (``nccl_tuning.launch_overhead_us``, an assumption)."""
    return float(_nccl_constants()["launch_overhead_us"]["value"])


def _nccl_table(op, p, nodes, ppn, b_intra, b_inter, gen, channels, cpu, nvls):
    """NCCL's (latency us, algorithm bandwidth GB/s) per (algorithm, protocol) for one
    communicator: ``ncclTopoTuneModel`` of NVIDIA/nccl src/graph/tuning.cc, with the graph's
    ``nChannels x bwIntra`` = the intra-node bus bandwidth ``b_intra`` and ``nChannels x bwInter`` =
    the host's links times one link's bandwidth ``b_inter`` (GB/s). Returns {(alg, proto): (lat, bw)}
    with bw 0 where NCCL does not run that pair."""
    k = _nccl_constants()
    gi = _GENERATIONS.index(gen)
    col = 0 if nodes <= 1 else (1 if nodes == 2 else 2)
    C = float(channels)
    ll_max = (k["ll_max_bw"]["single_node"][gen] if nodes == 1 else k["ll_max_bw"][cpu][col])
    tree_max = k["per_channel_max_tree_bw"][gen][col]
    ring_ll128_max = k["per_channel_max_ring_ll128_bw"][gen][col]
    tree_ll128_max = k["per_channel_max_tree_ll128_bw"][gen][col]
    nvls_tree_max = k["per_channel_max_nvls_tree_bw"][gen][col]
    nsteps = {"allreduce": 2 * (p - 1), "reduce_scatter": p - 1, "allgather": p - 1}.get(op, p)
    out = {}
    for a in NCCL_ALGORITHMS:
        if op in ("broadcast", "reduce") and a != "ring":
            continue
        if op in ("allgather", "reduce_scatter") and a not in ("ring", "nvls"):
            continue
        if a in ("nvls", "nvls_tree") and (not nvls or gen not in ("hopper", "blackwell")):
            continue
        if a == "nvls" and nodes > 1:  # NVLS across nodes needs CollNet (SHARP); not modelled
            continue
        if a == "nvls_tree" and (nodes == 1 or op != "allreduce"):
            continue
        if a == "tree" and op != "allreduce":
            continue
        for pi, proto in enumerate(NCCL_PROTOCOLS):
            if a in ("nvls", "nvls_tree") and proto != "Simple":
                continue
            per_ch = (b_intra if nodes <= 2 else min(b_intra, b_inter)) / C
            if a in ("nvls", "nvls_tree"):
                intra = b_intra / C * k["nvls_efficiency"][gen] * (C - 1) / C
                intra *= 2.0 if op == "allreduce" else (ppn - 1) / ppn
                inter = (b_inter / C) * (2 if (nodes <= 2 and a == "nvls_tree") else 1) if nodes > 1 else intra
                per_ch = min(intra, inter, nvls_tree_max if a == "nvls_tree" else np.inf)
            bus = C * per_ch
            if a == "ring" and proto == "LL":
                bus = min(ll_max, bus * 0.5)
            if a == "ring" and proto == "LL128":
                bus = min(bus * 0.92, C * ring_ll128_max)
            if a == "tree" and op == "allreduce":
                bus = min(bus * 0.92, C * tree_max)
            if a == "tree" and proto == "LL":
                bus = min(bus / 3.8, ll_max)
            if a == "tree" and proto == "LL128":
                bus = min(bus * (7.0 / 9.0 if nodes == 1 else 120.0 / 128.0), C * tree_ll128_max)
            ratio = p / nsteps if a in ("ring", "nvls", "nvls_tree") else 0.5
            bw = bus * ratio
            lat = k["base_latency_us"][a][pi]
            hw_intra = k["hw_latency_us"]["nvlink"][a][pi]
            inter_lat = k["hw_latency_us"]["net"]["tree" if ppn == 1 else a][pi]
            if a == "ring":
                if op in ("broadcast", "reduce"):
                    lat += nsteps * k["hw_latency_us"]["nvlink" if nodes == 1 else "net"]["tree" if proto == "Simple" else a][pi]
                else:
                    overhead = 0.0
                    if nodes > 1:
                        overhead = k["net_overhead_us"][cpu] * (3 if proto == "Simple" else 1)
                    intra_lat = max(hw_intra, overhead)
                    n_inter = 0 if nodes == 1 else (2 * (nodes - 1) if op == "allreduce" else nodes - 1)
                    lat += (nsteps - n_inter) * intra_lat + n_inter * inter_lat
            elif a == "tree":
                lat += 2 * ((ppn - 1) * hw_intra + math.floor(math.log2(nodes)) * inter_lat)
            elif a == "nvls":
                lat = hw_intra + (inter_lat if nodes > 1 else 0.0)
            elif a == "nvls_tree":
                lat += hw_intra + 2 * math.floor(math.log2(nodes)) * inter_lat
            out[(a, proto)] = (lat, bw)
    return out


def nccl_time(op, nbytes, ranks, fabric="rdma-hpn7", *, ranks_per_node=8, intra_fabric="nvlink",
              algorithm="auto", protocol="auto", nvls=False, generation=None, channels=None,
              cpu="intel", launch=True, choice=False):
    """Seconds one NCCL collective takes on GPU hosts, by NCCL's own tuning model.

    NCCL runs rings and trees (and, on Hopper and later with NVLink SHARP, NVLS in the switch)
    over ``C`` channels, each pipelining its intra-node (NVLink) and network legs in chunks, with
    one of three protocols: LL (8-byte flag+data stores, lowest latency, half the bandwidth at
    most), LL128 (128-byte lines, about 92% of it) and Simple (full bandwidth, highest latency).
    For each (algorithm, protocol) its tuner (``ncclTopoTuneModel``, NVIDIA/nccl
    src/graph/tuning.cc) sets a latency ``L`` (a base plus per-step NVLink and network
    latencies: ring ``(nsteps - k) l_intra + k l_net`` with ``k = 2 (N - 1)`` inter-node steps for
    an allreduce; tree ``2 ((g - 1) l_intra + floor(lg N) l_net)``) and a bus bandwidth ``B``
    (``C x`` the per-channel bandwidth of the graph, intra-node on up to 2 hosts, else the
    host's links; capped per protocol), converted to algorithm bandwidth (ring ``p / nsteps``,
    tree 1/2); then ``t = L + n / B`` (``ncclTopoGetAlgoTime``, with its tree correction
    factors and the ring plateau factor) and NCCL picks the fastest pair. hpclab adds one kernel
    launch (``launch_overhead_us``, an assumption) to what an nccl-tests iteration measures.

    Parameters
    ----------
    op : {"allreduce", "allgather", "reduce_scatter", "broadcast", "reduce"}
    nbytes, ranks : array_like
        nccl-tests ``size`` convention (module docstring) and GPUs; broadcast together.
    fabric : Fabric or str
        One link between hosts; its bandwidth times ``links_per_host`` is the host's.
    ranks_per_node : int
        GPUs per host (``g``).
    intra_fabric : Fabric or str
        NVLink (``nvlink`` H100-class, ``nvlink3`` A100): its bandwidth is the intra-node bus
        bandwidth; its name gives the GPU generation unless ``generation`` is given.
    algorithm : {"auto", "ring", "tree", "nvls", "nvls_tree"}
    protocol : {"auto", "LL", "LL128", "Simple"}
    nvls : bool
        NVLink SHARP (in-switch reduction) available (Hopper, Blackwell).
    generation : {"volta", "ampere", "hopper", "blackwell"}, optional
    channels : int, optional
        NCCL channels (default ``data/reference/collectives.yaml``: 16).
    cpu : {"intel", "amd"}
        Host CPU vendor (NCCL's network overhead and LL bandwidth caps depend on it).
    launch : bool
        Add the kernel launch overhead.
    choice : bool
        Also return the (algorithm, protocol) chosen per point, as arrays of names.

    Returns
    -------
    float or numpy.ndarray (and, with ``choice``, two arrays of names)
    """
    check_choice("op", op, NCCL_OPS)
    check_choice("algorithm", algorithm, ("auto",) + NCCL_ALGORITHMS)
    check_choice("protocol", protocol, ("auto",) + NCCL_PROTOCOLS)
    check_choice("cpu", cpu, ("intel", "amd"))
    n, p = _inputs(nbytes, ranks)
    ppn = check_positive("ranks_per_node", ranks_per_node, integer=True)
    k = _nccl_constants()
    intra = _fabric(intra_fabric)
    inter = _fabric(fabric)
    gen = generation or k["generation_of_intra_fabric"].get(intra.name, "hopper")
    check_choice("generation", gen, _GENERATIONS)
    C = int(channels or k["channels"]["value"])
    check_positive("channels", C, integer=True)
    b_intra = intra.bandwidth / 1e9
    b_inter = inter.bandwidth * inter.links_per_host / 1e9
    added_us = launch_us() if launch else 0.0
    corr = np.asarray(k["tree_correction"], dtype=float)
    plateau = k["ring_simple_plateau"]["ampere_and_later" if gen != "volta" else "pre_ampere"]
    out = np.full(n.shape, np.inf)
    best_a = np.full(n.shape, "", dtype=object)
    best_p = np.full(n.shape, "", dtype=object)
    for pv in np.unique(p):
        sel = p == pv
        pv = int(pv)
        if pv <= 1:
            out[sel] = 0.0
            continue
        g = min(ppn, pv)
        nodes = int(math.ceil(pv / g))
        table = _nccl_table(op, pv, nodes, g, b_intra, b_inter, gen, C, cpu, nvls)
        nb = n[sel]
        log_size = np.floor(np.log2(np.maximum(nb, 64) / 64)).astype(int)
        best = np.full(nb.shape, np.inf)
        ba = np.full(nb.shape, "", dtype=object)
        bp = np.full(nb.shape, "", dtype=object)
        for (a, proto), (lat, bw) in table.items():
            if algorithm != "auto" and a != algorithm:
                continue
            if protocol != "auto" and proto != protocol:
                continue
            if bw <= 0:
                continue
            pi = NCCL_PROTOCOLS.index(proto)
            bwv = np.full(nb.shape, bw)
            if a == "tree" and op == "allreduce":
                inside = (log_size >= 0) & (log_size < 23)
                bwv = np.where(inside, bw * corr[pi][np.clip(log_size, 0, 23)], bwv)
            latv = np.full(nb.shape, lat)
            if a == "ring" and proto == "Simple" and nodes > 1 and op == "allreduce":
                latv = np.where(nb / (C * pv) >= 64, lat * plateau, latv)
            t = latv + nb / (1000.0 * bwv)  # us (NCCL: bytes / (1000 x GB/s) = us)
            better = t < best
            best = np.where(better, t, best)
            ba = np.where(better, a, ba)
            bp = np.where(better, proto, bp)
        if not np.all(np.isfinite(best)):
            raise HpclabError(f"no NCCL algorithm runs {op} with algorithm={algorithm!r}, "
                              f"protocol={protocol!r} on {pv} ranks (nvls={nvls}, generation {gen})")
        out[sel] = (best + added_us) * 1e-6
        best_a[sel], best_p[sel] = ba, bp
    t = _out(out)
    if choice:
        return t, best_a.astype(str), best_p.astype(str)
    return t
