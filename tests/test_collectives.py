"""Collective cost models: each formula against a hand computation, algorithm choice,
broadcasting, nccl-tests bandwidths, published measurements, and one-line errors."""

import math

import numpy as np
import pytest
import yaml

from hpclab import HpclabError
from hpclab._paths import data_dir
from hpclab.network import (ALGORITHMS, OPS, Fabric, algorithm_times, best_algorithm, busbw,
                            busbw_factor, collective_time, fabric, sweep)

A, B, G = 2e-6, 1e-9, 5e-10  # alpha [s], beta [s/B], gamma [s/B]
F = Fabric(alpha=A, beta=B, gamma=G, name="hand")
N = 1e6


def t(op, alg, p, n=N, f=F, **kw):
    return collective_time(op, n, p, f, algorithm=alg, **kw)


def pipelined(depth, x, alpha=A):
    """min over segment counts k >= 1 of (depth - 1 + k) * (alpha + x / k), by brute force."""
    k = np.linspace(1, 20000, 2_000_001)
    return float(np.min((depth - 1 + k) * (alpha + x / k)))


# --- each formula by hand (TRG05 forms; p = 8 is a power of two, p = 12 is not: p' = 8, r = 4)

HAND = [
    # allreduce
    ("allreduce", "ring", 8, 14 * A + 2 * 7 / 8 * N * B + 7 / 8 * N * G),
    ("allreduce", "ring", 12, 22 * A + 2 * 11 / 12 * N * B + 11 / 12 * N * G),
    ("allreduce", "recursive_doubling", 8, 3 * (A + N * B + N * G)),
    ("allreduce", "recursive_doubling", 12, 3 * (A + N * B + N * G) + 2 * A + 2 * N * B + N * G),
    ("allreduce", "rabenseifner", 8, 6 * A + 2 * 7 / 8 * N * B + 7 / 8 * N * G),
    ("allreduce", "rabenseifner", 12, 6 * A + 2 * 7 / 8 * N * B + 7 / 8 * N * G + 2 * A + 2 * N * B + N * G),
    ("allreduce", "double_binary_tree", 8, pipelined(3, N * (B + G)) + pipelined(3, N * B)),
    ("allreduce", "double_binary_tree", 12, pipelined(4, N * (B + G)) + pipelined(4, N * B)),
    # allgather (N = gathered output)
    ("allgather", "ring", 8, 7 * A + 7 / 8 * N * B),
    ("allgather", "recursive_doubling", 8, 3 * A + 7 / 8 * N * B),
    # MPICH patches inside the loop (p = 8 + 4: the 8 run 3 steps, the 4 run 2; 0-3 swap 8 and 4
    # blocks with 8-11; 0-3 send those 4 blocks to 4-7), 24 = 16 + 8 likewise (module docstring)
    ("allgather", "recursive_doubling", 12, 3 * A + 7 / 12 * N * B + (A + 8 / 12 * N * B) + (A + 4 / 12 * N * B)),
    ("allgather", "recursive_doubling", 24, 4 * A + 15 / 24 * N * B + (A + 16 / 24 * N * B) + (A + 8 / 24 * N * B)),
    ("allgather", "bruck", 12, 4 * A + 11 / 12 * N * B),
    # reduce_scatter (N = input per rank)
    ("reduce_scatter", "ring", 8, 7 * A + 7 / 8 * N * (B + G)),
    ("reduce_scatter", "pairwise", 12, 11 * A + 11 / 12 * N * (B + G)),
    ("reduce_scatter", "recursive_halving", 8, 3 * A + 7 / 8 * N * (B + G)),
    # 12 = 8 + 4: after the fold, virtual ranks 0-3 hold 2 blocks each; the halving steps move
    # the heavier half of their group: 4 + 4, 2 + 2, 1 + 1 blocks of N/12 (MPICH's newcnts)
    ("reduce_scatter", "recursive_halving", 12,
     3 * A + 14 / 12 * N * (B + G) + 2 * A + N * B + N * G + N / 12 * B),
    ("reduce_scatter", "recursive_doubling", 8, 3 * A + N * (3 - 7 / 8) * (B + G)),
    # 12 = 8 + 4, patched in the loop as MPICH does: the 8 send 11, 10, 8 blocks of N/12, the 4
    # send 11, 10 (waiting for the 8); then 0-3 swap with 8-11 and pass on 8 blocks to 4-7
    ("reduce_scatter", "recursive_doubling", 12, 3 * A + 29 / 12 * N * (B + G) + 2 * (A + 8 / 12 * N * (B + G))),
    # broadcast
    ("broadcast", "binomial", 12, 4 * (A + N * B)),
    ("broadcast", "scatter_allgather", 8, (3 + 7) * A + 2 * 7 / 8 * N * B),
    ("broadcast", "ring", 8, pipelined(7, N * B)),
    ("broadcast", "double_binary_tree", 8, pipelined(3, N * B)),
    # reduce
    ("reduce", "binomial", 8, 3 * (A + N * B + N * G)),
    ("reduce", "rabenseifner", 8, 6 * A + 2 * 7 / 8 * N * B + 7 / 8 * N * G),
    ("reduce", "rabenseifner", 12, 6 * A + 2 * 7 / 8 * N * B + 7 / 8 * N * G + A + N * B + N * G),
    ("reduce", "ring", 8, pipelined(7, N * (B + G))),
    ("reduce", "double_binary_tree", 12, pipelined(4, N * (B + G))),
    # alltoall (N = send buffer per rank)
    ("alltoall", "pairwise", 8, 7 * (A + N / 8 * B)),
    ("alltoall", "bruck", 8, 3 * (A + N / 2 * B)),
    # 12 ranks: the indices 0..11 with bit k set are 6, 6, 4 and 4 blocks of N/12
    ("alltoall", "bruck", 12, 4 * A + (6 + 6 + 4 + 4) / 12 * N * B),
    # barrier
    ("barrier", "bruck", 12, 4 * A),
    ("barrier", "recursive_doubling", 12, 3 * A + 2 * A),
    ("barrier", "binomial", 8, 6 * A),
]


