"""Front-end against back-end networks: storage traffic sharing the collectives' NICs (max-min
fair per NIC, in time with the checkpoint bursts) or leaving by a separate front-end NIC."""

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hpclab import HpclabError
from hpclab.catalog import default
from hpclab.workloads import llm

CK = "checkpoint"


@pytest.fixture(scope="module")
def h800():
    return llm.cluster("lingjun.8xh800", "rdma-hpn7")


@pytest.fixture(scope="module")
def best1k(h800):
    return llm.search("gpt3-175b", h800, 1024, 2048, top=1).isel(layout=0)


@pytest.fixture(scope="module")
def setups():
    return llm.network_setups("gpt3-175b", gpus=(1024, 16384))


def _at(ds, setup, mode, var):
    return float(ds[var].sel(setup=setup, checkpoint=mode))


def _step_at_share(cluster, layout, share):
    """The layout's step with the back-end bandwidth scaled by ``share``, straight from step_time."""
    cl = replace(cluster, fabric=cluster.fabric.with_(beta=cluster.fabric.beta / share))
    kw = {k: int(layout[k]) for k in ("tp", "pp", "dp", "cp", "ep", "micro_batch", "interleave", "zero")}
    return float(llm.step_time("gpt3-175b", cl, global_batch=int(layout.global_batch),
                               recompute=str(layout.recompute.values), check=False,
                               efficiency=layout.attrs["efficiency"],
                               memory_efficiency=layout.attrs["memory_efficiency"], **kw).step_time[0])


def test_fair_share_by_hand():
    # one 47 GB/s link (400 Gbit/s x 0.94), one collective and one storage flow: a 7.8 GB/s
    # storage demand is below the 23.5 GB/s fair share and gets all of it
    s, c = llm.fair_share(47e9, 7.8125e9)
    assert (s, c) == (7.8125e9, 47e9 - 7.8125e9)
    # a 40 GB/s demand is cut to the fair share; the collectives keep the other half
    assert llm.fair_share(47e9, 40e9) == (23.5e9, 23.5e9)
    # 7 collective flows against 1 storage flow: storage gets 1/8 of the link
    assert llm.fair_share(47e9, 40e9, collective_flows=7, storage_flows=1) == (5.875e9, 41.125e9)
    # no storage flow, or no demand: the collectives keep the link
    assert llm.fair_share(47e9, 40e9, storage_flows=0) == (0.0, 47e9)
    assert llm.fair_share(47e9, 0.0) == (0.0, 47e9)
    s, c = llm.fair_share([47e9, 47e9], [1e9, 1e12])  # broadcasts
    np.testing.assert_allclose(s, [1e9, 23.5e9])
    with pytest.raises(HpclabError, match="storage_demand must be >= 0"):
        llm.fair_share(47e9, -1.0)
    with pytest.raises(HpclabError, match="collective_flows \\+ storage_flows must be > 0"):
        llm.fair_share(47e9, 1.0, collective_flows=0, storage_flows=0)


