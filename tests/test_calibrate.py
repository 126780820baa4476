"""Calibration: nccl-tests and OSU parsers on real-format samples, least-squares fits, and a live
ping-pong between two real Dask workers on 127.0.0.1."""

from pathlib import Path

import numpy as np
import pytest

from hpclab import HpclabError
from hpclab.network import Fabric, algbw, busbw, collective_time
from hpclab.network.calibrate import (fit_alpha_beta, fit_collective, live_fabric, parse_nccl_tests,
                                      parse_osu, pingpong)

DATA = Path(__file__).parent / "data"


# --- nccl-tests


def test_parse_nccl_tests_current_format():
    ds = parse_nccl_tests(DATA / "nccl_all_reduce_perf_2x8.txt")
    assert ds.attrs["op"] == "allreduce" and ds.attrs["ranks"] == 16 and ds.attrs["dtype"] == "float"
    assert ds.sizes["nbytes"] == 31
    assert ds["nbytes"].values[0] == 8 and ds["nbytes"].values[-1] == 2**33
    assert ds["time"].attrs["units"] == "s" and ds["busbw"].attrs["units"] == "B/s"
    # first row as printed: 8 B, 270.01 us out of place, 272.42 us in place
    assert ds["time"].values[0] == pytest.approx(270.01e-6)
    assert ds["time_inplace"].values[0] == pytest.approx(272.42e-6)
    assert ds["count"].values[-1] == 2**33 // 4
    # the printed busbw is nccl-tests' algbw * 2(n-1)/n: recompute it from size and time
    last = ds.isel(nbytes=-1)
    assert float(last["busbw"]) == pytest.approx(busbw("allreduce", 2**33, 16, float(last["time"])),
                                                 rel=0.01)


def test_parse_nccl_tests_older_format_and_text_input():
    text = (DATA / "nccl_all_gather_perf_v2.txt").read_text()
    ds = parse_nccl_tests(text, op="allgather")
    assert ds.attrs["op"] == "allgather" and ds.attrs["ranks"] == 8
    assert ds.sizes["nbytes"] == 11
    assert ds["time"].values[-1] == pytest.approx(5976.6e-6)
    assert float(ds["busbw"].values[-1]) == pytest.approx(157.20e9)
    # busbw/algbw = (n-1)/n for allgather (where the printed 2 decimals allow checking)
    big = ds.where(ds["nbytes"] >= 2**20, drop=True)
    assert np.allclose(big["busbw"] / big["algbw"], 7 / 8, rtol=0.02)
    # without op: taken from the file name (older versions print no command line)
    assert parse_nccl_tests(DATA / "nccl_all_gather_perf_v2.txt").attrs["op"] == "allgather"
    assert parse_nccl_tests(text).attrs["op"] == "unknown"


def test_fit_collective_recovers_alpha_beta_from_nccl_tests():
    ds = parse_nccl_tests(DATA / "nccl_all_reduce_perf_2x8.txt")
    fab = fit_collective(ds, algorithm="ring")
    # the sample was written from a ring with alpha = 9 us and 45 GB/s per rank, +-3 % noise
    assert fab.alpha == pytest.approx(9e-6, rel=0.05)
    assert fab.bandwidth == pytest.approx(45e9, rel=0.05)
    model = collective_time("allreduce", ds["nbytes"].values, 16, fab, algorithm="ring")
    assert np.median(np.abs(model / ds["time"].values - 1)) < 0.05


def test_fit_collective_allgather():
    ds = parse_nccl_tests(DATA / "nccl_all_gather_perf_v2.txt")
    fab = fit_collective(ds, algorithm="ring")
    assert fab.alpha == pytest.approx(6e-6, rel=0.1)
    assert fab.bandwidth == pytest.approx(160e9, rel=0.1)


def test_fit_collective_rejects_nonlinear_algorithm():
    ds = parse_nccl_tests(DATA / "nccl_all_reduce_perf_2x8.txt")
    with pytest.raises(HpclabError, match="algorithm for fitting allreduce must be one of ring"):
        fit_collective(ds, algorithm="double_binary_tree")


# --- OSU