@pytest.mark.parametrize("op,alg,p,expected", HAND, ids=[f"{o}-{a}-{p}" for o, a, p, _ in HAND])
def test_formula_matches_hand_computation(op, alg, p, expected):
    assert t(op, alg, p) == pytest.approx(expected, rel=1e-6)


def test_every_algorithm_has_a_hand_check():
    checked = {(op, alg) for op, alg, _, _ in HAND}
    for op, algs in ALGORITHMS.items():
        for alg in algs:
            if alg != "hierarchical":
                assert (op, alg) in checked, (op, alg)


def test_one_rank_costs_nothing():
    for op in OPS:
        assert collective_time(op, N, 1, F) == 0.0


# --- message-rate floor


def test_message_rate_floor_bounds_small_messages():
    gap = 10e-6
    f = Fabric(alpha=1e-6, beta=1e-12, message_rate=1 / gap)
    assert collective_time("barrier", 8, 8, f, algorithm="bruck") == pytest.approx(3 * gap)
    assert collective_time("allreduce", 8, 8, f, algorithm="ring") == pytest.approx(14 * gap)
    # Rabenseifner with a floor: each halving step costs max(alpha + n beta / 2^j, gap)
    n = 3e7
    hand = 2 * sum(max(1e-6 + n * 1e-12 / 2**j, gap) for j in (1, 2, 3))
    assert collective_time("allreduce", n, 8, f, algorithm="rabenseifner") == pytest.approx(hand)
    # large messages are not affected
    big = collective_time("allreduce", 1e9, 8, f, algorithm="ring")
    assert big == pytest.approx(14 * 1e-6 + 2 * 7 / 8 * 1e9 * 1e-12)


# messages each algorithm sends per rank for p = 8 (TRG05 step counts; a pipeline of depth d with
# one segment takes d steps): with a tiny alpha and a large message-rate gap, t = steps x gap
FLOOR_STEPS = {
    "allreduce": {"ring": 14, "recursive_doubling": 3, "rabenseifner": 6, "double_binary_tree": 6},
    "allgather": {"ring": 7, "recursive_doubling": 3, "bruck": 3},
    "reduce_scatter": {"ring": 7, "pairwise": 7, "recursive_halving": 3, "recursive_doubling": 3},
    "broadcast": {"binomial": 3, "scatter_allgather": 10, "ring": 7, "double_binary_tree": 3},
    "reduce": {"binomial": 3, "rabenseifner": 6, "ring": 7, "double_binary_tree": 3},
    "alltoall": {"pairwise": 7, "bruck": 3},
    "barrier": {"bruck": 3, "recursive_doubling": 3, "binomial": 6},
}


@pytest.mark.parametrize("op", list(FLOOR_STEPS))
def test_message_rate_floor_counts_every_step(op):
    gap = 1e-5
    f = Fabric(alpha=1e-9, beta=1e-12, message_rate=1 / gap)
    assert set(FLOOR_STEPS[op]) == set(ALGORITHMS[op]) - {"hierarchical"}
    for alg, steps in FLOOR_STEPS[op].items():
        got = collective_time(op, 8, 8, f, algorithm=alg)
        assert got == pytest.approx(steps * gap, rel=1e-3), (op, alg, got / gap)


def test_erdma_floor_is_the_articles_50_million_messages_per_second():
    erdma = fabric("erdma")
    assert erdma.message_gap == pytest.approx(1 / 50e6)
    # 32 ranks per host share the host's message rate: one step costs at least 32 / 50 M/s
    tiny = erdma.with_(alpha=1e-9, per_hop_latency=0.0)
    got = collective_time("barrier", 8, 64, tiny, algorithm="bruck", ranks_per_node=32)
    assert got == pytest.approx(6 * 32 / 50e6)