def test_shared_async_checkpoint_by_hand(h800, best1k):
    # 128 hosts on CPFS (1 TB/s aggregate, 20 GB/s per client): 7.8125 GB/s per host, written
    # through one back-end NIC of 47 GB/s: below the fair share, so the storage flow keeps its
    # rate and the collectives keep 1 - 7.8125/47 of every rail (NCCL waits for the loaded one)
    nets = llm.network_separation("gpt3-175b", h800, 1024, layout=best1k)
    cpfs = default().storage("cpfs")
    c = cpfs.throughput / 128
    assert nets.attrs["storage_per_host"] == pytest.approx(c)
    phi = 1 - c / 47e9
    assert _at(nets, "shared", "async", "collective_share") == pytest.approx(phi)
    S0 = _step_at_share(h800, best1k, 1.0)
    # outside checkpoints only the data loader's token ids share the NIC: 2,048 x 2,048 x 4 B
    # per step over 128 hosts, a background flow of data / S0
    data = 2048 * 2048 * 4 / 128
    assert nets.attrs["data_bytes_per_host"] == data
    S = _step_at_share(h800, best1k, 1 - data / S0 / 47e9)
    S_ck = _step_at_share(h800, best1k, phi)
    assert S_ck > S >= S0
    assert _at(nets, "shared", "async", "step_time") == pytest.approx(S, rel=1e-12)
    assert _at(nets, "separate", "async", "step_time") == pytest.approx(S0, rel=1e-12)
    assert _at(nets, "shared", "async", "step_time_checkpointing") == pytest.approx(S_ck)
    ck = llm.checkpoint_bytes("gpt3-175b")
    d = cpfs.latency + ck / (128 * c)  # the storage flow is not slowed: 2.445 s
    assert _at(nets, "shared", "async", "checkpoint_time") == pytest.approx(d)
    cost = d * (1 - S / S_ck)  # training lost to the slower steps of the write window
    assert _at(nets, "shared", "async", "checkpoint_cost") == pytest.approx(cost)
    M, R = llm.mtbf(h800, 128), h800.restart_time
    tau = max(llm.young_daly(cost, M), d, S)
    assert _at(nets, "shared", "async", "optimal_interval") == pytest.approx(tau)
    # a failure while the write is in flight loses one more interval: restart + d
    assert _at(nets, "shared", "async", "goodput") == pytest.approx(llm.goodput(tau, cost, M, R + d))
    # separate: the front-end NIC (400 Gbit/s = 50 GB/s) carries it; training never slows
    assert nets.attrs["frontend_nic"] == 50e9
    assert _at(nets, "separate", "async", "checkpoint_cost") == 0.0
    assert _at(nets, "separate", "async", "step_time_checkpointing") == pytest.approx(S0)
    # blocking: the collectives are idle during the write; both write at the storage's pace
    for setup in ("shared", "separate"):
        assert _at(nets, setup, "blocking", "checkpoint_time") == pytest.approx(d)
        tau_b, g_b = llm.goodput_at_optimum(d, M, R)
        assert _at(nets, setup, "blocking", "goodput") == pytest.approx(g_b)
        assert np.isnan(_at(nets, setup, "blocking", "step_time_checkpointing"))


def test_storage_flows_slow_down_when_the_link_is_contended(h800, best1k):
    # a storage system of 40 GB/s per client (and 100 TB/s aggregate) against 7 collective flows
    # per NIC: storage gets 47/8 = 5.875 GB/s while the collectives are on the wire, 40 GB/s
    # (min(c, one NIC)) while they are not; the rate in between is their time-share
    fast = replace(default().storage("cpfs"), throughput=100e12, client_throughput=40e9)
    nets = llm.network_separation("gpt3-175b", h800, 1024, layout=best1k, storage=fast,
                                  collective_flows=7, storage_flows=1)
    g = 47e9 / 8
    phi = 1 - g / 47e9
    assert _at(nets, "shared", "async", "collective_share") == pytest.approx(phi)
    S0 = nets.attrs["backend_busy"]  # share of the full-bandwidth step the NICs are busy
    busy = S0 * _step_at_share(h800, best1k, 1.0) / phi
    S_ck = _step_at_share(h800, best1k, phi)
    u = busy / S_ck
    rate = u * g + (1 - u) * 40e9
    assert g < rate < 40e9
    assert _at(nets, "shared", "async", "storage_rate") == pytest.approx(rate)
    assert _at(nets, "separate", "async", "storage_rate") == pytest.approx(40e9)  # min(c, F = 50)