def test_parse_osu_latency_and_fit():
    ds = parse_osu(DATA / "osu_latency.txt")
    assert ds.attrs["op"] == "p2p" and ds.attrs["kind"] == "latency"
    assert ds.attrs["benchmark"] == "OSU Latency Test v7.1"
    assert ds["latency"].attrs["units"] == "s"
    assert ds["nbytes"].values[0] == 0 and ds["latency"].values[0] == pytest.approx(7.97e-6)
    keep = ds["nbytes"] > 0
    fab = fit_alpha_beta(ds["nbytes"][keep], ds["latency"][keep])
    # written from alpha = 8 us, 11.5 GB/s, +-2 % noise
    assert fab.alpha == pytest.approx(8e-6, rel=0.05)
    assert fab.bandwidth == pytest.approx(11.5e9, rel=0.1)


def test_parse_osu_bandwidth():
    ds = parse_osu(str(DATA / "osu_bw.txt"))
    assert ds.attrs["kind"] == "bandwidth"
    assert ds["bandwidth"].attrs["units"] == "B/s"
    assert ds["bandwidth"].values[0] == pytest.approx(1.00e6)  # OSU MB/s = 1e6 B/s
    assert ds["bandwidth"].values[-1] > 10e9


def test_parse_osu_collective_and_fit():
    ds = parse_osu(DATA / "osu_allreduce_16.txt", ranks=16)
    assert ds.attrs["op"] == "allreduce" and ds.attrs["ranks"] == 16
    assert set(ds.data_vars) >= {"latency", "latency_min", "latency_max", "osu_size"}
    assert ds["latency"].values[0] == pytest.approx(32.75e-6)
    assert ds["latency_max"].values[0] == pytest.approx(40.94e-6)
    fab = fit_collective(ds, algorithm="ring", variable="latency")
    assert fab.alpha > 0 and fab.beta > 0


def test_osu_allgather_sizes_convert_to_nccl_convention():
    text = ("# OSU MPI Allgather Latency Test v7.1\n# Datatype: MPI_CHAR.\n"
            "# Size       Avg Latency(us)\n1                      10.00\n1024                   20.00\n")
    ds = parse_osu(text, ranks=4)
    assert ds["nbytes"].values.tolist() == [4.0, 4096.0]
    assert ds["osu_size"].values.tolist() == [1.0, 1024.0]
    with pytest.raises(HpclabError, match="ranks is required"):
        parse_osu(text)


@pytest.mark.parametrize("text,match", [
    ("hello\nworld\n", "not nccl-tests output"),
    ("#       size         count      type   redop     time   algbw   busbw  error\n", "no result rows"),
])
def test_nccl_parser_errors(text, match):
    with pytest.raises(HpclabError, match=match):
        parse_nccl_tests(text)


def test_osu_parser_errors():
    with pytest.raises(HpclabError, match="not OSU micro-benchmark output"):
        parse_osu("# nothing here\n1 2\n")
    with pytest.raises(HpclabError, match="no '# Size"):
        parse_osu("# OSU MPI Latency Test v7.1\n")
    with pytest.raises(HpclabError, match="expected benchmark text or a path"):
        parse_osu(42)


# --- least squares


def test_fit_alpha_beta_exact_line():
    n = np.array([8, 1e3, 1e5, 1e7])
    fab = fit_alpha_beta(n, 3e-6 + n * 2e-10)
    assert fab.alpha == pytest.approx(3e-6) and fab.beta == pytest.approx(2e-10)
    assert isinstance(fab, Fabric)


@pytest.mark.parametrize("n,t,match", [
    ([8, 8], [1e-6, 1e-6], "at least 2 distinct"),
    ([8, 16, 32], [1e-6, 1e-6], "same length"),
    ([8, 16], [1e-6, float("nan")], "seconds must be finite"),
    ([0, 16], [1e-6, 2e-6], "nbytes must be > 0"),
    ([8, 1e6], [5e-6, 1e-6], "cannot fit"),
])
def test_fit_bad_input(n, t, match):
    with pytest.raises(HpclabError, match=match):
        fit_alpha_beta(n, t)


# --- live ping-pong between two real Dask workers


def test_live_pingpong_between_two_dask_workers():
    fab, ds = live_fabric(sizes=(8, 4096, 2**20, 2**23), budget=0.05, max_repeats=50)
    assert ds["time"].attrs["units"] == "s" and ds.sizes["nbytes"] == 4
    assert "->" in ds.attrs["workers"] and "127.0.0.1" in ds.attrs["workers"]
    t = ds["time"].values
    assert np.all(t > 0) and t[-1] > t[0]  # 8 MiB takes longer than 8 B
    assert 1e-6 < fab.alpha < 0.05  # a Python/TCP round trip: microseconds to milliseconds
    assert 1e6 < fab.bandwidth < 1e11  # loopback through Dask: MB/s to tens of GB/s
    assert fab.name == "dask-live"
    assert np.allclose(ds["time_fit"], fab.alpha + ds["nbytes"] * fab.beta)