# --- nodes: node-aware ring and hierarchical


def test_node_aware_ring_uses_one_ring_per_rail():
    intra = Fabric(alpha=3e-6, beta=1 / 200e9, name="nv")
    inter = Fabric(alpha=5e-6, beta=1 / 25e9, links_per_host=4, name="ib")
    p, n = 8, 1e9
    hand = 2 * (p - 1) * 5e-6 + 2 * (p - 1) / p * n * max(1 / 200e9, (1 / 25e9) / 4)
    got = collective_time("allreduce", n, p, inter, algorithm="ring", ranks_per_node=4, intra_fabric=intra)
    assert got == pytest.approx(hand)
    # all ranks on one host: only the intra fabric
    one = collective_time("allreduce", n, 4, inter, algorithm="ring", ranks_per_node=4, intra_fabric=intra)
    assert one == pytest.approx(2 * 3 * 3e-6 + 2 * 3 / 4 * n / 200e9)


def test_hierarchical_allreduce_by_hand():
    intra = Fabric(alpha=1e-6, beta=1e-11, name="nv")
    inter = Fabric(alpha=5e-6, beta=1e-10, links_per_host=4, name="net")
    n, g, nodes = 1e8, 4, 4
    rs_intra = 2 * 1e-6 + 3 / 4 * n * 1e-11          # recursive halving among 4 local ranks
    ar_inter = 4 * 5e-6 + 2 * 3 / 4 * (n / g) * 1e-10  # Rabenseifner among 4 hosts on n/4
    ag_intra = 2 * 1e-6 + 3 / 4 * n * 1e-11          # recursive doubling
    got = collective_time("allreduce", n, g * nodes, inter, algorithm="hierarchical",
                          ranks_per_node=g, intra_fabric=intra)
    assert got == pytest.approx(rs_intra + ar_inter + ag_intra)
    # 8 local ranks on 4 links: the rails are shared two ways
    got8 = collective_time("allreduce", n, 32, inter, algorithm="hierarchical", ranks_per_node=8,
                           intra_fabric=intra)
    hand8 = 2 * (3 * 1e-6 + 7 / 8 * n * 1e-11) + 4 * 5e-6 + 2 * 3 / 4 * (n / 8) * 2e-10
    assert got8 == pytest.approx(hand8)


def _best4(op, m, a, b):
    """Fastest flat algorithm on p = 4 ranks (lg p = 2), by the hand formulas (no gamma, no gap)."""
    def pipe(d, x):
        return (math.sqrt((d - 1) * a) + math.sqrt(x)) ** 2
    forms = {
        "allgather": [3 * a + 0.75 * m * b, 2 * a + 0.75 * m * b, 2 * a + 0.75 * m * b],
        "reduce_scatter": [3 * a + 0.75 * m * b, 2 * a + 0.75 * m * b, 2 * a + 1.25 * m * b],
        "broadcast": [2 * (a + m * b), 5 * a + 1.5 * m * b, pipe(3, m * b), pipe(2, m * b)],
        "reduce": [2 * (a + m * b), 4 * a + 1.5 * m * b, pipe(3, m * b), pipe(2, m * b)],
        "alltoall": [3 * (a + m / 4 * b), 2 * (a + m / 2 * b)],
        "barrier": [2 * a, 2 * a, 4 * a],
    }
    return min(forms[op])


@pytest.mark.parametrize("op", ["allgather", "reduce_scatter", "broadcast", "reduce", "alltoall", "barrier"])
def test_hierarchical_other_ops_by_hand(op):
    """4 hosts x 4 ranks, 4 links per host (no sharing): intra phases on ``intra``, inter phases
    between the 4 hosts, each phase the fastest flat algorithm by hand."""
    ai, bi, ae, be = 1e-6, 1e-11, 5e-6, 1e-10
    intra = Fabric(alpha=ai, beta=bi, name="nv")
    inter = Fabric(alpha=ae, beta=be, links_per_host=4, name="net")
    n, g = 1e8, 4
    hand = {
        "allgather": _best4("allgather", n / g, ae, be) + _best4("allgather", n, ai, bi),
        "reduce_scatter": _best4("reduce_scatter", n, ai, bi) + _best4("reduce_scatter", n / g, ae, be),
        "broadcast": _best4("broadcast", n, ae, be) + _best4("broadcast", n, ai, bi),
        "reduce": _best4("reduce", n, ai, bi) + _best4("reduce", n, ae, be),
        "alltoall": _best4("alltoall", n, ai, bi) + _best4("alltoall", n, ae, be),
        "barrier": 2 * _best4("barrier", n, ai, bi) + _best4("barrier", n, ae, be),
    }[op]
    got = collective_time(op, n, 16, inter, algorithm="hierarchical", ranks_per_node=g, intra_fabric=intra)
    assert got == pytest.approx(hand, rel=1e-9)


