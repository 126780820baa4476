"""3D(+context, +expert)-parallel training: layouts, memory per GPU, step time, the layout search.

Everything is vectorised: the layout arguments (``tp``, ``pp``, ``dp``, ``cp``, ``ep``,
``micro_batch``, ``interleave``, ``zero``, ``recompute``) broadcast as numpy arrays, so thousands
of layouts are evaluated in one call and come back as an ``xarray.Dataset`` along ``layout``.

Step time (seconds) of one optimizer step with ``m = global_batch / (dp * micro_batch)``
micro-batches on ``pp`` stages with ``v`` interleaved chunks per stage (Narayanan et al. 2021,
section 2.2)::

    T = (m + (pp - 1) / v) * t_mb  +  T_pp,exposed  +  T_dp,exposed  +  T_optimizer

``t_mb`` is the time of one micro-batch on the slowest stage: its layers' dense matrix FLOPs at
``efficiency * peak`` (one fitted figure per GPU generation), each projection no faster than its
operands stream from HBM (a MoE layer's experts on their routed tokens), the attention core on a roofline
(memory-bound when unfused), their element-wise memory traffic at ``memory_efficiency * HBM``,
their tensor-parallel collectives on NVLink (all-reduces, or all-gather + reduce-scatter with
sequence parallelism: 4 per layer, 5 with sequence parallelism's backward all-gather, 6 with full
recomputation; Korthikanti et al. 2022; with ``async_tp`` the two column-parallel linears'
backward collectives hidden behind their gradient GEMMs, as Megatron-LM does since 2021), the
context-parallel K/V all-gather, a MoE layer's expert-parallel all-to-alls, and the output layer;
without ``grad_accumulation_fusion`` (Megatron-LM 2021) a separate gradient-accumulation pass per
micro-batch. ``(pp - 1) / v * t_mb`` is the pipeline bubble
of 1F1B (v = 1) and of the interleaved schedule (bubble fraction ``(pp - 1) / (v m)``).
Data-parallel gradient reduce-scatter + parameter all-gather (ZeRO 1-2) or all-reduce (ZeRO 0) run
on the backend fabric and hide behind one micro-batch's compute (``overlap_dp``); ZeRO-3 gathers
each layer's parameters for every micro-batch twice (forward and backward; a recomputed forward
runs inside the backward on the backward's gather) and reduce-scatters its gradients, hidden only
behind that micro-batch's compute; with ``zero3_list_gather`` (DeepSpeed 2021) each parameter
tensor is gathered into one view per rank, a host copy per rank and tensor. All communication
times come from :func:`hpclab.network.collective_time` and :func:`hpclab.network.p2p_time`.

Memory per GPU (bytes) follows Rajbhandari et al. 2020 (ZeRO: 2 + 2 + 12 bytes per parameter for
bf16 weights, bf16 gradients and fp32 Adam states, sharded over ``dp x cp`` by stage; routed experts
over ``ep`` and their ZeRO shards over ``dp x cp / ep``) and Korthikanti et al. 2022 for activations
(``s b h (34/t + 5 a s/(h t))`` per layer with sequence parallelism, no recomputation; the
``5as/h`` attention-score term vanishes with selective recomputation; ``2 s b h / t`` with full
recomputation), times the micro-batches in flight on the first stage.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from hpclab._validate import HpclabError, check_choice, check_positive, check_range
from hpclab.workloads.llm.model import Transformer, transformer

__all__ = ["RECOMPUTE", "ZERO_STAGES", "step_time", "memory", "check_layout", "layouts", "search",
           "default_efficiency", "memory_reserve"]

RECOMPUTE = ("none", "selective", "full")
ZERO_STAGES = (0, 1, 2, 3)
#: the lowest share of peak FLOP/s or HBM bandwidth a layout may be evaluated at
MIN_EFFICIENCY = 0.01
BF16 = 2  # bytes per element of weights, gradients and activations in mixed precision
ADAM_STATE_BYTES = 12  # fp32 master weights + two fp32 Adam moments (Rajbhandari et al. 2020)
ADAM_TRAFFIC_BYTES = 28  # optimizer step reads p32, g, m, v (14 B) and writes p32, m, v, p16 (14 B)

# --- helpers -------------------------------------------------------------------------------


def _distinct(key):
    """Codes and distinct values of ``key`` (1-D), by hashing in O(n): a layout grid repeats a
    few values many times, and sorting them (``np.unique``) costs more than the model."""
    codes, uniq = pd.factorize(key, sort=False)
    return codes, np.asarray(uniq)


def _collectives(ops, nbytes, ranks, fabric, **options):
    """Seconds for each collective of ``ops`` on the same (bytes, ranks) arrays, from the
    network layer; 0 where ranks == 1. A layout grid repeats a few (bytes, ranks) pairs many
    times: the distinct pairs are found once and each is costed once per op."""
    from hpclab.network import collective_time

    nb, rk = np.broadcast_arrays(np.asarray(nbytes, dtype=float), np.asarray(ranks, dtype=float))
    if nb.size == 0:
        return [np.zeros(nb.shape) for _ in ops]
    codes, uniq = _distinct((nb + 1j * rk).ravel())  # one hashable number per (bytes, ranks) pair
    b, r = uniq.real, uniq.imag
    live = (r > 1) & (b > 0)
    out = []
    for op in ops:
        t = np.zeros(uniq.shape)
        if np.any(live):
            t[live] = np.asarray(collective_time(op, b[live], r[live].astype(int), fabric,
                                                 **options)).reshape(-1)
        out.append(t[codes].reshape(nb.shape))
    return out


def _collective(op, nbytes, ranks, fabric, **options):
    """Seconds for one collective (see :func:`_collectives`)."""
    return _collectives((op,), nbytes, ranks, fabric, **options)[0]


def _p2p(nbytes, fabric):
    from hpclab.network import p2p_time

    nbytes = np.asarray(nbytes, dtype=float)
    if nbytes.size == 0:
        return np.zeros(nbytes.shape)
    codes, uniq = _distinct(nbytes.ravel())
    t = np.zeros(uniq.shape)
    live = uniq > 0
    if np.any(live):
        t[live] = np.asarray(p2p_time(uniq[live], fabric)).reshape(-1)
    return t[codes].reshape(nbytes.shape)


def _recompute_codes(recompute):
    arr = np.asarray(recompute)
    if arr.dtype.kind in "iu":
        bad = arr[(arr < 0) | (arr > 2)]
        if bad.size:
            raise HpclabError(f"recompute must be one of {', '.join(RECOMPUTE)}; got code {bad.flat[0]}")
        return arr.astype(int)
    flat = [check_choice("recompute", str(r), RECOMPUTE) for r in arr.ravel()]
    return np.array([RECOMPUTE.index(r) for r in flat], dtype=int).reshape(arr.shape)


def memory_reserve() -> float:
    """Bytes per GPU kept for the CUDA context, NCCL buffers and fragmentation
    (``data/reference/llm_training.yaml``, ``assumptions.memory_reserve``)."""
    from hpclab.workloads.llm.validation import assumption

    return assumption("memory_reserve")


def default_efficiency(kind: str = "matmul", gpu: str | None = None) -> float:
    """A fitted efficiency: ``"matmul"``, the achieved share of peak FLOP/s in compute-bound
    matrix products on ``gpu`` (a catalog ``gpu_model``; one figure per GPU generation,
    ``calibration.generations``; default the A100's), or ``"memory"``, the achieved share of HBM
    bandwidth in memory-bound kernels; all fitted on the rows named in
    ``data/reference/llm_training.yaml`` (``calibration.rows``, see
    :func:`hpclab.workloads.llm.calibrate`), once, and cached."""
    from hpclab.workloads.llm.validation import calibrated_efficiency, generation_of

    check_choice("kind", kind, ("matmul", "memory"))
    cal = calibrated_efficiency()
    if kind == "memory":
        return cal["memory_efficiency"]
    return cal[f"matmul_efficiency_{generation_of(gpu)}"]


_REASONS = (
    "ok",
    "tp must divide heads",
    "tp must divide or be a multiple of kv_heads",
    "tp must divide the GPUs per node (tensor parallelism stays inside NVLink)",
    "pp * interleave must not exceed layers (+ 2 with balanced ends)",
    "cp must divide seq_length",
    "global_batch must be a multiple of dp * micro_batch",
    "interleave > 1 needs pp > 1 and micro-batches a multiple of pp",
    "zero must be one of 0, 1, 2, 3",
    "gpus must equal tp * cp * pp * dp",
    "ep must divide experts and dp * cp (1 for a dense model)",
)


def _chunk_slots(model, pp, bal):
    """Layer slots the pipeline's chunks share: the layers, and with balanced ends (Llama 3) two
    more, so that the first stage's first chunk may hold only the embedding and the last
    stage's last chunk only the output layer."""
    return model.layers + np.where(bal & (pp > 1), 2, 0)


def _layout_codes(model, cl, gpus, tp, pp, dp, cp, b, v, zero, gb, ep=1, bal=False):
    """First failing rule per layout (0 = valid), vectorised."""
    code = np.zeros(np.broadcast(tp, pp, dp, cp, b, v, zero, gb, ep).shape, dtype=int)

    def mark(cond, k):
        np.copyto(code, k, where=(code == 0) & cond)

    mark(model.heads % tp != 0, 1)
    mark((model.kv_heads % tp != 0) & (tp % model.kv_heads != 0), 2)
    mark((cl.gpus_per_node % tp != 0) | (tp > cl.gpus_per_node), 3)
    mark(pp * v > _chunk_slots(model, pp, bal), 4)
    mark(model.seq_length % cp != 0, 5)
    mark(gb % (dp * b) != 0, 6)
    m = gb // np.maximum(dp * b, 1)
    mark((v > 1) & ((pp == 1) | (m % pp != 0)), 7)
    mark((zero < 0) | (zero > 3), 8)
    if gpus is not None:
        mark(tp * cp * pp * dp != gpus, 9)
    mark(((dp * cp) % ep != 0) | (max(model.experts, 1) % ep != 0), 10)
    return code


def _list_gather_seconds(value) -> float:
    """``zero3_list_gather``: False (one flat gather per layer) or the host time of one per-rank
    copy in microseconds, a number in (0, 1000]; returned in seconds (0 when False)."""
    if value is False or value is None or (not isinstance(value, bool) and value == 0):
        return 0.0
    if isinstance(value, bool):
        raise HpclabError("zero3_list_gather must be False or the host time of one per-rank copy in "
                          f"microseconds, a number in (0, 1000], got {value!r}")
    return check_range("zero3_list_gather", value, 0.0, 1000.0, low_open=True) * 1e-6


def _capacity(value) -> float:
    """A capacity factor: a finite number in [1, 16]."""
    try:
        cf = float(value)
    except (TypeError, ValueError):
        raise HpclabError(f"capacity_factor must be a number in [1, 16], got {value!r}") from None
    if not (1.0 <= cf <= 16.0):
        raise HpclabError(f"capacity_factor must be a number in [1, 16], got {value!r}")
    return cf


def _ints(name, value):
    """``value`` as an int64 array of whole numbers >= 1 (>= 0 for ``zero``), else one-line error
    naming the first offending element (never the whole array)."""
    lowest = 0 if name == "zero" else 1
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray(None)
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        shown = value if arr.ndim == 0 else arr.ravel()[0]
        raise HpclabError(f"{name} must be whole numbers >= {lowest}, got {shown!r}")
    bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (arr < lowest) if arr.dtype.kind == "f" \
        else arr < lowest
    if np.any(bad):
        raise HpclabError(f"{name} must be whole numbers >= {lowest}, got {arr[bad].ravel()[0].item()!r}")
    return arr.astype(np.int64)


def check_layout(model, cluster, *, tp=1, pp=1, dp=1, cp=1, micro_batch=1, global_batch,
                 interleave=1, zero=1, ep=1, gpus=None, balanced_ends=False):
    """Raise :class:`hpclab.HpclabError` (one line) if any layout is invalid; return the codes.

    Rules: ``tp`` divides ``heads`` (and ``kv_heads`` or is a multiple of it) and the GPUs per
    node; ``pp * interleave <= layers`` (``layers + 2`` with ``balanced_ends``, where the first
    and the last chunk may hold only the embedding and only the output layer); ``cp`` divides ``seq_length``; ``global_batch`` is a
    multiple of ``dp * micro_batch``; interleaving needs ``pp > 1`` and micro-batches a multiple
    of ``pp`` (Megatron-LM); ``gpus == tp * cp * pp * dp`` when ``gpus`` is given; the expert-
    parallel size ``ep`` divides ``experts`` and ``dp * cp`` (expert-parallel groups are carved
    out of the data- and context-parallel ranks, which hold the same weights: Megatron-Core's
    expert-data-parallel size ``dp * cp / ep`` with expert tensor parallelism ``tp``).
    """
    model = transformer(model)
    args = {k: _ints(k, val) for k, val in dict(tp=tp, pp=pp, dp=dp, cp=cp, micro_batch=micro_batch,
                                                  interleave=interleave, zero=zero, ep=ep,
                                                  global_batch=global_batch).items()}
    codes = _layout_codes(model, cluster, gpus, args["tp"], args["pp"], args["dp"], args["cp"],
                          args["micro_batch"], args["interleave"], args["zero"], args["global_batch"],
                          args["ep"], bool(balanced_ends))
    bad = np.flatnonzero(codes.ravel())
    if bad.size:
        i = bad[0]
        b = {k: np.broadcast_to(val, codes.shape).ravel()[i] for k, val in args.items()}
        detail = {1: f"tp={b['tp']}, heads={model.heads}",
                  2: f"tp={b['tp']}, kv_heads={model.kv_heads}",
                  3: f"tp={b['tp']}, gpus per node={cluster.gpus_per_node}",
                  4: f"pp={b['pp']}, interleave={b['interleave']}, layers={model.layers}"
                     + (", balanced ends" if balanced_ends else ""),
                  5: f"cp={b['cp']}, seq_length={model.seq_length}",
                  6: f"global_batch={b['global_batch']}, dp*micro_batch={b['dp'] * b['micro_batch']}",
                  7: f"pp={b['pp']}, micro-batches={b['global_batch'] // (b['dp'] * b['micro_batch'])}",
                  8: f"zero={b['zero']}",
                  9: f"gpus={gpus}, tp*cp*pp*dp={b['tp'] * b['cp'] * b['pp'] * b['dp']}",
                  10: f"ep={b['ep']}, experts={model.experts}, dp*cp={b['dp'] * b['cp']}"}[codes.ravel()[i]]
        raise HpclabError(f"invalid layout: {_REASONS[codes.ravel()[i]]} ({detail})")
    return codes


# --- memory ---------------------------------------------------------------------------------


def _stage_layers(model, pp, v, bal=False):
    """Layers of a middle (the fullest) stage and of the first stage. With ``bal`` (Llama 3,
    section 3.3.2: one layer fewer on the first and on the last stage, which hold the embedding
    and the output layer) the middle stages share ``l + 2`` layer slots."""
    slots = _chunk_slots(model, pp, bal)
    middle = np.ceil(slots / (pp * v)) * v
    return middle, middle - (slots - model.layers) / 2


def _expert_share(model, layers_stage, tp, ep):
    """Routed-expert parameters of one GPU's stage (sharded over tp and ep) and the part of the
    unsharded count they replace (the stage's routed experts over tp)."""
    if not model.experts:
        return 0.0, 0.0
    full = layers_stage * (model.moe_layers / model.layers) * model.experts * model.expert_params / tp
    return full / ep, full


def _stage_params(model, tp, pp, v, bal=False):
    """Parameters held by one GPU of the first stage: its layers and the embedding, over tp
    (a MoE model's routed experts counted whole here; see :func:`_expert_share`)."""
    layers_stage = _stage_layers(model, pp, v, bal)[1]
    emb = model.vocab * model.hidden
    emb_stage = np.where((pp == 1) & (not model.tied_embeddings), 2 * emb, emb)
    if model.learned_positions:
        emb_stage = emb_stage + model.seq_length * model.hidden
    return (layers_stage * model.layer_params + emb_stage) / tp, layers_stage


def _per_token_activations(model, tp, sp, cf=1.0):
    """Stored activation bytes per token and layer on one tensor-parallel rank (Korthikanti et al.
    2022): all of them split over ``tp`` with sequence parallelism, else the ``10 h`` that tensor
    parallelism replicates (two norm inputs 4h, the attention and FFN inputs 4h, two dropout masks
    2h; 8h without dropout) stay whole: ``34h/t`` or ``10h + 24h/t`` for GPT."""
    act_tok = model.activation_bytes_per_token(capacity_factor=cf)
    whole = (10.0 if model.dropout else 8.0) * model.hidden
    return np.where(sp | (tp == 1), act_tok / tp, whole + (act_tok - whole) / tp)


def _memory_arrays(model, cl, tp, pp, dp, cp, b, v, zero, rc, gb, sp, reserve, flash=True, bal=False,
                   ep=1, cf=1.0):
    params_all, layers_stage = _stage_params(model, tp, pp, v, bal)
    # routed experts: sharded over ep, their ZeRO shards over the dp x cp / ep expert-data-
    # parallel ranks (context-parallel ranks hold the same weights: ZeRO shards over dp x cp)
    expert, replaced = _expert_share(model, layers_stage, tp, ep)
    params_gpu = params_all - replaced
    dcp = dp * cp
    edp = dcp // ep

    def sharded(stage):
        return params_gpu / np.where(zero >= stage, dcp, 1) + expert / np.where(zero >= stage, edp, 1)

    weights = BF16 * sharded(3)
    grads = BF16 * sharded(2)
    optimizer = ADAM_STATE_BYTES * sharded(1)
    s, h, a = model.seq_length, model.hidden, model.heads
    tokens = b * s / cp  # tokens of one micro-batch on one GPU group
    per_tok = _per_token_activations(model, tp, sp, cf)
    # Korthikanti's 5as/h attention-score term (bytes per token); FlashAttention never stores it
    scores = 0.0 if flash else model.score_bytes_per_element * a * (s / cp) / tp
    full_layer = tokens * (per_tok + scores)
    per_layer = np.select([rc == 0, rc == 1], [full_layer, tokens * per_tok],
                          tokens * BF16 * h / np.where(sp, tp, 1))
    m = gb // (dp * b)
    in_flight = np.minimum(m, pp)
    inter = np.where(v > 1, 1.0 + (pp - 1) / (pp * v), 1.0)
    activations = per_layer * layers_stage * in_flight * inter
    # full recomputation rebuilds one layer's activations at a time during the backward pass
    # (all of its activations, the attention scores too when they are not fused away)
    activations = activations + np.where(rc == 2, full_layer, 0.0)
    # fp32 logits of the output layer live on the last stage (counted when it is also the first)
    activations = activations + np.where(pp == 1, tokens * model.vocab * 4.0 / tp, 0.0)
    total = weights + grads + optimizer + activations + reserve
    return dict(weights=weights, gradients=grads, optimizer=optimizer, activations=activations,
                reserve=np.broadcast_to(reserve, np.shape(total)) * 1.0, total=total,
                fits=total <= cl.gpu_memory)


# --- step time ------------------------------------------------------------------------------


def _classes(*arrays):
    """Codes (one per element) and first indices of the distinct rows of equal-shape integer
    arrays, by hashing (one O(n) factorisation per array)."""
    radix = [int(a.max()) + 1 if a.size else 1 for a in arrays]
    if all(a.size == 0 or a.min() >= 0 for a in arrays) and math.prod(radix) < 2 ** 62:
        key = np.zeros(arrays[0].size, dtype=np.int64)  # mixed-radix number of the row
        for arr, r in zip(arrays, radix):
            key = key * r + arr.ravel()
        codes, _ = pd.factorize(key, sort=False)
    else:
        codes = np.zeros(arrays[0].size, dtype=np.int64)
        for arr in arrays:
            c, uniq = pd.factorize(arr.ravel(), sort=False)
            codes, _ = pd.factorize(codes * len(uniq) + c, sort=False)
    first = np.full(int(codes.max()) + 1 if codes.size else 0, -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(codes.size - 1, -1, -1)  # first occurrence of each code
    return codes, first


def _node_split(G, stride, count, world):
    """How one group of ``count`` ranks ``stride`` apart lies on nodes of ``G`` GPUs (``world``
    ranks in all), for ranks in Megatron-Core's order ``tp-cp-ep-dp-pp``
    (``parallel_state.initialize_model_parallel``'s default; tensor parallel fastest, pipeline
    slowest, as Megatron-LM has always ordered them), where the groups of one kind fill
    consecutive blocks of ``stride x count`` ranks: a context-parallel group is every ``tp``-th
    rank of a ``tp cp`` block, a data-parallel (``dp x cp``) group every ``tp``-th of a
    ``tp cp dp`` block, an expert group every ``tp``-th of a ``tp ep`` block (its expert-data-
    parallel group every ``tp ep``-th of the ``tp cp dp`` block), a pipeline every
    ``tp cp dp``-th rank.

    Returns ``(inside, per_node)``. ``inside``: every group lies within one node (``G`` is a
    multiple of the block, the whole run fits in one node, or the group is one rank).
    ``per_node``: the group's ranks on each node it uses, at least; node boundaries cut a block
    into pieces of multiples of ``gcd(G, block)`` ranks, so each holds ``gcd(G, block) / stride``
    of the group's ranks (at least 1), exactly when the block divides or is a multiple of ``G``
    and ``stride`` divides ``G`` (the powers of two of every published layout)."""
    block = stride * count
    one = (world <= G) | (count == 1)
    inside = one | ((block <= G) & (G % block == 0))
    per_node = np.where(one, count, np.minimum(np.maximum(np.gcd(G, block) // stride, 1), count))
    return inside, per_node


def _dp_collectives(cl, nbytes, ranks, per_node, ops):
    """``ops`` over data-parallel groups of ``ranks`` with ``per_node`` of them on each node
    (hierarchical with NVLink when several share a node), the node's other GPUs running their own
    groups at the same time on the same links: one array per op."""
    links = float(cl.fabric.links_per_host)
    out = [np.zeros(nbytes.shape) for _ in ops]
    for r in np.unique(per_node):
        sel = per_node == r
        opts = dict(cl.network_options)
        if r > 1:
            opts.update(algorithm="hierarchical", ranks_per_node=int(r), intra_fabric=cl.intra)
        extra = cl.nic_share / max(1.0, r / links)
        for o, t in zip(out, _collectives(ops, nbytes[sel] * extra, ranks[sel], cl.fabric, **opts)):
            o[sel] = t
    return out


def _comm(model, cl, tp, pp, dp, cp, b, v, ep, sp, bal, cf, z3):
    """The communication of each distinct (tp, cp, pp, interleave, micro_batch, ep, dp) layout
    class, in seconds (1-D arrays along the classes): one tensor-parallel all-reduce of a
    micro-batch (``tp_one``), one context-parallel K/V all-gather (``cp_one``), one expert-
    parallel all-to-all (``a2a``), one pipeline send (``p2p``), the data-parallel gradient
    all-reduce (``dp_ar``) and reduce-scatter + all-gather (``dp_rsag``), and ZeRO-3's per-layer
    all-gather and reduce-scatter (``z3_ag``, ``z3_rs``; only when ``z3``). Recomputation and
    the ZeRO stage only choose and multiply these, so a search's thousands of layouts share them.
    """
    G = cl.gpus_per_node
    s, h = model.seq_length, model.hidden
    tokens = b * s / cp
    out = {}
    # tensor parallel on NVLink: one all-reduce of the micro-batch's b s h / c activations
    out["tp_one"] = _collective("allreduce", tokens * h * BF16, tp, cl.intra)
    # context parallel: all-gather K and V (inside the node while tp cp <= G)
    kv_bytes = b * s * 2 * model.kv_dim * BF16 / np.minimum(tp, model.kv_heads)
    world = tp * cp * dp * pp
    cp_inside = _node_split(G, tp, cp, world)[0]
    cp_one = np.zeros(tp.shape)
    if np.any(cp_inside):
        cp_one[cp_inside] = _collective("allgather", kv_bytes[cp_inside], cp[cp_inside], cl.intra)
    if not np.all(cp_inside):
        cp_one[~cp_inside] = _collective("allgather", kv_bytes[~cp_inside] * cl.nic_share,
                                         cp[~cp_inside], cl.fabric, **cl.network_options)
    out["cp_one"] = cp_one
    # expert parallelism: one all-to-all of cf x top_k copies of the GPU's 1/tp share of the
    # tokens, h bf16 each, over the ep ranks (every tp-th rank of a tp x ep block, see
    # _node_split): on NVLink when nodes hold whole groups, else on the fabric with the group's
    # ranks per node sharing the node's links
    a2a = np.zeros(tp.shape)
    if model.experts and np.any(ep > 1):
        a2a_bytes = tokens * cf * model.top_k * h * BF16 / tp
        inside, per_node = _node_split(G, tp, ep, world)
        sel = (ep > 1) & inside
        if np.any(sel):
            a2a[sel] = _collective("alltoall", a2a_bytes[sel], ep[sel], cl.intra)
        outside = (ep > 1) & ~inside
        for r in np.unique(per_node[outside]) if np.any(outside) else ():
            sel = outside & (per_node == r)
            opts = dict(cl.network_options)
            if r > 1:
                opts.update(ranks_per_node=int(r), intra_fabric=cl.intra)
            share = cl.nic_share / max(1.0, r / float(cl.fabric.links_per_host))
            a2a[sel] = _collective("alltoall", a2a_bytes[sel] * share, ep[sel], cl.fabric, **opts)
    out["a2a"] = a2a
    # pipeline point-to-point: each tp rank sends its 1/tp share: sequence parallelism holds
    # only that share, and without it Megatron's scatter/gather optimisation splits the
    # replicated tensor over the tp ranks' links across nodes (Narayanan et al. 2021, section
    # 4.1); inside a node the whole tensor moves
    pp_inside = _node_split(G, tp * cp * dp, pp, world)[0]  # pipeline ranks tp cp dp apart
    pp_bytes = tokens * h * BF16 / np.where(sp | ~pp_inside, tp, 1)
    p2p = np.zeros(tp.shape)
    if np.any(pp_inside):
        p2p[pp_inside] = _p2p(pp_bytes[pp_inside], cl.intra)
    if not np.all(pp_inside):
        p2p[~pp_inside] = _p2p(pp_bytes[~pp_inside] * cl.nic_share, cl.fabric)
    out["p2p"] = p2p
    # data parallel on the backend fabric (hierarchical when several dp ranks share a node): the
    # stage's bf16 gradients; routed experts' gradients reduce over the dp x cp / ep ranks
    # holding the same experts
    params_all, first_layers = _stage_params(model, tp, pp, v, bal)
    expert, replaced = _expert_share(model, first_layers, tp, ep)
    grad_bytes = (params_all - replaced) * BF16 * np.ones(tp.shape)
    expert_bytes = expert * BF16 * np.ones(tp.shape)
    # the gradients reduce over the dp x cp ranks holding the same weights (context-parallel ranks
    # see different tokens: Megatron-Core's data-parallel group with context parallelism, FSDP's
    # dp_shard_cp mesh), every tp-th rank of a tp cp dp block; the routed experts' over their
    # dp x cp / ep ranks, every (tp ep)-th rank of the same block (see _node_split)
    dcp = dp * cp
    edp = dcp // ep
    ops = ("allreduce", "reduce_scatter", "allgather")
    ar, rs, ag = _dp_collectives(cl, grad_bytes, dcp, _node_split(G, tp, dcp, world)[1], ops)
    dp_ar, dp_rsag = ar, rs + ag
    if model.experts:
        ar, rs, ag = _dp_collectives(cl, expert_bytes, edp, _node_split(G, tp * ep, edp, world)[1], ops)
        dp_ar, dp_rsag = dp_ar + ar, dp_rsag + rs + ag
    out["dp_ar"], out["dp_rsag"] = dp_ar, dp_rsag
    # ZeRO-3: one layer's bf16 parameters gathered (and its gradients reduce-scattered) over the
    # whole data-parallel group as flat rings, each GPU on its own share of the NICs
    z3_ag, z3_rs = np.zeros(tp.shape), np.zeros(tp.shape)
    if z3:
        sel = dcp > 1
        if np.any(sel):
            ls = _stage_layers(model, pp, v, bal)[0][sel]
            flat = dict(cl.network_options, algorithm="ring")
            nb, d = grad_bytes[sel] / ls * cl.nic_share, dcp[sel]
            k = nb.size
            if model.experts:
                nb = np.concatenate([nb, expert_bytes[sel] / ls * cl.nic_share])
                d = np.concatenate([d, edp[sel]])
            ag, rs = _collectives(("allgather", "reduce_scatter"), nb, d, cl.fabric, **flat)
            z3_ag[sel], z3_rs[sel] = ag[:k], rs[:k]
            if model.experts:
                z3_ag[sel] += ag[k:]
                z3_rs[sel] += rs[k:]
    out["z3_ag"], out["z3_rs"] = z3_ag, z3_rs
    return out


def _gemm_excess(m, k, n, rate, hbm):
    """Seconds a ``(m x k) @ (k x n)`` bf16 GEMM takes beyond its compute time at ``rate`` when
    streaming its operands and result (``2 (mk + kn + mn)`` bytes) from HBM takes longer: the
    memory-bound floor of the roofline (0 where the GEMM is compute-bound). Backward's two GEMMs
    (input and weight gradients) move the same bytes for the same FLOPs."""
    return np.maximum(0.0, 2.0 * (m * k + k * n + m * n) / hbm - 2.0 * m * k * n / rate)


def _gemm_floor(model, tokens, tp, ep, cf, rate, hbm):
    """Forward seconds per layer (averaged over dense and MoE layers) that the dense projections
    lose to the memory-bound floor of the roofline, on one GPU: QKV and output projections, the
    FFN's up (and gate) and down projections, and in a MoE layer the shared experts and the
    ``experts / ep`` routed experts of the rank, each on the ``tokens x ep x top_k x cf /
    experts`` tokens routed to it. Zero wherever every GEMM is compute-bound (the dense models'
    usual shapes); fine-grained experts on few tokens are memory-bound (their weights dominate)."""
    h, kv = model.hidden, model.kv_dim
    if model.attention_params:  # a custom attention block (MLA): one projection of that size
        att = _gemm_excess(tokens, h, model.attention_params / (h * tp), rate, hbm)
    else:
        att = (_gemm_excess(tokens, h, (h + 2 * kv) / tp, rate, hbm)
               + _gemm_excess(tokens, h / tp, h, rate, hbm))
    mf = model.ffn_matrices

    def ffn(t, f):
        return _gemm_excess(t, h, (mf - 1) * f / tp, rate, hbm) + _gemm_excess(t, f / tp, h, rate, hbm)

    if not model.experts:
        return att + ffn(tokens, model.ffn)
    moe = model.moe_layers / model.layers
    routed_tokens = tokens * ep * model.top_k * cf / model.experts
    expert = (model.experts / ep) * ffn(routed_tokens, model.expert_ffn)
    shared = ffn(tokens, model.shared_experts * model.expert_ffn) if model.shared_experts else 0.0
    return att + (1 - moe) * ffn(tokens, model.ffn) + moe * (expert + shared)


def _step_arrays(model, cl, tp, pp, dp, cp, b, v, zero, rc, gb, sp, eff, overlap_dp, overlap_tp,
                 overlap_pp, flash=True, mem_eff=1.0, bal=False, ep=1, cf=1.0, async_tp=True,
                 grad_fusion=True, list_gather=0.0):
    G = cl.gpus_per_node
    s, h, V = model.seq_length, model.hidden, model.vocab
    peak, hbm = cl.peak_flops, cl.memory_bandwidth
    m = gb // (dp * b)
    tokens = b * s / cp  # tokens per micro-batch per (tp) group
    layers_stage = _stage_layers(model, pp, v, bal)[0]  # the fullest (middle or last) stage
    # communication per distinct (tp, cp, pp, v, b, ep, dp) class, expanded to the layouts
    shape = np.broadcast(tp, pp, dp, cp, b, v, zero, rc, gb, ep).shape
    axes = [np.broadcast_to(x, shape).ravel() for x in (tp, cp, pp, v, b, ep, dp)]
    codes, first = _classes(*axes)
    ut, uc, up, uv, ub, ue, ud = (x[first] for x in axes)
    comm = _comm(model, cl, ut, up, ud, uc, ub, uv, ue, sp, bal, cf,
                 bool(np.any(np.asarray(zero) >= 3)))
    comm = {k: val[codes].reshape(shape) for k, val in comm.items()}

    # matrix FLOPs per micro-batch per GPU, one layer: forward 1x, backward 2x, + recomputation.
    # Dense projections (QKV, output, FFN: 2 x layer_matmul_params per token) run at
    # ``eff x peak``; the attention core (QK^T and the weighted sum, 4 s h per token) is a batched
    # GEMM with inner size head_dim: unfused, it reads and writes the s x s scores, so it runs at
    # the roofline min(eff x peak, AI x HBM) with AI = s d / (s + 2 d) FLOP/B;
    # FlashAttention keeps the scores on chip (compute-bound).
    # a MoE layer computes its routed experts on capacity-padded buffers: cf x top_k tokens each
    routed = (model.moe_layers / model.layers) * model.top_k * model.expert_params
    dense_fwd = tokens * 2.0 * (model.layer_matmul_params + (cf - 1.0) * routed)
    attn_fwd = tokens * 4.0 * s * h
    # selective recomputation re-runs the attention core; FlashAttention's backward always does,
    # so with it "none" costs what "selective" does; full recomputation re-runs the whole forward
    attn_again = (rc == 1) | (flash & (rc == 0))
    dense_mult = np.where(rc == 2, 4.0, 3.0)
    attn_mult = np.where((rc == 2) | attn_again, 4.0, 3.0)
    rate = peak * eff
    if not flash and hbm > 0:
        d_head = model.head_dim
        intensity = s * d_head / (s + 2.0 * d_head)
        # a GEMM's bytes are exact (read Q and K, write the scores) and stream at the HBM's
        # bandwidth; memory_efficiency is the fitted share for the element-wise kernels, whose
        # bytes are Korthikanti's stored-activation count, an approximation of their traffic
        rate_attn = min(rate, intensity * hbm)
    else:
        rate_attn = rate
    gemm_layer = dense_mult * dense_fwd / tp / rate + attn_mult * attn_fwd / tp / rate_attn
    if hbm > 0:  # each dense GEMM on the roofline: no faster than its operands stream from HBM
        gemm_layer = gemm_layer + dense_mult * _gemm_floor(model, tokens, tp, ep, cf, rate, hbm)
    # element-wise (memory-bound) traffic: the stored activations written in forward, read and
    # their gradients written in backward (3x), once more when fully recomputed, at mem_eff x HBM
    per_tok = _per_token_activations(model, tp, sp, cf)
    passes = np.where(rc == 2, 4.0, 3.0)
    elem_bytes = per_tok * passes
    if not flash:  # unfused attention writes and reads the s x s scores (5as/h, Korthikanti),
        # again when the attention core is recomputed (selective or full recomputation)
        score_tok = model.score_bytes_per_element * model.heads * s / tp
        elem_bytes = elem_bytes + score_tok * np.where(rc >= 1, 4.0, 3.0)
    elem_layer = (tokens * elem_bytes / (hbm * mem_eff) if hbm > 0
                  else np.zeros_like(gemm_layer))
    # tensor-parallel collectives on NVLink: 2 forward + 2 backward (+2 recomputation) per layer,
    # counted in all-reduce equivalents (an all-gather + reduce-scatter pair costs one). With
    # sequence parallelism and no full recomputation the backward pass all-gathers the two
    # layer-norm outputs again instead of storing the gathered tensors (Korthikanti et al. 2022,
    # section 4.2.2; Megatron's default): two more all-gathers, half an all-reduce each
    n_tp = np.where(rc == 2, 6.0, np.where(sp & (tp > 1), 5.0, 4.0))
    tp_one = comm["tp_one"]
    tp_sum = n_tp * tp_one
    if async_tp:
        # Megatron-LM's asynchronous tensor-parallel communication (since September 2021;
        # LinearWithGradAccumulationAndAsyncCommunication): in the backward pass of the two
        # column-parallel linears (QKV, FFN up/gate) the input-gradient all-reduce runs beside
        # the weight-gradient GEMM; with sequence parallelism the re-all-gather of the input
        # beside the input-gradient GEMM and the reduce-scatter beside the weight-gradient GEMM.
        # Two all-reduce equivalents per layer, each hidden up to the GEMM it runs beside.
        ffn_col = model._ffn_mean(active=True) * (model.ffn_matrices - 1) / model.ffn_matrices
        col_gemm = tokens * 2.0 * (model.attention_matmul_params - h * h + ffn_col) / tp / rate
        hidden_tp = np.where(sp, 2.0 * np.minimum(tp_one, col_gemm),
                             np.minimum(2.0 * tp_one, col_gemm))
        tp_sum = tp_sum - hidden_tp
    tp_layer = tp_sum * (1.0 - overlap_tp)
    # context parallel: all-gather K and V forward, reduce-scatter their gradients backward
    n_cp = np.where(rc == 2, 3.0, 2.0)
    cp_layer = n_cp * comm["cp_one"]
    # output layer (logits + loss) on the last stage
    logits_flops = tokens * 6.0 * V * h / tp
    logits = logits_flops / rate + (tokens * V * 4.0 * 3 / tp / (hbm * mem_eff) if hbm > 0 else 0.0)

    # expert parallelism: each MoE layer dispatches its tokens to the experts' ranks and combines
    # them back with an all-to-all, forward and backward (+ again when the forward is recomputed)
    n_a2a = np.where(rc == 2, 6.0, 4.0)
    ep_layer = (n_a2a * comm["a2a"] * (model.moe_layers / model.layers) if model.experts
                else np.zeros(shape))

    compute_mb = layers_stage * (gemm_layer + elem_layer) + logits
    t_mb = compute_mb + layers_stage * (tp_layer + cp_layer + ep_layer)
    bubble = (pp - 1) / v * t_mb
    pipeline = m * t_mb

    # pipeline point-to-point: activations forward, gradients backward, per chunk boundary
    p2p = comm["p2p"]
    pp_comm = np.where(pp > 1, 2.0 * v * (pp - 1) * p2p + (1.0 - overlap_pp) * 2.0 * m * v * p2p, 0.0)

    # data parallel: ZeRO 0 all-reduces the gradients, ZeRO 1-3 reduce-scatter + all-gather
    params_all, first_layers = _stage_params(model, tp, pp, v, bal)
    expert, replaced = _expert_share(model, first_layers, tp, ep)
    params_gpu = params_all - replaced
    dp_comm = np.where(np.asarray(zero) == 0, comm["dp_ar"], comm["dp_rsag"])
    mb = np.broadcast_to(m, dp_comm.shape)
    z3 = np.broadcast_to(zero, dp_comm.shape) >= 3
    # ZeRO-3 (DeepSpeed stage 3, FSDP full sharding): each layer's parameters are all-gathered
    # over the data-parallel group for every micro-batch's forward pass and again for its
    # backward pass, and its gradients reduce-scattered: per micro-batch ``l_stage (2 AG + RS)``
    # of one layer's bf16 parameters. Under full recomputation the recomputed forward runs
    # inside the backward on the backward's gather: FSDP skips its unshard there (_pre_forward
    # in the BACKWARD_PRE state) and DeepSpeed keeps a sub-module's parameters reused within
    # max_reuse_distance (stage3.py _keep_for_later). The gathers are issued per layer on the
    # whole group, flat (each GPU on its own share of the NICs, not the node-aware two-level
    # scheme), and prefetched behind the compute of that micro-batch only.
    z3_comm = np.where(z3, layers_stage * (2.0 * comm["z3_ag"] + comm["z3_rs"]), 0.0)
    if list_gather > 0:
        # DeepSpeed's stage 3 of 2021 (v0.3.13-v0.5.x, partition_parameters._allgather_param)
        # gathers each parameter tensor on its own into one narrow() view per rank of its group,
        # and PyTorch's list all_gather copies every rank's block out of NCCL's flat output: per
        # gather one host-issued copy per rank (``list_gather`` seconds each), on the path of the
        # gather; 2 gathers per tensor per micro-batch as above. A dense tensor's group is the
        # dp x cp ranks; a routed expert's (the rank's experts / ep of them) the dp x cp / ep
        dcp = dp * cp
        copies = (model.layer_tensors - model.expert_tensors) * dcp + model.expert_tensors / ep * (dcp // ep)
        z3_comm = z3_comm + np.where(z3, layers_stage * 2.0 * copies * list_gather, 0.0)
    dp_total = np.where(z3, mb * z3_comm, dp_comm)
    window = overlap_dp * np.broadcast_to(compute_mb, dp_comm.shape)
    dp_exposed = np.where(z3, mb * np.maximum(0.0, z3_comm - window),
                          np.maximum(0.0, dp_comm - window))
    dp_exposed = np.where(np.broadcast_to(dp * cp, dp_comm.shape) > 1, dp_exposed, 0.0)

    opt_params = params_gpu / np.where(zero >= 1, dp * cp, 1) + expert / np.where(zero >= 1, dp * cp // ep, 1)
    optimizer = opt_params * ADAM_TRAFFIC_BYTES / hbm if hbm > 0 else 0.0 * opt_params

    # gradient accumulation over the micro-batches: fused into the weight-gradient GEMM's
    # epilogue (Megatron-LM's gradient_accumulation_fusion, 2022 on; FSDP/DeepSpeed buckets) it
    # costs nothing apart; without it (Megatron-LM 2021: autograd adds each micro-batch's 16-bit
    # gradient into .grad) every micro-batch after the first reads the sum and the new gradient
    # and writes the sum, 3 x 2 bytes per local parameter at mem_eff x HBM
    if grad_fusion or hbm <= 0:
        grad_acc = np.zeros(np.shape(t_mb))
    else:
        grad_acc = np.maximum(m - 1, 0) * (params_gpu + expert) * 3.0 * BF16 / (hbm * mem_eff)

    step = pipeline + bubble + pp_comm + dp_exposed + optimizer + grad_acc
    compute = m * compute_mb + grad_acc
    tp_total = m * layers_stage * tp_layer
    cp_total = m * layers_stage * cp_layer
    ep_total = m * layers_stage * ep_layer
    gpus = tp * cp * pp * dp
    tokens_step = gb * s
    model_flops = model.flops_per_token() * tokens_step
    return dict(step_time=step, compute_time=compute, tp_comm=tp_total, cp_comm=cp_total,
                ep_comm=ep_total, bubble=bubble,
                pp_comm=pp_comm, dp_comm=dp_exposed, dp_comm_total=dp_total, optimizer_step=optimizer,
                microbatches=m * 1.0, mfu=model_flops / (step * gpus * peak),
                tokens_per_s=tokens_step / step, microbatch_time=t_mb)


_UNITS = dict(step_time="s", compute_time="s", tp_comm="s", cp_comm="s", ep_comm="s", bubble="s", pp_comm="s",
              dp_comm="s", dp_comm_total="s", optimizer_step="s", microbatches="1", mfu="1",
              tokens_per_s="1/s", microbatch_time="s", weights="B", gradients="B", optimizer_mem="B",
              activations="B", reserve="B", total_memory="B", fits="1")
_DESC = dict(step_time="time of one optimizer step", compute_time="matrix and element-wise compute",
             tp_comm="exposed tensor-parallel collectives (NVLink)", cp_comm="context-parallel K/V exchange",
             ep_comm="expert-parallel all-to-all (dispatch and combine)",
             bubble="pipeline bubble", pp_comm="exposed pipeline point-to-point",
             dp_comm="exposed data-parallel gradient/parameter communication",
             dp_comm_total="data-parallel communication before overlap", optimizer_step="optimizer step",
             microbatches="micro-batches per step per pipeline", mfu="model FLOPs utilisation",
             tokens_per_s="training tokens per second", microbatch_time="one micro-batch on the last stage",
             weights="weights per GPU", gradients="gradients per GPU", optimizer_mem="optimizer states per GPU",
             activations="activations per GPU", reserve="CUDA context, buffers, fragmentation",
             total_memory="memory per GPU", fits="fits in GPU memory")


def _prepare(model, cluster, tp, pp, dp, cp, micro_batch, global_batch, interleave, zero, recompute,
             gpus, check, ep=1, bal=False):
    model = transformer(model)
    if global_batch is None:
        raise HpclabError("global_batch (sequences per optimizer step) is required")
    args = {k: _ints(k, val) for k, val in dict(tp=tp, pp=pp, dp=dp, cp=cp, micro_batch=micro_batch,
                                                  interleave=interleave, zero=zero, ep=ep,
                                                  global_batch=global_batch).items()}
    rc = _recompute_codes(recompute)
    if check:
        check_layout(model, cluster, gpus=gpus, balanced_ends=bal, **args)
    shape = np.broadcast(*args.values(), rc).shape
    arrs = {k: np.broadcast_to(val, shape) for k, val in args.items()}
    return model, arrs, np.broadcast_to(rc, shape)


def _dataset(arrs, rc, values, model, cluster, attrs=None):
    shape = rc.shape
    n = int(np.prod(shape)) if shape else 1
    dims = ("layout",)
    coords = {k: (dims, np.asarray(val).reshape(n)) for k, val in arrs.items()}
    coords["recompute"] = (dims, np.array(RECOMPUTE)[rc.reshape(n)])
    data = {}
    for k, val in values.items():
        name = {"optimizer": "optimizer_mem", "total": "total_memory"}.get(k, k)
        arr = np.asarray(val, dtype=float)
        # a fresh 1-D array (a search's sorted columns) is used as it is; views are copied
        arr = arr if arr.shape == (n,) and arr.base is None else np.broadcast_to(arr, shape).reshape(n).copy()
        data[name] = (dims, arr, {"units": _UNITS.get(name, ""), "long_name": _DESC.get(name, name)})
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(model=model.name, cluster=cluster.describe(), **(attrs or {}))
    return ds


def memory(model, cluster, *, tp=1, pp=1, dp=1, cp=1, micro_batch=1, global_batch=None,
           interleave=1, zero=1, recompute="selective", ep=1, capacity_factor=1.0,
           sequence_parallel=True, flash_attention=True, balanced_ends=False, reserve=None,
           gpus=None, check=True) -> xr.Dataset:
    """Memory per GPU of the first pipeline stage (the fullest), in bytes, and whether it fits.

    ``balanced_ends``: the first and the last stage hold one layer fewer (Llama 3, section
    3.3.2), the middle stages ``ceil((l + 2)/(p v)) v`` layers. ``ep``, ``capacity_factor``: see
    :func:`step_time`.

    Returns a Dataset along ``layout`` with ``weights``, ``gradients``, ``optimizer_mem``,
    ``activations``, ``reserve``, ``total_memory`` (bytes) and ``fits``; formulas in the module
    docstring.
    """
    model, a, rc = _prepare(model, cluster, tp, pp, dp, cp, micro_batch, global_batch, interleave,
                            zero, recompute, gpus, check, ep, bool(balanced_ends))
    cf = _capacity(capacity_factor)
    reserve = memory_reserve() if reserve is None else float(reserve)
    vals = _memory_arrays(model, cluster, a["tp"], a["pp"], a["dp"], a["cp"], a["micro_batch"],
                          a["interleave"], a["zero"], rc, a["global_batch"], bool(sequence_parallel),
                          reserve, bool(flash_attention), bool(balanced_ends), a["ep"], cf)
    ds = _dataset(a, rc, vals, model, cluster)
    ds.attrs["gpu_memory"] = cluster.gpu_memory
    return ds


def step_time(model, cluster, *, tp=1, pp=1, dp=1, cp=1, micro_batch=1, global_batch=None,
              interleave=1, zero=1, recompute="selective", ep=1, capacity_factor=1.0,
              sequence_parallel=True,
              flash_attention=True, efficiency=None, memory_efficiency=None, overlap_dp=1.0,
              overlap_tp=0.0, overlap_pp=1.0, balanced_ends=False, async_tp=True,
              grad_accumulation_fusion=True, zero3_list_gather=False, reserve=None, gpus=None,
              check=True) -> xr.Dataset:
    """Step time, its breakdown, MFU, tokens/s and memory per GPU for one or many layouts.

    Parameters
    ----------
    model : Transformer or str
        A model or a preset name (``gpt3-175b``, ``llama3-405b`` ...).
    cluster : Cluster
        From :func:`hpclab.workloads.llm.cluster`.
    tp, pp, dp, cp : int or array
        Tensor, pipeline, data and context parallel sizes (broadcast together).
    micro_batch, global_batch : int or array
        Sequences per micro-batch and per optimizer step.
    interleave : int or array
        Model chunks per pipeline stage (1: 1F1B; > 1: interleaved 1F1B).
    zero : int or array
        ZeRO stage: 0 (replicated), 1 (optimizer states sharded), 2 (+ gradients), 3 (+ weights).
    recompute : {"none", "selective", "full"} or array
        Activation recomputation (Korthikanti et al. 2022).
    ep : int or array
        Expert-parallel size (mixture-of-experts models): the routed experts of each MoE layer
        are spread over ``ep`` of the data- and context-parallel ranks; must divide ``experts``
        and ``dp * cp``.
    capacity_factor : float in [1, 16]
        Expert capacity as a multiple of the balanced load ``top_k x tokens / experts``: buffers,
        expert FLOPs and all-to-all volumes are padded to it (Fedus et al. 2022, Switch
        Transformer; 1.0 = dropless and perfectly balanced).
    sequence_parallel : bool
        Shard layer-norm and dropout activations over the tp ranks.
    flash_attention : bool
        Fused attention that never stores the ``s x s`` scores and recomputes them in its
        backward pass (default: ``recompute="none"`` then costs the ``4 s h`` FLOPs per token and
        layer of ``"selective"``); False adds their memory (Korthikanti's ``5as/h`` term) and
        their HBM traffic.
    efficiency : float, optional
        Achieved share of peak FLOP/s in compute-bound matrix products; default
        :func:`default_efficiency` (fitted, cached).
    memory_efficiency : float, optional
        Effective share of peak HBM bandwidth in element-wise kernels, over their stored-
        activation byte count (the unfused attention core's GEMMs use the full bandwidth on their
        exact bytes); default :func:`default_efficiency` ``(kind="memory")``.
    overlap_dp, overlap_tp, overlap_pp : float in [0, 1]
        Share of data-parallel communication hidden behind one micro-batch's compute, of tensor-
        parallel communication hidden, and of steady-state pipeline sends hidden.
    balanced_ends : bool
        First and last pipeline stages one layer lighter (Llama 3): see :func:`memory`.
    async_tp : bool
        The backward collectives of the column-parallel linears run beside their gradient
        GEMMs (Megatron-LM since September 2021, ``--async-tensor-model-parallel-allreduce``;
        with sequence parallelism the re-all-gather and the reduce-scatter): two all-reduce
        equivalents per layer hidden up to the GEMM time. False: Megatron-LM of the SC'21 paper.
    grad_accumulation_fusion : bool
        Gradients accumulate across micro-batches inside the weight-gradient GEMM (Megatron-LM
        2022 on). False: a separate add of each micro-batch's 16-bit gradient (Megatron-LM 2021,
        autograd accumulation), ``6 B`` per local parameter per micro-batch after the first.
    zero3_list_gather : False or float
        False: one flat gather per layer (FSDP, later DeepSpeed). A number: ZeRO-3 gathers each
        parameter tensor into one view per rank of its group (DeepSpeed v0.3.13-v0.5.x, 2021:
        ``_allgather_param`` and PyTorch's list ``all_gather``), one host-issued copy per rank
        and gathered tensor, each taking this many microseconds (in (0, 1000]; the reference
        rows take ``software.deepspeed-2021.zero3_list_gather`` of
        ``data/reference/llm_training.yaml``): ``2 l_stage x layer_tensors x d c x copy`` per
        micro-batch (a routed expert's tensors over its ``d c / ep`` ranks), added to the gathers.

    Returns
    -------
    xarray.Dataset
        Along ``layout``: ``step_time``, ``compute``, ``tp_comm``, ``cp_comm``, ``bubble``,
        ``pp_comm``, ``dp_comm`` (exposed, seconds), ``mfu``, ``tokens_per_s`` and the memory
        variables of :func:`memory`. The formula is in the module docstring.
    """
    model, a, rc = _prepare(model, cluster, tp, pp, dp, cp, micro_batch, global_batch, interleave,
                            zero, recompute, gpus, check, ep, bool(balanced_ends))
    a, rc, vals, attrs = _evaluate(
        model, cluster, a, rc, capacity_factor=capacity_factor, efficiency=efficiency,
        memory_efficiency=memory_efficiency, overlap_dp=overlap_dp, overlap_tp=overlap_tp,
        overlap_pp=overlap_pp, sequence_parallel=sequence_parallel, flash_attention=flash_attention,
        balanced_ends=balanced_ends, async_tp=async_tp,
        grad_accumulation_fusion=grad_accumulation_fusion, reserve=reserve,
        zero3_list_gather=zero3_list_gather)
    return _finish(model, cluster, a, rc, vals, attrs)


def _evaluate(model, cluster, a, rc, *, capacity_factor, efficiency, memory_efficiency,
              overlap_dp, overlap_tp, overlap_pp, sequence_parallel, flash_attention, balanced_ends,
              async_tp, grad_accumulation_fusion, reserve, only_fitting=False,
              zero3_list_gather=False):
    """Memory and step-time arrays for the layouts ``a`` (dict of equal-shape arrays) and ``rc``.
    With ``only_fitting`` the memory is computed first and only the layouts that fit are timed
    (the returned ``a``, ``rc`` and arrays are that subset, flattened)."""
    cf = _capacity(capacity_factor)
    eff = (default_efficiency("matmul", cluster.node.gpu_model) if efficiency is None
           else float(efficiency))
    # shares of peak; below 1% a step time is no longer a study (and 1e-300 overflows)
    if not MIN_EFFICIENCY <= eff <= 1:
        raise HpclabError(f"efficiency must be in [{MIN_EFFICIENCY:g}, 1], got {efficiency!r}")
    mem_eff = (default_efficiency("memory") if memory_efficiency is None
               else float(memory_efficiency))
    if not MIN_EFFICIENCY <= mem_eff <= 1:
        raise HpclabError(f"memory_efficiency must be in [{MIN_EFFICIENCY:g}, 1], got {memory_efficiency!r}")
    for name, val in (("overlap_dp", overlap_dp), ("overlap_tp", overlap_tp), ("overlap_pp", overlap_pp)):
        if not 0 <= float(val) <= 1:
            raise HpclabError(f"{name} must be in [0, 1], got {val!r}")
    sp = bool(sequence_parallel)
    reserve = memory_reserve() if reserve is None else float(reserve)
    mem = _memory_arrays(model, cluster, a["tp"], a["pp"], a["dp"], a["cp"], a["micro_batch"],
                         a["interleave"], a["zero"], rc, a["global_batch"], sp, reserve,
                         bool(flash_attention), bool(balanced_ends), a["ep"], cf)
    if only_fitting:  # prune what does not fit before timing it
        keep = np.flatnonzero(np.broadcast_to(mem["fits"], rc.shape).ravel())
        a = {k: np.broadcast_to(val, rc.shape).ravel()[keep] for k, val in a.items()}
        mem = {k: np.broadcast_to(val, rc.shape).ravel()[keep] for k, val in mem.items()}
        rc = rc.ravel()[keep]
    vals = _step_arrays(model, cluster, a["tp"], a["pp"], a["dp"], a["cp"], a["micro_batch"],
                        a["interleave"], a["zero"], rc, a["global_batch"], sp, eff, float(overlap_dp),
                        float(overlap_tp), float(overlap_pp), bool(flash_attention), mem_eff,
                        bool(balanced_ends), a["ep"], cf, bool(async_tp),
                        bool(grad_accumulation_fusion), _list_gather_seconds(zero3_list_gather))
    vals.update(mem)
    return a, rc, vals, dict(efficiency=eff, memory_efficiency=mem_eff)


def _finish(model, cluster, a, rc, vals, attrs, index=None):
    """The Dataset of :func:`step_time` (layouts ``index`` of the flattened arrays, in that
    order, when given), with ``reason`` for the layouts that do not fit."""
    shape = rc.shape
    if index is not None:
        a = {k: np.broadcast_to(val, shape).ravel()[index] for k, val in a.items()}
        vals = {k: np.broadcast_to(val, shape).ravel()[index] for k, val in vals.items()}
        rc = rc.ravel()[index]
    ds = _dataset(a, rc, vals, model, cluster, attrs=attrs)
    ds.attrs["gpu_memory"] = cluster.gpu_memory
    fits = ds["fits"].values > 0
    if fits.all():
        reason = np.zeros(fits.shape, dtype="<U1")
    else:  # one message per distinct figure (0.1 GB) among the layouts that do not fit
        tenths = np.where(fits, -1, np.round(ds["total_memory"].values / 1e8)).astype(np.int64)
        codes, shown = _distinct(tenths)
        tail = f" GB per GPU > {cluster.gpu_memory / 1e9:.0f} GB"
        reason = np.array([f"needs {t // 10}.{t % 10}{tail}" if t >= 0 else ""
                           for t in shown.tolist()])[codes]
    ds["reason"] = ("layout", reason)
    return ds


# --- layout enumeration and search ------------------------------------------------------------


#: Largest GPU count the layout search accepts (a real system could reach 10^6; headroom x10):
#: the one bound of hpclab._validate
from hpclab._validate import MAX_GPUS  # noqa: E402


def check_gpus(gpus) -> int:
    """``gpus`` as a whole number in ``[1, MAX_GPUS]``, else a one-line error."""
    g = check_positive("gpus", gpus, integer=True)
    if g > MAX_GPUS:
        raise HpclabError(f"gpus must be at most {MAX_GPUS:,} (10^7), got {g:,}")
    return int(g)


def _divisors(n):
    """Divisors of ``n`` in increasing order (trial division up to sqrt n)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


def layouts(model, cluster, gpus, global_batch, *, tp=None, pp=None, cp=None, micro_batch=None,
            interleave=None, zero=None, recompute=None, ep=None, balanced_ends=False):
    """All valid layouts for ``gpus`` GPUs as a dict of equal-length arrays.

    Each keyword restricts one axis (a value or a list); by default ``tp`` ranges over the
    divisors of the GPUs per node, ``pp`` over divisors of the rest up to ``layers``, ``cp`` over
    1, 2, 4, 8, 16, ``micro_batch`` over 1, 2, 4, 8, ``interleave`` over 1, 2, 4, ``zero`` over
    0-3, ``recompute`` over none/selective/full and, for a mixture-of-experts model, ``ep`` over
    the powers of two dividing ``experts`` up to 64 (1 for a dense model). Invalid combinations
    are removed with the rules of :func:`check_layout` (``balanced_ends`` as there).
    """
    model = transformer(model)
    gpus = check_gpus(gpus)
    global_batch = check_positive("global_batch", global_batch, integer=True)

    def axis(val, default):
        return np.atleast_1d(np.asarray(default if val is None else val))

    tps = axis(tp, _divisors(cluster.gpus_per_node))
    cps = axis(cp, [1, 2, 4, 8, 16])
    pps = axis(pp, [d for d in _divisors(gpus) if d <= model.layers])
    bs = axis(micro_batch, [1, 2, 4, 8])
    vs = axis(interleave, [1, 2, 4])
    zs = axis(zero, [0, 1, 2, 3])
    rcs = _recompute_codes(axis(recompute, list(RECOMPUTE)))
    default_ep = [e for e in (1, 2, 4, 8, 16, 32, 64) if model.experts and model.experts % e == 0] or [1]
    eps = axis(ep, default_ep)
    gb = int(global_batch)
    # the product of the axes in their order (tp, cp, pp, micro_batch, interleave, zero,
    # recompute, ep), pruned stage by stage with the rules of _layout_codes that the axes of each
    # stage decide, so that invalid combinations are never built
    t, c, p = (g.ravel().astype(np.int64) for g in np.meshgrid(tps, cps, pps, indexing="ij"))
    G = cluster.gpus_per_node
    ok = ((gpus % (t * c * p) == 0) & (model.heads % t == 0) & (G % t == 0) & (t <= G)
          & ((model.kv_heads % t == 0) | (t % model.kv_heads == 0)) & (model.seq_length % c == 0)
          & (p <= model.layers))
    t, c, p = t[ok], c[ok], p[ok]
    d = gpus // (t * c * p)

    def cross(outer, inner):
        """Every outer row with every inner row, outer-major (the meshgrid's order)."""
        n_in = inner[0].size
        return ([np.repeat(x, n_in) for x in outer], [np.tile(y, outer[0].size) for y in inner])

    bb, vv = (g.ravel().astype(np.int64) for g in np.meshgrid(bs, vs, indexing="ij"))
    (t, c, p, d), (b, v) = cross((t, c, p, d), (bb, vv))
    m = gb // np.maximum(d * b, 1)
    ok = (p * v <= _chunk_slots(model, p, bool(balanced_ends))) & (gb % (d * b) == 0) & ~((v > 1) & ((p == 1) | (m % p != 0)))
    t, c, p, d, b, v = (x[ok] for x in (t, c, p, d, b, v))
    zz, rr, ee = (g.ravel().astype(np.int64) for g in np.meshgrid(zs, rcs, eps, indexing="ij"))
    ok_inner = (zz >= 0) & (zz <= 3) & (max(model.experts, 1) % ee == 0)
    zz, rr, ee = zz[ok_inner], rr[ok_inner], ee[ok_inner]
    (t, c, p, d, b, v), (z, r, e) = cross((t, c, p, d, b, v), (zz, rr, ee))
    ok = (d * c) % e == 0
    return dict(tp=t[ok], pp=p[ok], dp=d[ok], cp=c[ok], micro_batch=b[ok], interleave=v[ok],
                zero=z[ok], recompute=r[ok], ep=e[ok], global_batch=np.full(int(ok.sum()), gb, dtype=np.int64))


def search(model, cluster, gpus, global_batch, *, top=None, feasible_only=True, efficiency=None,
           memory_efficiency=None, capacity_factor=1.0, sequence_parallel=True,
           flash_attention=True, balanced_ends=False, overlap_dp=1.0, overlap_tp=0.0,
           overlap_pp=1.0, async_tp=True, grad_accumulation_fusion=True, zero3_list_gather=False,
           reserve=None, **axes) -> xr.Dataset:
    """Enumerate the valid layouts (:func:`layouts`), evaluate them all at once and rank by step
    time (infeasible ones, which do not fit in memory, dropped unless ``feasible_only=False``).

    Returns the :func:`step_time` Dataset sorted by ``step_time`` (first = best; ties go to the
    layout needing less memory), ``top`` rows; ``attrs["layouts_evaluated"]`` counts them all.
    With ``flash_attention`` the default recomputation axis is ``selective`` and ``full`` only:
    FlashAttention never stores the scores and recomputes them in its backward pass, so
    ``none`` would be the same layout twice.
    """
    model = transformer(model)
    if top is not None:
        top = check_positive("top", top, integer=True)
    if flash_attention and axes.get("recompute") is None:
        axes["recompute"] = ["selective", "full"]  # with FlashAttention "none" is "selective"
    lay = layouts(model, cluster, gpus, global_batch, balanced_ends=balanced_ends, **axes)
    if lay["tp"].size == 0:
        raise HpclabError(f"no valid layout for {model.name} on {gpus} GPUs with global_batch "
                          f"{global_batch}; try a global batch that is a multiple of the data-parallel size")
    n_valid = int(lay["tp"].size)
    rcs = lay.pop("recompute")
    a, rc, vals, attrs = _evaluate(
        model, cluster, lay, rcs, capacity_factor=capacity_factor, efficiency=efficiency,
        memory_efficiency=memory_efficiency, overlap_dp=overlap_dp, overlap_tp=overlap_tp,
        overlap_pp=overlap_pp, sequence_parallel=sequence_parallel, flash_attention=flash_attention,
        balanced_ends=balanced_ends, async_tp=async_tp,
        grad_accumulation_fusion=grad_accumulation_fusion, reserve=reserve,
        only_fitting=feasible_only, zero3_list_gather=zero3_list_gather)
    if rc.size == 0:
        raise HpclabError(f"no layout of {model.name} fits in {cluster.gpu_memory / 1e9:.0f} GB "
                          f"per GPU on {gpus} GPUs ({n_valid} valid layouts tried); add GPUs")
    # fastest first; among equally fast layouts the one needing less memory
    shape = rc.shape
    step = np.broadcast_to(vals["step_time"], shape).ravel()
    total = np.broadcast_to(vals["total"], shape).ravel()
    order = np.lexsort((total, np.round(step, 12)))
    if top is not None:
        order = order[: int(top)]
    ds = _finish(model, cluster, a, rc, vals, attrs, index=order)
    ds.attrs["layouts_evaluated"] = n_valid
    return ds.assign_coords(layout=np.arange(ds.sizes["layout"]))