def test_pingpong_reuses_a_given_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        ds = pingpong(sizes=(8, 65536), client=client, budget=0.02, max_repeats=10)
        assert ds["repeats"].values.min() >= 3
        assert client.status == "running"  # not closed by pingpong


def test_pingpong_bad_sizes():
    with pytest.raises(HpclabError, match="sizes must be > 0"):
        pingpong(sizes=(0, 8))


# --- real published outputs (tests/data/real_*.txt; sources in tests/data/real_sources.yaml)


def test_real_outputs_have_sources():
    import yaml

    sources = yaml.safe_load((DATA / "real_sources.yaml").read_text())
    real = sorted(p.name for p in DATA.glob("real_*.txt"))
    assert real and sorted(sources) == real
    for entry in sources.values():
        assert entry["source"] and entry["setup"] and entry["benchmark"]


def test_real_nccl_tests_output_oci_a100_2x8():
    """all_reduce_perf, 2 hosts x 8 A100-SXM4-40GB, as posted in oracle-quickstart/oci-hpc-oke."""
    ds = parse_nccl_tests(DATA / "real_nccl_all_reduce_perf_oci_a100_2x8.txt")
    assert ds.attrs["op"] == "allreduce"  # from the file name: this log prints no command line
    assert ds.attrs["ranks"] == 16 and ds.attrs["dtype"] == "float"
    assert ds.sizes["nbytes"] == 31 and ds["nbytes"].values[0] == 8 and ds["nbytes"].values[-1] == 2**33
    # rows as printed
    assert ds["time"].values[0] == pytest.approx(36.47e-6)
    assert ds["time"].values[-1] == pytest.approx(67689e-6)
    assert ds["busbw"].values[-1] == pytest.approx(237.94e9)
    assert ds["busbw_inplace"].values[-1] == pytest.approx(237.52e9)
    # nccl-tests' algbw = size / time and busbw = algbw * 2(p-1)/p, as printed (2 decimals, and a
    # time printed to 4-5 significant digits)
    n, t = ds["nbytes"].values, ds["time"].values
    for name, ours in (("algbw", algbw("allreduce", n, t)), ("busbw", busbw("allreduce", n, 16, t))):
        printed = ds[name].values
        assert np.all(np.abs(ours - printed) <= 0.006e9 + 2e-3 * printed), name
    t_in = ds["time_inplace"].values
    assert np.all(np.abs(busbw("allreduce", n, 16, t_in) - ds["busbw_inplace"].values)
                  <= 0.006e9 + 2e-3 * ds["busbw_inplace"].values)

    # a flat ring over 16 ranks: t = 30 alpha + 2 (15/16) n beta
    fab = fit_collective(ds, algorithm="ring")
    # alpha: the 8-byte time is 30 ring steps -> about 36.5 us / 30 = 1.2 us per step, an NVLink /
    # RDMA step plus NCCL's LL-protocol overhead; a physically sensible step is 0.5-5 us
    assert 0.5e-6 < fab.alpha < 5e-6
    assert fab.alpha == pytest.approx(36.47e-6 / 30, rel=0.35)
    # 1/beta: the per-rank ring bandwidth, between the ring plateau busbw nccl-tests printed at
    # 64-512 MiB (153-165 GB/s) and A100's NVLink 3 one-direction 300 GB/s
    assert 150e9 < fab.bandwidth < 300e9
    model = collective_time("allreduce", n, 16, fab, algorithm="ring")
    ratio = model / t
    # one alpha-beta ring cannot follow NCCL's protocol (LL/LL128/Simple) and ring/tree switches:
    # within 40 % of every row, 20 % at the median
    assert np.all(np.abs(ratio - 1) < 0.40) and np.median(np.abs(ratio - 1)) < 0.20