def test_hierarchical_beats_flat_at_scale_for_gpu_hosts():
    kw = dict(ranks_per_node=8, intra_fabric="nvlink")
    flat = collective_time("allreduce", 2**28, 1024, "rdma-hpn7", algorithm="rabenseifner", **kw)
    hier = collective_time("allreduce", 2**28, 1024, "rdma-hpn7", algorithm="hierarchical", **kw)
    assert hier < flat


# --- auto and algorithm choice


def test_auto_is_the_minimum_and_reports_its_choice():
    n = np.logspace(0, 9, 19)
    p = np.array([[2], [7], [64], [300]])
    times = algorithm_times("allreduce", n, p, "erdma")
    auto = collective_time("allreduce", n, p, "erdma")
    assert np.allclose(auto, np.min(np.stack(list(times.values())), axis=0))
    chosen = best_algorithm("allreduce", n, p, "erdma")
    assert chosen.shape == (4, 19)
    for (i, j), name in np.ndenumerate(chosen):
        assert times[name][i, j] == pytest.approx(auto[i, j])


def test_algorithm_crossovers_follow_mpich():
    # small messages: recursive doubling (latency lg p); large on a power of two: Rabenseifner;
    # large on a non-power of two: ring (Rabenseifner pays 2 n beta for folding the excess ranks)
    assert best_algorithm("allreduce", 8, 64, "erdma") == "recursive_doubling"
    assert best_algorithm("allreduce", 2**30, 64, "erdma") == "rabenseifner"
    assert best_algorithm("allreduce", 2**30, 48, "erdma") == "ring"
    assert best_algorithm("broadcast", 8, 64, "erdma") == "binomial"
    assert best_algorithm("broadcast", 2**30, 64, "erdma") in ("ring", "double_binary_tree",
                                                                "scatter_allgather")
    assert best_algorithm("alltoall", 8, 256, "tcp-vpc") == "bruck"
    assert best_algorithm("alltoall", 2**26, 256, "tcp-vpc") == "pairwise"
    assert best_algorithm("barrier", 8, 12, "erdma") == "bruck"


def test_erdma_beats_tcp_most_for_small_messages():
    n = np.array([8, 2**20, 2**30])
    tcp = collective_time("allreduce", n, 64, "tcp-vpc")
    erdma = collective_time("allreduce", n, 64, "erdma")
    ratio = tcp / erdma
    assert np.all(ratio > 1)
    from hpclab.catalog import default

    tcp_spec, erdma_spec = default().fabric("tcp-vpc"), default().fabric("erdma")
    # latency-bound: the ratio of the catalog alphas (25 us / 8 us today)
    assert ratio[0] == pytest.approx(tcp_spec.alpha / erdma_spec.alpha, rel=0.05)
    # bandwidth-bound: the ratio of bandwidth x efficiency (50 GB/s x 0.92 / 12.5 GB/s x 0.4 today)
    assert ratio[2] == pytest.approx((erdma_spec.bandwidth * erdma_spec.efficiency)
                                     / (tcp_spec.bandwidth * tcp_spec.efficiency), rel=0.05)


# --- broadcasting


def test_broadcasting_shapes_and_scalars():
    assert isinstance(collective_time("allreduce", 1024, 8, "erdma"), float)
    out = collective_time("allgather", [8, 1024, 2**20], [[2], [4], [8], [16]], "erdma")
    assert out.shape == (4, 3)
    for i, p in enumerate([2, 4, 8, 16]):
        for j, n in enumerate([8, 1024, 2**20]):
            assert out[i, j] == pytest.approx(collective_time("allgather", n, p, "erdma"))
    assert collective_time("allreduce", np.array(2.0**20), 8, "erdma") == pytest.approx(
        collective_time("allreduce", 2**20, 8, "erdma"))
    assert np.all(np.diff(collective_time("allreduce", np.logspace(1, 9, 20), 64, "erdma")) > 0)


def test_fabric_object_and_name_agree():
    assert collective_time("reduce", 2**20, 16, fabric("erdma")) == collective_time("reduce", 2**20, 16, "erdma")


# --- nccl-tests bandwidths


def test_busbw_factors_are_nccl_tests():
    assert busbw_factor("allreduce", 8) == pytest.approx(2 * 7 / 8)
    for op in ("allgather", "reduce_scatter", "alltoall"):
        assert busbw_factor(op, 8) == pytest.approx(7 / 8)
    assert busbw_factor("broadcast", 8) == 1.0 and busbw_factor("reduce", 8) == 1.0
    assert math.isnan(busbw_factor("barrier", 8))
    # nccl-tests output line (8 GPUs, 1 GiB allreduce, 9252.3 us -> algbw 116.05, busbw 203.09)
    assert busbw("allreduce", 1073741824, 8, 9252.3e-6) / 1e9 == pytest.approx(203.09, abs=0.01)