def test_without_storage_traffic_the_set_ups_are_equal(h800, best1k):
    nets = llm.network_separation("gpt3-175b", h800, 1024, layout=best1k, checkpoint_bytes=0,
                                  token_bytes=0)
    for var in nets.data_vars:
        np.testing.assert_array_equal(nets[var].sel(setup="shared").values,
                                      nets[var].sel(setup="separate").values, err_msg=var)
    assert float(nets.collective_share.min()) == 1.0
    assert float(nets.data_load_stall.max()) == 0.0
    # data loading alone: no checkpoint window, so an async checkpoint costs nothing either way
    data_only = llm.network_separation("gpt3-175b", h800, 1024, layout=best1k, checkpoint_bytes=0,
                                       token_bytes=4e4)
    assert float(data_only.checkpoint_cost.sel(checkpoint="async").max()) == 0.0
    assert float(data_only.step_time.sel(setup="shared")[0]) > float(data_only.step_time.sel(setup="separate")[0])


@settings(max_examples=20, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(client=st.floats(0.1e9, 400e9), aggregate=st.floats(1e11, 1e14), front_over=st.floats(1.0, 50.0),
       nics=st.integers(1, 8), nc=st.integers(1, 16), ns=st.integers(1, 16),
       token_bytes=st.sampled_from([0.0, 4.0, 4e5]))
def test_shared_is_never_faster_than_separate(h800, best1k, client, aggregate, front_over, nics, nc, ns,
                                              token_bytes):
    # whenever the front-end NIC carries at least what the storage gives a host (the set-ups
    # differ in where storage traffic goes, not in a front-end NIC that binds: see the next test)
    store = replace(default().storage("cpfs"), throughput=aggregate, client_throughput=client)
    front = front_over * min(client, aggregate / 128)
    cl = replace(h800, node=replace(h800.node, network_bandwidth=front))
    nets = llm.network_separation("gpt3-175b", cl, 1024, layout=best1k, storage=store,
                                  storage_nics=nics, collective_flows=nc, storage_flows=ns,
                                  token_bytes=token_bytes)
    sh, se = nets.sel(setup="shared"), nets.sel(setup="separate")
    eps = 1e-12
    assert np.all(sh.step_time.values >= se.step_time.values * (1 - eps))  # stall included
    a_sh, a_se = (float(x.step_time_checkpointing.sel(checkpoint="async")) for x in (sh, se))
    assert a_sh >= a_se * (1 - eps)
    # an async checkpoint costs nothing on its own network, something on the shared NICs
    assert float(se.checkpoint_cost.sel(checkpoint="async")) == 0.0
    assert np.all(sh.checkpoint_cost.values >= se.checkpoint_cost.values * (1 - eps))
    assert np.all(sh.checkpoint_time.values >= se.checkpoint_time.values * (1 - eps))
    assert np.all(sh.goodput.values <= se.goodput.values * (1 + eps))
    assert np.all(sh.tokens_per_s.values <= se.tokens_per_s.values * (1 + eps))


def test_a_front_end_nic_slower_than_the_storage_makes_blocking_checkpoints_slower(h800, best1k):
    # the trade-off the other way: 100 GB/s of storage per host, a 50 GB/s front-end NIC and
    # four back-end NICs for storage (188 GB/s): blocking checkpoints write faster on the
    # back-end (nothing else is on it then) and the shared set-up's goodput is higher
    fast = replace(default().storage("cpfs"), throughput=100e12, client_throughput=100e9)
    nets = llm.network_separation("gpt3-175b", h800, 1024, layout=best1k, storage=fast, storage_nics=4)
    ck = llm.checkpoint_bytes("gpt3-175b")
    assert _at(nets, "separate", "blocking", "checkpoint_time") == pytest.approx(fast.latency + ck / (128 * 50e9))
    assert _at(nets, "shared", "blocking", "checkpoint_time") == pytest.approx(fast.latency + ck / (128 * 100e9))
    assert _at(nets, "shared", "blocking", "goodput") > _at(nets, "separate", "blocking", "goodput")


def test_1k_and_16k_gpus(setups):
    ds = setups
    assert dict(ds.sizes) == {"gpus": 2, "setup": 2, CK: 2}
    assert list(ds.gpus.values) == [1024, 16384] and list(ds.setup.values) == ["shared", "separate"]
    for var, unit in (("step_time", "s"), ("checkpoint_time", "s"), ("goodput", "1"),
                      ("data_load_stall", "s"), ("storage_rate", "B/s"), ("tokens_per_s", "1/s")):
        assert ds[var].attrs["units"] == unit
    assert list(ds.nodes.values) == [128, 2048] and list(ds.global_batch.values) == [2048, 8192]
    # CPFS's 1 TB/s over the hosts binds: 7.81 and 0.49 GB/s per host, one NIC's share left
    np.testing.assert_allclose(ds.storage_per_host, [1e12 / 128, 1e12 / 2048])
    share = ds.collective_share.sel(setup="shared", checkpoint="async")
    np.testing.assert_allclose(share, 1 - ds.storage_per_host / 47e9)
    np.testing.assert_allclose(share, [0.8338, 0.9896], atol=1e-4)
    # the same 2.44 TB at 1 TB/s either way: 2.445 s
    np.testing.assert_allclose(ds.checkpoint_time, 2.4449596, rtol=1e-6)
    # blocking checkpoints: the plan's CPFS goodput either way (99.14% at 1k, 92.78% at 16k)
    cl = llm.cluster()
    for g in (1024, 16384):
        want = float(llm.goodput_curve("gpt3-175b", cl, g, storages=("cpfs",)).optimal_goodput[0])
        for setup in ("shared", "separate"):
            assert float(ds.goodput.sel(gpus=g, setup=setup, checkpoint="blocking")) == pytest.approx(want)
    np.testing.assert_allclose(ds.goodput.sel(checkpoint="blocking", setup="shared"), [0.99143, 0.92783], atol=5e-5)
    # async: the shared NICs slow the steps of each write window (1% at 1k, 0.1% at 16k) and
    # cost goodput; the separate network costs none
    a = ds.sel(checkpoint="async")
    slow = a.step_time_checkpointing / a.step_time
    assert np.all(slow.sel(setup="separate") == 1.0)
    assert 1.005 < float(slow.sel(setup="shared", gpus=1024)) < 1.04
    assert 1.0005 < float(slow.sel(setup="shared", gpus=16384)) < 1.005
    assert np.all(a.goodput.sel(setup="shared") < a.goodput.sel(setup="separate"))
    assert np.all(a.goodput > ds.goodput.sel(checkpoint="blocking"))
    # token ids are tiny: no data-loading stall anywhere
    assert float(ds.data_load_stall.max()) == 0.0


def test_bad_inputs_name_their_field(h800, best1k):
    with pytest.raises(HpclabError, match="checkpoint must be one of blocking, async"):
        llm.network_separation("gpt3-175b", h800, 1024, layout=best1k, checkpoint="sometimes")
    with pytest.raises(HpclabError, match="slowdown must be >= 1"):
        llm.network_separation("gpt3-175b", h800, 1024, layout=best1k, slowdown=0.5)
    with pytest.raises(HpclabError, match="storage_nics must be"):
        llm.network_separation("gpt3-175b", h800, 1024, layout=best1k, storage_nics=0)
    with pytest.raises(HpclabError, match="token_bytes must be >= 0"):
        llm.network_separation("gpt3-175b", h800, 1024, layout=best1k, token_bytes=-1)


def test_cli_plan_compares_the_set_ups(capsys):
    from hpclab.cli import main

    assert main(["llm", "plan", "--gpus", "1024", "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "separate front-end NIC (400 Gbit/s)" in out
    assert "separate vs shared, async: step +" in out and "not modelled: tail latency" in out
    assert main(["llm", "plan", "--gpus", "1024", "--top", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["networks"]
    assert {(r["setup"], r["checkpoint"]) for r in rows} == {(s, m) for s in ("shared", "separate")
                                                             for m in ("blocking", "async")}
    by = {(r["setup"], r["checkpoint"]): r for r in rows}
    assert by["shared", "async"]["step_while_checkpointing_s"] > by["separate", "async"]["step_while_checkpointing_s"]
    assert by["shared", "blocking"]["step_while_checkpointing_s"] is None
