"""hpclab's MPI collective formulas against SimGrid.

``data/reference/simgrid_collectives.csv`` holds collectives that SimGrid's SMPI simulated on a
plain latency-bandwidth crossbar, each with the algorithm hpclab costs (produced by
``scripts/simgrid_table.sh`` from ``benchmarks/simgrid/coll_bench.c``; the header says which
SimGrid, which platform and which command). These tests read that table only: SimGrid need not be
installed. SimGrid runs MPICH's and Open MPI's own code for each algorithm (the non-power-of-two
recursive-doubling allgather as MPICH patches it, eager sends below 65536 B), so each point checks
a formula against an independent execution of the algorithm it describes.
"""

import csv
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpclab import HpclabError
from hpclab._paths import data_dir
from hpclab.network import Fabric, collective_time

TABLE = data_dir() / "reference" / "simgrid_collectives.csv"

#: Relative error allowed wherever hpclab and SimGrid run the same algorithm.
TOL = 0.01
#: Where hpclab's form leaves something out, the error allowed and why (asserted as a bound, and
#: the rows are still reported by test_agreement_table).
KNOWN = {
    # van de Geijn broadcast: below one byte per rank SimGrid's scatter skips the ranks whose
    # piece is empty (a shallower tree); and where the largest pieces are rendezvous and the
    # smaller ones eager (256 KiB at 12-64 ranks) hpclab costs the scatter as all rendezvous.
    ("broadcast", "scatter_allgather"): 0.06,
}
#: Rank counts outside TOL for one algorithm, each with its bound and reason.
KNOWN_RANKS = {
    # 28 = 16 + 12 and 12 = 8 + 4 is itself patched: the 12 ranks' eager patch is still in
    # flight when they start the last doubling step, and slows its sends (not modelled); the
    # recursive-doubling reduce-scatter has the same patch code
    ("allgather", "recursive_doubling", 28): 0.07,
    ("reduce_scatter", "recursive_doubling", 28): 0.07,
}


def _read():
    header, rows = {}, []
    with open(TABLE) as fh:
        lines = fh.read().splitlines()
    for line in lines:
        m = re.match(r"# (\w+): (.*)$", line)
        if m:
            header[m.group(1)] = m.group(2).strip()
    body = [ln for ln in lines if not ln.startswith("#")]
    for r in csv.DictReader(body):
        rows.append({"op": r["op"], "simgrid_algorithm": r["simgrid_algorithm"],
                     "algorithm": r["algorithm"], "ranks": int(r["ranks"]),
                     "nbytes": int(r["nbytes"]), "seconds": float(r["seconds"])})
    return header, rows


HEADER, ROWS = _read()
CROSSBAR = Fabric(alpha=float(HEADER["alpha_s"]), beta=float(HEADER["beta_s_per_B"]),
                  gamma=float(HEADER["gamma_s_per_B"]), name="simgrid-crossbar")
EAGER = float(HEADER["eager_threshold_B"])
PAIRS = sorted({(r["op"], r["algorithm"]) for r in ROWS})


def runs_the_algorithm(row) -> bool:
    """False where SimGrid runs something else than the algorithm named: its ring allreduce
    (``allreduce__lr``) reduces and broadcasts below one element per rank (4-byte floats)."""
    if (row["op"], row["simgrid_algorithm"]) == ("allreduce", "lr"):
        return row["nbytes"] // 4 >= row["ranks"] and (row["nbytes"] // 4) % row["ranks"] == 0
    return True


def _errors(op, alg, **options):
    rows = [r for r in ROWS if (r["op"], r["algorithm"]) == (op, alg) and runs_the_algorithm(r)]
    n = np.array([r["nbytes"] for r in rows], dtype=float)
    p = np.array([r["ranks"] for r in rows], dtype=float)
    sim = np.array([r["seconds"] for r in rows])
    model = collective_time(op, n, p, CROSSBAR, algorithm=alg, **options)
    return rows, model / sim - 1.0