def test_ring_busbw_tends_to_link_bandwidth():
    f = Fabric(alpha=1e-6, beta=1 / 40e9)
    for op in ("allreduce", "allgather", "reduce_scatter"):
        tt = collective_time(op, 2**34, 16, f, algorithm="ring")
        assert busbw(op, 2**34, 16, tt) == pytest.approx(40e9, rel=1e-3)


# --- published measurements (data/reference/collectives.yaml)


def _reference():
    return yaml.safe_load((data_dir() / "reference" / "collectives.yaml").read_text())


def _mid(v):
    return sum(v) / 2 if isinstance(v, list) else float(v)


TOLERANCE = 0.10  # the model must land within 10 % of each validation row


def _model_busbw(row, fab):
    n = 2**33  # 8 GiB: the large-message plateau nccl-tests reports
    kw = {}
    if "ranks_per_node" in row:
        intra = row["intra_fabric"] if "intra_fabric" in row else row["fabric"]
        kw = dict(ranks_per_node=row["ranks_per_node"], intra_fabric=intra)
    p = row.get("ranks", 16)
    secs = collective_time("allreduce", n, p, fab, algorithm="ring", **kw)
    return busbw("allreduce", n, p, secs) / 1e9


def test_catalog_efficiencies_come_from_the_calibration_rows():
    ref = {r["id"]: r for r in _reference()["nccl_allreduce_busbw"]}
    assert fabric("nvlink3").bandwidth / 1e9 == pytest.approx(ref["a100-nvlink"]["busbw_GBps"], rel=0.01)
    assert fabric("ib-ndr400").bandwidth / 1e9 == pytest.approx(_mid(ref["ndr400-per-nic"]["busbw_GBps"]), rel=0.01)
    assert fabric("tcp-vpc").bandwidth / 1e9 == pytest.approx(_mid(ref["tcp-100g"]["busbw_GBps"]), rel=0.01)


def test_model_predicts_validation_rows_from_calibrated_efficiencies():
    """Efficiency calibrated on one row (A100 NVLink, NDR NIC), then H100 NVLink and the 2x4 HDR
    run are predicted, not fitted."""
    from hpclab.catalog import default

    cat = default()
    rows = {r["id"]: r for r in _reference()["nccl_allreduce_busbw"]}
    eff_nvlink = rows["a100-nvlink"]["busbw_GBps"] * 1e9 / cat.fabric("nvlink3").bandwidth
    eff_ib = _mid(rows["ndr400-per-nic"]["busbw_GBps"]) * 1e9 / cat.fabric("ib-ndr400").bandwidth
    nv = Fabric.from_spec(cat.fabric("nvlink"))
    nv = nv.with_(beta=1 / (cat.fabric("nvlink").bandwidth * eff_nvlink))
    got = _model_busbw({"ranks": 8}, nv)
    want = rows["h100-nvlink-ring"]["busbw_GBps"]
    assert abs(got / want - 1) < TOLERANCE, (got, want)

    hdr = Fabric.from_spec(cat.fabric("ib-hdr200"))
    hdr = hdr.with_(beta=1 / (cat.fabric("ib-hdr200").bandwidth * eff_ib))
    nv3 = Fabric.from_spec(cat.fabric("nvlink3")).with_(
        beta=1 / (cat.fabric("nvlink3").bandwidth * eff_nvlink))
    row = rows["hdr200-2x4"]
    got = _model_busbw({"ranks": 8, "ranks_per_node": 4, "intra_fabric": nv3}, hdr)
    assert abs(got / row["busbw_GBps"] - 1) < TOLERANCE, (got, row["busbw_GBps"])
    # per HCA: busbw divided over the 4 HCAs of a node
    assert abs(got / 4 / row["per_hca_GBps"] - 1) < TOLERANCE


def test_catalog_fabrics_land_on_every_modelled_row():
    for row in _reference()["nccl_allreduce_busbw"]:
        if row["role"] == "not-modelled":
            continue
        got = _model_busbw(row, row["fabric"])
        want = row["busbw_GBps"]
        if isinstance(want, list):
            assert want[0] * (1 - TOLERANCE) <= got <= want[1] * (1 + TOLERANCE), (row["id"], got)
        else:
            assert abs(got / want - 1) < TOLERANCE, (row["id"], got, want)


def test_small_message_latency_matches_published_point_to_point():
    for row in _reference()["point_to_point_latency_us"]:
        # a 2-rank broadcast of 8 bytes is one message: alpha
        got = collective_time("broadcast", 8, 2, row["fabric"], algorithm="binomial") * 1e6
        lat = row["latency_us"]
        lo, hi = (lat if isinstance(lat, list) else (lat, lat))
        assert lo * (1 - TOLERANCE) <= got <= hi * (1 + TOLERANCE), (row["setup"], got)