def test_real_osu_latency_100g_infiniband():
    """osu_latency v5.6.3 between 2 nodes on 100 Gbit/s InfiniBand (SJTU HPC docs)."""
    ds = parse_osu(DATA / "real_osu_latency_ib100_sjtu.txt")
    assert ds.attrs["benchmark"] == "OSU Latency Test v5.6.3" and ds.attrs["kind"] == "latency"
    assert ds.sizes["nbytes"] == 24  # 0 B and 1 B .. 4 MiB
    assert ds["latency"].values[0] == pytest.approx(1.27e-6)
    assert ds["latency"].sel(nbytes=4194304).item() == pytest.approx(346.91e-6)
    # the eager -> rendezvous switch as printed: 256 KiB is faster than 128 KiB
    assert ds["latency"].sel(nbytes=262144).item() < ds["latency"].sel(nbytes=131072).item()
    keep = ds["nbytes"] > 0
    fab = fit_alpha_beta(ds["nbytes"][keep], ds["latency"][keep])
    # alpha: InfiniBand small-message latency, 1.24-1.27 us printed for 1-8 B
    assert 1.0e-6 < fab.alpha < 2.0e-6
    # bandwidth below the 12.5 GB/s line rate of 100 Gbit/s (the eager range pulls it down)
    assert 8e9 < fab.bandwidth < 12.5e9
    # the rendezvous range alone (>= 256 KiB) gives the wire: 4 MiB / 346.91 us = 12.09 GB/s
    big = ds["nbytes"] >= 262144
    wire = fit_alpha_beta(ds["nbytes"][big], ds["latency"][big])
    assert wire.bandwidth == pytest.approx(4194304 / 346.91e-6, rel=0.05)
    assert wire.bandwidth < 12.5e9


def test_real_osu_mbw_mr_100g_infiniband():
    """osu_mbw_mr v5.6.3 (bare 'MB/s' and 'Messages/s' columns) on the same 100G InfiniBand pair."""
    ds = parse_osu(DATA / "real_osu_mbw_mr_ib100_sjtu.txt")
    assert ds.attrs["kind"] == "bandwidth" and ds.attrs["op"] == "p2p"
    assert ds["bandwidth"].attrs["units"] == "B/s" and ds["message_rate"].attrs["units"] == "1/s"
    assert ds["bandwidth"].values[-1] == pytest.approx(12340.24e6)
    assert ds["message_rate"].values[0] == pytest.approx(4235302.84)
    # the two columns agree: MB/s = size x messages/s / 1e6 (as printed, to rounding)
    assert np.allclose(ds["bandwidth"].values, ds["nbytes"].values * ds["message_rate"].values,
                       rtol=0.01)
    # plateau: 98.7 % of the 12.5 GB/s line rate, and it matches osu_latency's large messages
    assert 0.95 * 12.5e9 < ds["bandwidth"].values[-1] < 12.5e9
    lat = parse_osu(DATA / "real_osu_latency_ib100_sjtu.txt")
    assert 4194304 / lat["latency"].values[-1] == pytest.approx(ds["bandwidth"].values[-1], rel=0.05)


def test_fit_collective_with_ranks_per_node_recovers_the_inter_node_fabric():
    """Node-aware ring: max(intra, inter) per step is not linear; the refit must recover it."""
    import xarray as xr

    true = Fabric(alpha=5e-6, beta=1 / 20e9)
    n = 2.0 ** np.arange(3, 34)
    kw = dict(ranks_per_node=8, intra_fabric="nvlink3")
    secs = collective_time("allreduce", n, 32, true, algorithm="ring", **kw)
    ds = xr.Dataset({"time": ("nbytes", secs)}, coords={"nbytes": n}, attrs={"op": "allreduce", "ranks": 32})
    fab = fit_collective(ds, algorithm="ring", **kw)
    assert fab.alpha == pytest.approx(5e-6, rel=1e-3)
    assert fab.bandwidth == pytest.approx(20e9, rel=1e-3)


def test_parse_nccl_tests_with_mpirun_tag_output():
    """Open MPI's --tag-output prefixes each line with [job,rank]<stdout>: (the real OCI log, tagged)."""
    real = (DATA / "real_nccl_all_reduce_perf_oci_a100_2x8.txt").read_text()
    tagged = "".join(f"[1,0]<stdout>:{line}\n" for line in real.splitlines())
    ds = parse_nccl_tests(tagged, op="allreduce")
    plain = parse_nccl_tests(real, op="allreduce")
    assert ds.attrs["ranks"] == 16 and ds.sizes["nbytes"] == 31
    assert np.array_equal(ds["time"].values, plain["time"].values)