def test_table_is_what_the_script_says():
    assert HEADER["simgrid_version"].startswith("SimGrid version 3.")
    for cfg in ("network/model:CM02", "smpi/bw-factor:1", "smpi/lat-factor:1", "network/crosstraffic:0"):
        assert cfg in HEADER["config"]
    assert "smpirun" in HEADER["command"]
    ranks = {r["ranks"] for r in ROWS}
    assert {4, 24, 64} <= ranks and min(ranks) == 4 and max(ranks) == 64
    sizes = [r["nbytes"] for r in ROWS if r["op"] == "broadcast"]
    assert min(sizes) == 8 and max(sizes) == 64 * 2**20
    assert {"allgather", "broadcast", "allreduce", "reduce_scatter"} <= {op for op, _ in PAIRS}
    assert EAGER == 65536  # SimGrid's default, and hpclab's (data/reference/collectives.yaml)
    assert collective_time("broadcast", EAGER - 1, 8, CROSSBAR, algorithm="binomial", eager=True) == \
        collective_time("broadcast", EAGER - 1, 8, CROSSBAR, algorithm="binomial", eager=True,
                        eager_threshold=EAGER)


@pytest.mark.parametrize("op,alg", PAIRS, ids=[f"{o}-{a}" for o, a in PAIRS])
def test_mpi_formulas_agree_with_simgrid(op, alg):
    rows, err = _errors(op, alg, eager=True, eager_threshold=EAGER)
    bound = KNOWN.get((op, alg), TOL)
    for r, e in zip(rows, err):
        key = (op, alg, r["ranks"], r["nbytes"])
        limit = KNOWN_RANKS.get(key[:3], bound)
        assert abs(e) <= limit, f"{key}: hpclab {100 * e:+.2f}% off SimGrid (allowed {100 * limit}%)"


def test_known_differences_are_still_there():
    """Each allowance above is needed (else it should be removed and the bound tightened)."""
    for (op, alg), bound in KNOWN.items():
        _, err = _errors(op, alg, eager=True)
        assert np.max(np.abs(err)) > TOL
    for (op, alg, p), bound in KNOWN_RANKS.items():
        rows, err = _errors(op, alg, eager=True)
        assert max(abs(e) for r, e in zip(rows, err) if r["ranks"] == p) > TOL


def test_npot_allgather_needs_mpichs_patching():
    """24 ranks: folding the 8 extra ranks first (hpclab's form before) was 3-22% slow from
    32 KiB up; MPICH's patching inside the loop lands within TOL."""
    rows, err = _errors("allgather", "recursive_doubling", eager=True)
    at24 = [(r["nbytes"], e) for r, e in zip(rows, err) if r["ranks"] == 24]
    assert max(abs(e) for _, e in at24) <= TOL
    # the folded form, written out: lg p' a + (p'-1)/p' n b + 2 a + n/p b + n b
    a, b = CROSSBAR.alpha, CROSSBAR.beta
    big = [r for r in rows if r["ranks"] == 24 and r["nbytes"] >= 262144]
    folded = [(4 * a + 15 / 16 * r["nbytes"] * b + 2 * a + r["nbytes"] / 24 * b + r["nbytes"] * b)
              / r["seconds"] - 1 for r in big]
    assert min(folded) > 0.15


def test_eager_broadcast_shares_the_parents_link():
    """64 ranks, 32 KiB: a binomial broadcast whose parent's eager sends share its link is
    several times slower than the rendezvous form, and SimGrid agrees with the eager one."""
    rows, err_eager = _errors("broadcast", "binomial", eager=True)
    _, err_plain = _errors("broadcast", "binomial")
    at = {(r["ranks"], r["nbytes"]): (e1, e0) for r, e1, e0 in zip(rows, err_eager, err_plain)}
    e1, e0 = at[(64, 32768)]
    assert abs(e1) <= TOL and e0 < -0.5  # the rendezvous form is less than half SimGrid's time
    # at and above the threshold the sends are rendezvous again: both forms agree
    assert abs(at[(64, 65536)][0]) <= TOL and abs(at[(64, 65536)][1]) <= TOL


def test_agreement_table(capsys):
    """Prints the measured agreement (max and mean |error| per collective and rank count)."""
    lines = []
    for op, alg in PAIRS:
        rows, err = _errors(op, alg, eager=True)
        for p in sorted({r["ranks"] for r in rows}):
            e = np.abs(np.array([x for r, x in zip(rows, err) if r["ranks"] == p]))
            lines.append(f"{op:15s} {alg:19s} {p:3d}  max {100 * e.max():6.2f}%  mean {100 * e.mean():6.2f}%")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert len(lines) >= 40