# --- sweep


def test_sweep_dataset():
    ds = sweep(op=["allreduce", "alltoall"], algorithm=["auto", "ring", "pairwise"],
               fabric=["tcp-vpc", "erdma"], ranks=[2, 16, 256], nbytes=[8, 2**20, 2**30])
    assert ds["time"].dims == ("op", "algorithm", "fabric", "ranks", "nbytes")
    assert ds["time"].attrs["units"] == "s" and ds["busbw"].attrs["units"] == "B/s"
    assert ds["nbytes"].attrs["units"] == "B"
    assert np.isnan(ds["time"].sel(op="allreduce", algorithm="pairwise")).all()
    assert np.isnan(ds["time"].sel(op="alltoall", algorithm="ring")).all()
    got = ds["time"].sel(op="allreduce", algorithm="auto", fabric="erdma").values
    want = collective_time("allreduce", [8, 2**20, 2**30], [[2], [16], [256]], "erdma")
    assert np.allclose(got, want)
    chosen = ds["chosen"].sel(op="allreduce", fabric="erdma").values
    assert (chosen == best_algorithm("allreduce", [8, 2**20, 2**30], [[2], [16], [256]], "erdma")).all()
    secs = ds["time"].sel(op="allreduce", algorithm="ring", fabric="tcp-vpc", ranks=16, nbytes=2**30)
    bus = ds["busbw"].sel(op="allreduce", algorithm="ring", fabric="tcp-vpc", ranks=16, nbytes=2**30)
    assert float(bus) == pytest.approx(busbw("allreduce", 2**30, 16, float(secs)))


def test_sweep_with_nodes_matches_collective_time():
    ds = sweep(op="allreduce", algorithm=["hierarchical", "ring"], fabric=["rdma-hpn7"],
               ranks=[8, 64], nbytes=[2**20, 2**30], ranks_per_node=8, intra_fabric="nvlink",
               topology="hpn7")
    for alg in ("hierarchical", "ring"):
        want = collective_time("allreduce", [2**20, 2**30], [[8], [64]], "rdma-hpn7", algorithm=alg,
                               ranks_per_node=8, intra_fabric="nvlink", topology="hpn7")
        assert np.allclose(ds["time"].sel(algorithm=alg, fabric="rdma-hpn7").values, want)


# --- bad input: one line, the field and what is allowed

BAD = [
    (dict(op="allreduse"), HpclabError, "op must be one of"),
    (dict(algorithm="butterfly"), HpclabError, "algorithm for allreduce must be one of"),
    (dict(algorithm="pairwise"), HpclabError, "algorithm for allreduce"),
    (dict(fabric="infiniband-9000"), KeyError, "unknown fabric 'infiniband-9000'; known:"),
    (dict(fabric=3.5), HpclabError, "fabric must be a Fabric"),
    (dict(nbytes=0), HpclabError, "nbytes must be > 0"),
    (dict(nbytes=-8), HpclabError, "nbytes must be > 0"),
    (dict(nbytes=float("nan")), HpclabError, "nbytes must be finite"),
    (dict(nbytes=[8, np.inf]), HpclabError, "nbytes must be finite"),
    (dict(nbytes="lots"), HpclabError, "nbytes must be numeric"),
    (dict(ranks=-4), HpclabError, "ranks must be >= 1"),
    (dict(ranks=0), HpclabError, "ranks must be >= 1"),
    (dict(ranks=2.5), HpclabError, "ranks must be whole numbers"),
    (dict(ranks=float("nan")), HpclabError, "ranks must be finite"),
    (dict(ranks=[2, 4, 8], nbytes=[1, 2]), HpclabError, "must broadcast together"),
    (dict(ranks_per_node=0), HpclabError, "ranks_per_node must be"),
    (dict(intra_fabric="warp"), KeyError, "unknown fabric 'warp'"),
    (dict(topology="torus"), KeyError, "unknown topology 'torus'; known: hpn7"),
    (dict(colour="red"), HpclabError, "unknown option 'colour'; allowed: ranks_per_node"),
]


@pytest.mark.parametrize("change,exc,message", BAD, ids=[str(c) for c, _, _ in BAD])
def test_bad_input_is_one_clear_line(change, exc, message):
    kw = dict(op="allreduce", nbytes=1024, ranks=8, fabric="erdma", algorithm="auto")
    kw.update(change)
    with pytest.raises(exc) as info:
        collective_time(kw.pop("op"), kw.pop("nbytes"), kw.pop("ranks"), kw.pop("fabric"), **kw)
    text = info.value.args[0] if isinstance(info.value, KeyError) else str(info.value)
    assert message in text
    assert "\n" not in text


