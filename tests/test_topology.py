"""Topology: hops and oversubscription per tier, placement, and their effect on collectives."""

import numpy as np
import pytest

from hpclab import HpclabError
from hpclab.network import Fabric, Topology, collective_time, topology

F = Fabric(alpha=2e-6, beta=1e-10, per_hop_latency=0.5e-6, name="net")


def test_tiers_hops_and_oversubscription():
    t = Topology(hosts_per_leaf=4, leaves_per_pod=3, oversubscription=(2.0, 4.0))
    hosts = [1, 4, 5, 12, 13, 1000]
    assert t.extra_hops(hosts).tolist() == [0, 0, 2, 2, 4, 4]
    assert t.oversubscription_at(hosts).tolist() == [1, 1, 2, 2, 4, 4]
    assert t.ring_oversubscription_at(hosts).tolist() == [1, 1, 1, 1, 1, 1]  # 4 / 4 hosts per leaf
    assert Topology(hosts_per_leaf=2, oversubscription=(8, 1)).ring_oversubscription_at(3) == 4


def test_spread_placement_crosses_the_top_tier():
    packed = Topology(hosts_per_leaf=32, oversubscription=(3, 3), placement="packed")
    spread = Topology(hosts_per_leaf=32, oversubscription=(3, 3), placement="spread")
    assert packed.extra_hops(8) == 0 and spread.extra_hops(8) == 4
    assert spread.extra_hops(1) == 0
    assert spread.oversubscription_at(8) == 3


def test_single_switch_adds_nothing():
    t = Topology(kind="single-switch", oversubscription=(5, 5))
    assert t.extra_hops(10_000) == 0 and t.oversubscription_at(10_000) == 1


def test_hops_add_latency_and_oversubscription_divides_bandwidth():
    t = Topology(hosts_per_leaf=4, leaves_per_pod=4, oversubscription=(3.0, 3.0))
    n, p = 1e8, 8  # 8 hosts: spans two leaves of one pod -> 2 extra hops, ratio 3
    got = collective_time("alltoall", n, p, F, algorithm="pairwise", topology=t)
    hand = 7 * (2e-6 + 2 * 0.5e-6 + n / 8 * 1e-10 * 3)
    assert got == pytest.approx(hand)
    # a ring sends one flow per leaf boundary: 3 / 4 < 1, no slowdown, only the hops
    ring = collective_time("allreduce", n, p, F, algorithm="ring", topology=t)
    assert ring == pytest.approx(14 * (2e-6 + 1e-6) + 2 * 7 / 8 * n * 1e-10)
    # within one leaf: unchanged
    assert collective_time("alltoall", n, 4, F, algorithm="pairwise", topology=t) == pytest.approx(
        collective_time("alltoall", n, 4, F, algorithm="pairwise"))


def test_placement_group_helps_small_messages():
    small = collective_time("allreduce", 8, 16, "erdma", topology="vpc-placement-group")
    spread = collective_time("allreduce", 8, 16, "erdma", topology="vpc-spread")
    assert spread > small
    assert spread - small == pytest.approx(4 * 4 * 1e-6, rel=1e-3)  # 4 steps x 4 hops x 1 us


def test_presets_have_sources_and_hpn_segments():
    hpn = topology("hpn7")
    assert hpn.kind == "rail-optimised" and hpn.hosts_per_leaf * 8 == 1024
    assert hpn.leaves_per_pod == 15
    # 1024 GPUs (128 hosts) stay in one segment; 2048 GPUs cross the aggregation tier
    assert hpn.extra_hops([128, 129]).tolist() == [0, 2]
    assert topology(hpn) is hpn


@pytest.mark.parametrize("kw,match", [
    (dict(kind="torus"), "topology kind must be one of"),
    (dict(placement="random"), "placement must be one of"),
    (dict(hosts_per_leaf=0), "hosts_per_leaf must be"),
    (dict(oversubscription=(0.5, 1)), "oversubscription must be two numbers >= 1"),
    (dict(oversubscription=3), "oversubscription must be two numbers"),
])
def test_bad_topology(kw, match):
    with pytest.raises(HpclabError, match=match):
        Topology(**kw)


def test_unknown_preset():
    with pytest.raises(KeyError, match="unknown topology 'mesh'; known: hpn7"):
        topology("mesh")
    with pytest.raises(HpclabError):
        topology(42)


def test_vectorised_over_hosts():
    t = topology("hpn7")
    hosts = np.arange(1, 5000)
    hops = t.extra_hops(hosts)
    assert hops.shape == hosts.shape and set(np.unique(hops)) == {0, 2, 4}