# --- the two new forms on their own ---------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(p=st.integers(1, 5000), n=st.floats(1.0, 1e10))
def test_patched_allgather_bounds(p, n):
    """Every rank receives (p-1)/p n bytes and needs at least ceil(lg p) rounds; a power of two
    is TRG05's lg p alpha + (p-1)/p n beta."""
    f = CROSSBAR
    t = collective_time("allgather", n, p, f, algorithm="recursive_doubling")
    if p == 1:
        assert t == 0.0
        return
    assert t >= (p - 1) / p * n * f.beta * (1 - 1e-12)
    assert t >= np.ceil(np.log2(p)) * f.alpha * (1 - 1e-12)
    if p & (p - 1) == 0:
        assert t == pytest.approx(np.log2(p) * f.alpha + (p - 1) / p * n * f.beta, rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(p=st.integers(2, 3000), n=st.floats(1.0, 65535.0))
def test_eager_binomial_broadcast_by_brute_force(p, n):
    """The closed form against the slowest root-to-leaf path of the binomial tree, walked node
    by node (a node with k children adds alpha + k n beta)."""
    a, b = CROSSBAR.alpha, CROSSBAR.beta

    def children(x):
        low = x & -x if x else 1 << p.bit_length()
        return [x + m for m in (1 << i for i in range(low.bit_length() - 1)) if x + m < p]

    def slowest(x):
        kids = children(x)
        return 0.0 if not kids else a + len(kids) * n * b + max(slowest(c) for c in kids)

    t = collective_time("broadcast", n, p, CROSSBAR, algorithm="binomial", eager=True)
    assert t == pytest.approx(slowest(0), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(p=st.integers(2, 3000), n=st.floats(1e3, 1e5))
def test_eager_binomial_scatter_by_brute_force(p, n):
    """The eager scatter of the van de Geijn broadcast against the tree walked node by node: a
    node's pieces leave together and share its link fairly (a piece of x bytes arrives
    alpha + sum over the node's pieces y of min(x, y) beta after the node got its own)."""
    from hpclab.network.collectives import _binomial_scatter_eager

    a, b, s = CROSSBAR.alpha, CROSSBAR.beta, n / p

    def latest(x, start):
        low = x & -x if x else 1 << p.bit_length()
        kids = [x + m for m in (1 << i for i in range(low.bit_length() - 1)) if x + m < p]
        pieces = {c: min(c & -c, p - c) * s for c in kids}
        out = start
        for c, size in pieces.items():
            arrive = start + a + b * sum(min(size, y) for y in pieces.values())
            out = max(out, latest(c, arrive))
        return out

    t = float(_binomial_scatter_eager(np.float64(n), np.float64(p), a, b, 0.0))
    assert t == pytest.approx(latest(0, 0.0), rel=1e-9)


def test_new_forms_broadcast_over_mixed_arrays():
    p = np.array([3, 24, 64, 1000, 4096, 28])
    n = np.array([8.0, 32760, 65520, 1e6, 100.0, 262136])
    for op, alg in (("allgather", "recursive_doubling"), ("broadcast", "binomial"),
                    ("broadcast", "scatter_allgather"), ("reduce_scatter", "recursive_doubling"),
                    ("reduce_scatter", "recursive_halving")):
        vec = collective_time(op, n, p, CROSSBAR, algorithm=alg, eager=True)
        one = [collective_time(op, float(x), int(q), CROSSBAR, algorithm=alg, eager=True) for x, q in zip(n, p)]
        assert np.allclose(vec, one, rtol=1e-12)


@pytest.mark.parametrize("options,needle", [
    ({"eager": "yes"}, "eager must be True or False"),
    ({"eager_threshold": 1000}, "eager_threshold needs eager=True"),
    ({"eager": True, "eager_threshold": -1}, "eager_threshold"),
    ({"eager": True, "eager_threshold": float("nan")}, "eager_threshold"),
    ({"eager": True, "eager_threshold": [1, 2]}, "eager_threshold must be one number"),
])
def test_eager_options_are_checked(options, needle):
    with pytest.raises(HpclabError, match=needle) as e:
        collective_time("broadcast", 1000, 8, CROSSBAR, algorithm="binomial", **options)
    assert "\n" not in str(e.value)