def test_fabric_parameters_are_validated():
    with pytest.raises(HpclabError, match="alpha must be a finite number > 0"):
        Fabric(alpha=-1e-6, beta=1e-9)
    with pytest.raises(HpclabError, match="beta"):
        Fabric(alpha=1e-6, beta=float("nan"))


def test_sweep_bad_input():
    with pytest.raises(HpclabError, match="algorithm must be one of"):
        sweep(algorithm="warp")
    with pytest.raises(HpclabError, match="op must be one of"):
        sweep(op="gather")
    with pytest.raises(HpclabError, match="nbytes must be > 0"):
        sweep(nbytes=[0, 8])


# --- the widget panel (hpclab.viz.collectives): setting .value fires the observers


def test_panel_updates_its_figure_in_place():
    from hpclab.viz.collectives import collectives_panel

    panel = collectives_panel(op="allreduce", fabric="erdma", algorithm="auto", ranks=64, nbytes=2**20)
    curves, point = panel.sources["curves"], panel.sources["point"]
    renderers_before = list(panel.figure.renderers)
    assert point.data["y"][0] == pytest.approx(collective_time("allreduce", 2**20, 64, "erdma"))
    assert "picked by auto" in panel.summary.value
    assert set(curves.data["name"]) == set(ALGORITHMS["allreduce"]) | {"auto (fastest)"}

    panel.widgets["fabric"].value = "tcp-vpc"
    assert point.data["y"][0] == pytest.approx(collective_time("allreduce", 2**20, 64, "tcp-vpc"))
    assert "tcp-vpc" in panel.summary.value

    panel.widgets["ranks"].value = 1024
    panel.widgets["nbytes"].value = float(2**30)
    assert point.data["x"] == [2.0**30]
    assert point.data["y"][0] == pytest.approx(collective_time("allreduce", 2**30, 1024, "tcp-vpc"))

    panel.widgets["algorithm"].value = "ring"
    assert point.data["y"][0] == pytest.approx(
        collective_time("allreduce", 2**30, 1024, "tcp-vpc", algorithm="ring"))
    width = dict(zip(curves.data["name"], curves.data["width"]))
    assert width["ring"] > width["rabenseifner"]  # the algorithm in use is drawn thick

    # a new op swaps the algorithm list; an algorithm it lacks falls back to auto
    panel.widgets["op"].value = "alltoall"
    assert panel.widgets["algorithm"].options == ("auto", *ALGORITHMS["alltoall"])
    assert panel.widgets["algorithm"].value == "auto"
    assert set(curves.data["name"]) == set(ALGORITHMS["alltoall"]) | {"auto (fastest)"}
    assert point.data["y"][0] == pytest.approx(collective_time("alltoall", 2**30, 1024, "tcp-vpc"))
    # the figure was updated through its sources, not rebuilt
    assert list(panel.figure.renderers) == renderers_before
    assert panel.sources["curves"] is curves


def test_panel_model_is_fast_enough_to_call_per_widget_event():
    from hpclab.viz.collectives import panel_model

    m = panel_model("allreduce", "erdma", "auto", 256, 2**20)
    assert m["algorithm"] == best_algorithm("allreduce", 2**20, 256, "erdma")
    assert len(m["curves"]["xs"]) == len(ALGORITHMS["allreduce"]) + 1


def test_figures_build_from_datasets():
    from hpclab.viz.collectives import (alpha_beta_figure, busbw_figure, crossover_figure, time_figure)

    ds = sweep(op="allreduce", fabric=["tcp-vpc", "erdma"], ranks=[16, 256], nbytes=[8, 2**20, 2**30])
    for fig in (alpha_beta_figure(), time_figure(ds), busbw_figure(ds, ranks=[256]),
                crossover_figure("allreduce", "erdma", 48)):
        assert fig.renderers


# --- NCCL model (NVIDIA/nccl src/graph/tuning.cc) ---------------------------------------------

NCCL_TOLERANCE = 0.25


def test_nccl_model_lands_on_every_published_nccl_tests_point():
    from hpclab.network import nccl_time

    points = _reference()["nccl_tests_points"]
    assert any(r["nbytes"] == 8 for r in points)  # an 8-byte allreduce is among them
    for r in points:
        kw = dict(ranks_per_node=r["ranks_per_node"], intra_fabric=r["intra_fabric"],
                  nvls=r.get("nvls", False), algorithm=r.get("algorithm", "auto"),
                  cpu=r.get("cpu", "intel"))
        t = nccl_time(r["op"], r["nbytes"], r["ranks"], r.get("fabric", "rdma-hpn7"), **kw)
        if "time_us" in r:
            got, want = t * 1e6, r["time_us"]
        else:
            got, want = busbw(r["op"], r["nbytes"], r["ranks"], t) / 1e9, r["busbw_GBps"]
        assert abs(got / want - 1) <= NCCL_TOLERANCE, (r["id"], got, want)


