"""``hpclab collectives``: table, JSON, and one-line errors with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpclab.cli import main
from hpclab.network import best_algorithm, busbw, collective_time


def test_table_from_the_issue(capsys):
    assert main(["collectives", "--op", "allreduce", "--fabric", "erdma", "--ranks", "2,16,256",
                 "--nbytes", "8,1MiB,1GiB"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "time [us]" in out[1] and "busbw [GB/s]" in out[1]
    body = [line.split() for line in out[2:]]
    assert len(body) == 9
    # row "erdma 256 1 GiB <alg> <time> <algbw> <busbw>"
    row = next(r for r in body if r[1] == "256" and r[2:4] == ["1", "GiB"])
    t = collective_time("allreduce", 2**30, 256, "erdma")
    assert float(row[5]) == pytest.approx(t * 1e6, rel=1e-4)
    assert row[4] == best_algorithm("allreduce", 2**30, 256, "erdma")
    assert float(row[7]) == pytest.approx(busbw("allreduce", 2**30, 256, t) / 1e9, rel=1e-3)


def test_json_records(capsys):
    assert main(["collectives", "--op", "alltoall", "--fabric", "tcp-vpc,erdma", "--ranks", "4,64",
                 "--nbytes", "64KiB", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 4
    rec = next(r for r in records if r["fabric"] == "tcp-vpc" and r["ranks"] == 64)
    assert rec["nbytes"] == 65536 and rec["op"] == "alltoall"
    assert rec["time_us"] == pytest.approx(collective_time("alltoall", 65536, 64, "tcp-vpc") * 1e6)
    assert set(rec) == {"fabric", "op", "ranks", "nbytes", "algorithm", "time_us", "algbw_GBps",
                        "busbw_GBps"}


def test_nodes_and_topology_options(capsys):
    assert main(["collectives", "--fabric", "rdma-hpn7", "--ranks", "1024", "--nbytes", "256MiB",
                 "--ranks-per-node", "8", "--intra-fabric", "nvlink", "--topology", "hpn7",
                 "--algorithm", "hierarchical", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    want = collective_time("allreduce", 2**28, 1024, "rdma-hpn7", algorithm="hierarchical",
                           ranks_per_node=8, intra_fabric="nvlink", topology="hpn7")
    assert rec["time_us"] == pytest.approx(want * 1e6) and rec["algorithm"] == "hierarchical"


def test_barrier_has_no_bandwidth(capsys):
    assert main(["collectives", "--op", "barrier", "--ranks", "16", "--nbytes", "8", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert rec["busbw_GBps"] is None and rec["time_us"] > 0


BAD = [
    (["--op", "gather"], "op must be one of allreduce"),
    (["--fabric", "infiniband-9000"], "unknown fabric 'infiniband-9000'; known:"),
    (["--algorithm", "butterfly"], "algorithm for allreduce must be one of auto"),
    (["--ranks", "-4"], "ranks must be a whole number in [1, 10,000,000]"),
    (["--ranks", "two"], "ranks must be a whole number in [1, 10,000,000]"),
    (["--ranks", "2.5"], "ranks must be a whole number in [1, 10,000,000]"),
    (["--nbytes", "0"], "nbytes must be > 0"),
    (["--nbytes", "-8"], "nbytes must be a byte size in [0, 1 PiB]"),
    (["--nbytes", "nan"], "nbytes must be a byte size in [0, 1 PiB] (1 PiB = 1,125,899,906,842,624 B), got 'nan'"),
    (["--nbytes", "8,NaN"], "nbytes must be a byte size in [0, 1 PiB] (1 PiB = 1,125,899,906,842,624 B), got 'NaN'"),
    (["--nbytes", "1e300"], "nbytes must be a byte size in [0, 1 PiB]"),
    (["--nbytes", "2PiB"], "nbytes must be a byte size in [0, 1 PiB]"),
    (["--ranks", "1e300"], "ranks must be a whole number in [1, 10,000,000], got 1e+300"),
    (["--ranks", "100000001"], "ranks must be a whole number in [1, 10,000,000], got 100,000,001"),
    (["--ranks", "nan"], "ranks must be a whole number in [1, 10,000,000]"),
    (["--nbytes", "inf"], "nbytes must be a byte size in [0, 1 PiB]"),
    (["--nbytes", "1XB"], "nbytes '1XB' is not a byte size"),
    (["--op", "allreduce", "--algorithm", "pairwise"], "algorithm for allreduce must be one of"),
    (["--topology", "torus"], "unknown topology 'torus'"),
    (["--intra-fabric", "warp"], "unknown fabric 'warp'"),
    (["--ranks-per-node", "0"], "ranks-per-node must be a whole number in [1, 10,000,000]"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(["collectives", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hpclab: error: ") and message in err[0]
    assert "Traceback" not in captured.err and captured.out == ""


def _hpclab():
    script = Path(sys.executable).parent / "hpclab"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from hpclab.cli import main; sys.exit(main())"]


def test_console_script_end_to_end():
    ok = subprocess.run([*_hpclab(), "collectives", "--op", "allreduce", "--fabric", "erdma",
                         "--ranks", "2,16,256", "--nbytes", "8,1MiB,1GiB"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and len(ok.stdout.strip().splitlines()) == 11
    bad = subprocess.run([*_hpclab(), "collectives", "--ranks", "-1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