def test_nccl_small_allreduce_is_latency_bound_and_uses_ll_on_trees():
    from hpclab.network import nccl_time

    # 2 hosts x 8 A100, 8 B: NCCL's tuner picks the tree with LL: base 6.8 us +
    # 2 ((8 - 1) x 0.6 us NVLink + log2(2) x 5.0 us network) = 25.2 us, + 4 us launch
    t, alg, proto = nccl_time("allreduce", 8, 16, "rdma-hpn7", ranks_per_node=8,
                              intra_fabric="nvlink3", choice=True)
    assert (str(alg), str(proto)) == ("tree", "LL")
    assert t * 1e6 == pytest.approx(6.8 + 2 * (7 * 0.6 + 1 * 5.0) + 4.0, rel=1e-3)
    # the MPI forms (recursive doubling on InfiniBand) miss NCCL's protocol and launch costs
    mpi = collective_time("allreduce", 8, 16, "ib-hdr200", ranks_per_node=8, intra_fabric="nvlink3")
    assert mpi < 0.5 * t


def test_nccl_large_messages_use_simple_and_the_host_links():
    from hpclab.network import nccl_time

    # on more than 2 hosts the ring's bus bandwidth is the host's links (8 x 47 GB/s on HPN)
    # capped by NVLink (349 GB/s on H100): allreduce busbw = C bwInter (p/nsteps) 2(p-1)/p
    t, alg, proto = nccl_time("allreduce", 2**34, 128, "rdma-hpn7", ranks_per_node=8,
                              intra_fabric="nvlink", algorithm="ring", choice=True)
    assert str(proto) == "Simple"
    want = min(8 * fabric("rdma-hpn7").bandwidth, fabric("nvlink").bandwidth)
    assert busbw("allreduce", 2**34, 128, t) == pytest.approx(want, rel=0.05)
    # with 1 NIC per host (eRDMA) the host's one link is the ring's bandwidth
    t1 = nccl_time("allreduce", 2**34, 128, "erdma", ranks_per_node=8, intra_fabric="nvlink",
                   algorithm="ring")
    assert busbw("allreduce", 2**34, 128, t1) == pytest.approx(fabric("erdma").bandwidth, rel=0.05)
    # on 2 hosts NCCL's model takes the intra-node bandwidth: the NIC figures do not enter
    a = nccl_time("allreduce", 2**30, 16, "rdma-hpn7", ranks_per_node=8, intra_fabric="nvlink3")
    b = nccl_time("allreduce", 2**30, 16, "tcp-vpc", ranks_per_node=8, intra_fabric="nvlink3")
    assert a == pytest.approx(b)
    # NVLS (NVLink SHARP) beats the ring on one H100 host at 1 GiB, and is Hopper-only
    ring = nccl_time("allreduce", 2**30, 8, intra_fabric="nvlink", ranks_per_node=8, algorithm="ring")
    nvls = nccl_time("allreduce", 2**30, 8, intra_fabric="nvlink", ranks_per_node=8, nvls=True)
    assert nvls < ring
    assert nccl_time("allreduce", 2**30, 8, intra_fabric="nvlink3", ranks_per_node=8, nvls=True) == \
        pytest.approx(nccl_time("allreduce", 2**30, 8, intra_fabric="nvlink3", ranks_per_node=8))


def test_nccl_through_collective_time_and_bad_input():
    from hpclab.network import nccl_time

    kw = dict(ranks_per_node=8, intra_fabric="nvlink")
    assert collective_time("allreduce", [8, 2**20], 64, "rdma-hpn7", library="nccl", **kw) == \
        pytest.approx(nccl_time("allreduce", [8, 2**20], 64, "rdma-hpn7", **kw))
    with pytest.raises(HpclabError, match="library must be one of"):
        collective_time("allreduce", 8, 64, "rdma-hpn7", library="gloo")
    with pytest.raises(HpclabError, match="op must be one of"):
        nccl_time("alltoall", 8, 64)
    with pytest.raises(HpclabError, match="protocol must be one of"):
        nccl_time("allreduce", 8, 64, protocol="LL64")
    with pytest.raises(HpclabError, match="no NCCL algorithm runs allgather"):
        nccl_time("allgather", 8, 64, algorithm="tree")


def test_sweep_of_one_algorithm_costs_only_that_algorithm():
    import time as _time

    n = np.geomspace(8, 2**30, 1000)
    p = np.unique(np.geomspace(2, 4096, 1000).astype(int))
    t0 = _time.perf_counter()
    ds = sweep(op="allreduce", algorithm="ring", fabric="erdma", ranks=p, nbytes=n)
    one = _time.perf_counter() - t0
    want = collective_time("allreduce", n[None, :], p[:, None], "erdma", algorithm="ring")
    assert np.allclose(ds["time"].sel(op="allreduce", algorithm="ring", fabric="erdma").values, want)
    assert (ds["chosen"].values == "").all()  # nothing was chosen: auto was not asked for
