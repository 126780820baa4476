"""CAE workload: the real stencil solver against analytical solutions, halo counts against hand
computations, and the scaling model against its limits."""

import math

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from hpclab import HpclabError
from hpclab.workloads import cae


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


def _amplification(u0, kappa, dt):
    """Hand formula: FTCS multiplies the sine mode by g = 1 - sum_i 4 r_i sin^2(pi h_i / (2 L_i))
    per step (von Neumann symbol of the discrete Laplacian on the lowest mode)."""
    g = 1.0
    for d in u0.dims:
        x = u0[d].values
        h, L = x[1] - x[0], x[-1] - x[0]
        g -= 4 * kappa * dt / h ** 2 * math.sin(math.pi * h / (2 * L)) ** 2
    return g


# --------------------------------------------------------------------------- heat equation
@pytest.mark.parametrize("ndim, subdomains, k", [(2, (2, 2), 1), (2, (3, 1), 4), (3, (2, 2, 1), 3)])
def test_heat_matches_discrete_decay_and_analytical_solution(ndim, subdomains, k):
    n, kappa, steps = (65, 0.5, 120) if ndim == 2 else (25, 0.5, 40)
    u0 = cae.sine_mode(n, ndim, 1.0, subdomains)
    dt = 0.9 * cae.stable_dt(u0, kappa)
    u = cae.heat(u0, kappa, dt, steps, steps_per_exchange=k).compute()
    # the scheme itself, exactly: amplitude g**steps
    np.testing.assert_allclose(u.values, u0.values * _amplification(u0, kappa, dt) ** steps, rtol=1e-11, atol=1e-14)
    # against the PDE: exp(-kappa pi^2 sum 1/L^2 t)
    exact = cae.heat_analytic(u0, u.attrs["time"], kappa).compute()
    rel = float(abs(u - exact).max() / abs(exact).max())
    # leading-order error of the decay rate: lam t * lam h^2/12-ish + lam dt/2 -> stated bound 2e-3
    assert rel < 2e-3
    assert u.attrs["time"] == pytest.approx(steps * dt)


def test_stability_limit_and_decay_rate_on_an_anisotropic_box_by_hand():
    # 3-D box 1 x 2 x 0.5 with 9 x 17 x 5 nodes: h = 1/8, 1/8, 1/8 -> dt_max = h^2 / (2 * 3 * kappa)
    u0 = cae.sine_mode((9, 17, 5), 3, (1.0, 2.0, 0.5), (2, 2, 1))
    assert cae.stable_dt(u0, 0.5) == pytest.approx((1 / 8) ** 2 / (2 * 3 * 0.5), rel=1e-12)
    # 2-D, hx = 1/8, hy = 1/4: 1 / (2 kappa (64 + 16))
    assert cae.stable_dt(cae.sine_mode((9, 9), 2, (1.0, 2.0)), 1.0) == pytest.approx(1 / 160, rel=1e-12)
    # sin(pi x) sin(pi y / 2) sin(2 pi z) decays at kappa pi^2 (1 + 1/4 + 4)
    assert cae.heat_decay_rate(u0, 0.5) == pytest.approx(0.5 * math.pi ** 2 * (1 + 0.25 + 4), rel=1e-12)
    dt = cae.stable_dt(u0, 0.5)
    u = cae.heat(u0, 0.5, dt, 30, steps_per_exchange=2).compute()
    np.testing.assert_allclose(u.values, u0.values * _amplification(u0, 0.5, dt) ** 30, rtol=1e-11, atol=1e-14)


def test_heat_decomposed_equals_single_block_bit_for_bit():
    u0 = cae.sine_mode(40, 2, (1.0, 2.0), (3, 2))
    u0 = u0 + 0.1 * xr.DataArray(da.random.default_rng(1).random(u0.shape, chunks=u0.data.chunks), dims=u0.dims)
    u0 = u0 * xr.DataArray(np.pad(np.ones((38, 38)), 1), dims=u0.dims)  # zero Dirichlet boundary
    dt = cae.stable_dt(u0, 1.0)
    ref = cae.heat(u0.compute(), 1.0, dt, 23, 1).values
    for k in (1, 2, 5, 12):
        out = cae.heat(u0, 1.0, dt, 23, steps_per_exchange=k).values
        np.testing.assert_array_equal(out, ref)


def test_heat_is_second_order_under_refinement():
    kappa, T = 1.0, 0.02
    errs, hs = [], []
    for n in (17, 33, 65):
        u0 = cae.sine_mode(n, 2, 1.0, (2, 2))
        h = 1.0 / (n - 1)
        steps = int(math.ceil(T / (0.2 * h * h)))
        dt = T / steps  # dt ~ h^2 so the O(dt) error is O(h^2) too
        u = cae.heat(u0, kappa, dt, steps, steps_per_exchange=4).compute()
        exact = cae.heat_analytic(u0, T, kappa).compute()
        errs.append(float(abs(u - exact).max()))
        hs.append(h)
    orders = np.diff(np.log(errs)) / np.diff(np.log(hs))
    assert np.all((orders > 1.9) & (orders < 2.1)), orders


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as c:
        yield c


def test_run_heat_on_a_real_two_worker_cluster(client):
    ds = cae.run_heat(96, 2, steps=30, steps_per_exchange=5, client=client)
    assert ds.attrs["workers"] == 2 and ds.attrs["subdomains"] == [2, 1]
    assert ds.attrs["seconds_per_step"] > 0
    # the field is the scheme's exact answer u0 g^30, and its error the gap between g^30 and the PDE's decay
    u0 = cae.sine_mode(96, 2).compute()
    g = _amplification(u0, 1.0, ds.attrs["dt"])
    np.testing.assert_allclose(ds["u"].values, u0.values * g ** 30, rtol=1e-11, atol=1e-14)
    gap = abs(g ** 30 - math.exp(-2 * math.pi ** 2 * ds.attrs["time"])) * float(u0.max())
    assert ds.attrs["max_abs_error"] == pytest.approx(gap, rel=1e-6) and gap < 1e-5
    assert ds["error"].shape == (96, 96)
    np.testing.assert_allclose(float(abs(ds["error"]).max()), ds.attrs["max_abs_error"])
    # two slabs of 48 x 96, halo 5 deep: each receives 5 * 96 cells of 8 bytes per 5 steps
    assert ds.attrs["halo_nbytes_per_step"] == 2 * 5 * 96 * 8 / 5
    assert ds.attrs["halo_messages_per_step"] == 2 / 5  # one message each way per round of 5 steps


# --------------------------------------------------------------------------- Poisson
@pytest.mark.parametrize("ndim, subdomains", [(2, (2, 2)), (3, (2, 1, 2))])
def test_poisson_sor_converges_to_manufactured_solution(ndim, subdomains):
    n = 33 if ndim == 2 else 17
    prob = cae.manufactured_poisson(n, ndim, subdomains)
    res = cae.poisson(prob.f, prob.u0, method="sor", tol=1e-9, sweeps_per_exchange=3, check_every=30)
    assert res.attrs["converged"] and res["residual"].values[-1] < 1e-9
    assert res.attrs["reductions"] == res["residual"].size >= 2
    # one global reduction per check_every = 30 sweeps: sweeps / 30 of them, at sweeps 30, 60, ...
    assert res.attrs["sweeps"] % 30 == 0 and res.attrs["reductions"] == res.attrs["sweeps"] // 30
    assert res.residual.sweeps.values.tolist() == list(range(30, res.attrs["sweeps"] + 1, 30))
    err = float(abs(res.u - prob.u_exact).max())
    assert err < (3e-3 if ndim == 2 else 1e-2)
    single = cae.poisson(prob.f.compute(), prob.u0.compute(), method="sor", tol=1e-9, sweeps_per_exchange=3,
                         check_every=30)
    np.testing.assert_allclose(res.u.values, single.u.values, rtol=0, atol=1e-13)


def test_manufactured_poisson_fields_match_formulas_by_hand():
    # u = sin(pi x) sin(2 pi y) + x y^2  ->  -lap u = (1 + 4) pi^2 sin(pi x) sin(2 pi y) - 2 x
    prob = cae.manufactured_poisson(9, 2, (2, 1)).compute()
    x, y = 0.25, 0.625
    u = math.sin(math.pi * x) * math.sin(2 * math.pi * y) + x * y * y
    f = 5 * math.pi ** 2 * math.sin(math.pi * x) * math.sin(2 * math.pi * y) - 2 * x
    assert float(prob.u_exact.sel(x=x, y=y)) == pytest.approx(u, rel=1e-14)
    assert float(prob.f.sel(x=x, y=y)) == pytest.approx(f, rel=1e-14)
    assert float(prob.u0.sel(x=1.0, y=y)) == pytest.approx(y * y, abs=1e-15) and float(prob.u0.sel(x=x, y=y)) == 0
    # 3-D, modes (1, 2, 1): u = sin(pi x) sin(2 pi y) sin(pi z) + x y^2, -lap u = 6 pi^2 (...) - 2 x
    p3 = cae.manufactured_poisson(5, 3).compute()
    x, y, z = 0.25, 0.75, 0.5
    s3 = math.sin(math.pi * x) * math.sin(2 * math.pi * y) * math.sin(math.pi * z)
    assert float(p3.u_exact.sel(x=x, y=y, z=z)) == pytest.approx(s3 + x * y * y, rel=1e-14)
    assert float(p3.f.sel(x=x, y=y, z=z)) == pytest.approx(6 * math.pi ** 2 * s3 - 2 * x, rel=1e-14)


def test_sor_default_omega_is_youngs_optimum_for_the_box():
    # square of side L, spacing h: omega = 2 / (1 + sin(pi h / L)) (Young 1954)
    prob = cae.manufactured_poisson(33, 2)
    res = cae.poisson(prob.f, prob.u0, max_sweeps=1, check_every=1)
    assert res.attrs["omega"] == pytest.approx(2 / (1 + math.sin(math.pi / 32)), rel=1e-12)
    f = cae.sine_mode(33, 2, 2.0)  # side 2, h = 1/16: h / L = 1/32 again, not 1/16
    res = cae.poisson(f, 0 * f, max_sweeps=1, check_every=1)
    assert res.attrs["omega"] == pytest.approx(2 / (1 + math.sin(math.pi / 32)), rel=1e-12)


def test_poisson_jacobi_agrees_with_sor():
    prob = cae.manufactured_poisson(13, 2, (2, 1))
    jac = cae.poisson(prob.f, prob.u0, method="jacobi", tol=1e-8, sweeps_per_exchange=4, check_every=100)
    sor = cae.poisson(prob.f, prob.u0, method="sor", tol=1e-8, sweeps_per_exchange=2, check_every=10)
    assert jac.attrs["converged"] and jac.attrs["sweeps"] > 3 * sor.attrs["sweeps"]
    np.testing.assert_allclose(jac.u.values, sor.u.values, atol=1e-7)


def test_poisson_is_second_order_under_refinement():
    errs = []
    for n in (17, 33, 65):
        prob = cae.manufactured_poisson(n, 2, (2, 1))
        res = cae.poisson(prob.f, prob.u0, tol=1e-11, sweeps_per_exchange=4, check_every=40)
        errs.append(float(abs(res.u - prob.u_exact).max()))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all((orders > 1.9) & (orders < 2.1)), orders


# --------------------------------------------------------------------------- halo accounting
def test_halo_counts_match_hand_computation():
    # 8 x 8 grid, two slabs of 4 x 8, halo 1, float64: each slab receives one row of 8 cells
    h = cae.halo_exchange(((4, 4), (8,)), 1, itemsize=8)
    assert h.messages.tolist() == [[1], [1]] and h.nbytes.tolist() == [[64], [64]]
    assert h.total_nbytes == 128 and h.messages_per_step == 2
    # 2 x 2 blocks of 4 x 4, halo 2 (k = 2, corners needed): 2 faces of 2 x 4 + one 2 x 2 corner
    h = cae.halo_exchange(((4, 4), (4, 4)), 2, itemsize=8)
    assert h.messages.tolist() == [[3, 3], [3, 3]]
    assert h.nbytes.tolist() == [[2 * 64 + 32] * 2] * 2
    assert h.nbytes_per_step == 4 * 160 / 2 and h.exchanges_per_step == 0.5
    # 3 x 3 x 3 blocks of 3^3, halo 1, faces only: the centre block has 6 neighbours of 9 cells
    h = cae.halo_exchange(((3, 3, 3),) * 3, 1, itemsize=4)
    assert h.messages[1, 1, 1] == 6 and h.nbytes[1, 1, 1] == 6 * 9 * 4
    # 3 axes x 2 internal planes x 9 block pairs per plane x 2 directions
    assert h.messages[0, 0, 0] == 3 and h.total_messages == 3 * 2 * 9 * 2
    ds = h.to_dataset()
    assert ds["nbytes"].attrs["units"] == "B"


def test_halo_bytes_of_two_by_two_blocks_by_hand():
    # 16 x 16 cells cut into 2 x 2 chunks of 8 x 8, halo 1, float64 (8 B). Block (0, 0) touches
    # block (1, 0) across a face of 8 cells and block (0, 1) across a face of 8 cells: 2 messages,
    # 2 * 8 * 8 = 128 B; every block is a corner block, so all four receive the same.
    h = cae.halo_exchange(((8, 8), (8, 8)), 1, itemsize=8)
    assert h.messages.tolist() == [[2, 2], [2, 2]] and h.nbytes.tolist() == [[128, 128], [128, 128]]
    assert h.total_messages == 8 and h.total_nbytes == 512 and h.nbytes_per_step == 512
    # dask's map_overlap also ships the diagonal neighbour's 1 x 1 corner: 2 * 8 + 1 = 17 cells
    c = cae.halo_exchange(((8, 8), (8, 8)), 1, itemsize=8, corners=True)
    assert c.messages.tolist() == [[3, 3], [3, 3]] and c.nbytes.tolist() == [[136, 136], [136, 136]]
    # 8 x 8 cells in 2 x 2 chunks of 4 x 4: two faces of 4 cells each, 2 * 4 * 8 = 64 B per block
    assert cae.halo_exchange(((4, 4), (4, 4)), 1).nbytes.tolist() == [[64, 64], [64, 64]]
    # 3 x 3 blocks of 4 x 4 (5-point stencil, k = 1): the centre block has 4 face neighbours, an edge
    # block 3, a corner block 2; k = 2 adds the diagonals (8, 5, 3) with 2 x 2 corners of 4 cells
    h = cae.halo_exchange(((4, 4, 4),) * 2, 1)
    assert h.messages.tolist() == [[2, 3, 2], [3, 4, 3], [2, 3, 2]]
    assert h.nbytes[1, 1] == 4 * 4 * 8
    h = cae.halo_exchange(((4, 4, 4),) * 2, 2)
    assert h.messages.tolist() == [[3, 5, 3], [5, 8, 5], [3, 5, 3]]
    assert h.nbytes[1, 1] == (4 * 2 * 4 + 4 * 2 * 2) * 8  # 4 faces of 2 x 4, 4 corners of 2 x 2
    assert h.nbytes_per_step == h.total_nbytes / 2


def test_subdomains_asked_are_the_subdomains_made():
    # 10 points into 6 blocks: 2, 2, 2, 2, 1, 1 (a uniform ceil(10/6) = 2 would make only 5), and
    # 10 into 4: 3, 3, 2, 2, so a halo of 2 fits (3, 3, 3, 1 would refuse it)
    assert cae.chunks_for((10, 10), (6, 4)) == ((2, 2, 2, 2, 1, 1), (3, 3, 2, 2))
    u0 = cae.sine_mode(10, 2, 1.0, (6, 4))
    assert u0.data.chunks == ((2, 2, 2, 2, 1, 1), (3, 3, 2, 2))
    ref = cae.heat(u0.compute(), 1.0, 1e-3, 4).values
    np.testing.assert_array_equal(cae.heat(cae.sine_mode(10, 2, 1.0, (1, 4)), 1.0, 1e-3, 4, 2).values, ref)


def test_halo_per_step_counts_the_short_last_round():
    from hpclab.workloads.cae.solver import halo_per_step

    # two 12 x 8 slabs, 25 steps at k = 10: rounds of halo 10, 10, 5; each slab receives k rows of 8
    # cells x 8 B per round: 2 x (640 + 640 + 320) B = 3200 B over 25 steps, 6 messages, 3 exchanges
    h = halo_per_step(((12, 12), (8,)), 25, 10)
    assert h == {"nbytes": 3200 / 25, "messages": 6 / 25, "exchanges": 3 / 25}
    assert halo_per_step(((12, 12), (8,)), 30, 10)["exchanges"] == 0.1


@pytest.mark.parametrize("chunks, depth", [(((5, 7, 4), (6, 6)), 2), (((4, 4), (3, 5), (6,)), 1)])
def test_halo_counts_match_what_dask_overlap_ships(chunks, depth):
    x = da.zeros(tuple(sum(c) for c in chunks), chunks=chunks)
    padded = da.overlap.overlap(x, depth={i: depth for i in range(x.ndim)}, boundary="none")
    received = sum(math.prod(b) for b in _block_shapes(padded.chunks)) - x.size
    h = cae.halo_exchange(chunks, depth, itemsize=1, corners=True)
    assert h.total_nbytes == received


def _block_shapes(chunks):
    import itertools

    return itertools.product(*chunks)


# --------------------------------------------------------------------------- bad input
def _one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def test_unstable_time_step_is_one_clear_error():
    u0 = cae.sine_mode(33, 2, 1.0, 2)
    with pytest.raises(HpclabError) as e:
        cae.heat(u0, 1.0, 1.01 * cae.stable_dt(u0, 1.0), 10)
    assert "dt must be <=" in _one_line(e)
    assert cae.stable_dt(u0, 1.0) == pytest.approx((1 / 32) ** 2 / (2 * 2 * 1.0))


def test_grid_smaller_than_halo_is_one_clear_error():
    u0 = cae.sine_mode(16, 2, 1.0, (4, 1))  # sub-domains of 4 rows
    with pytest.raises(HpclabError) as e:
        cae.heat(u0, 1.0, 1e-5, 10, steps_per_exchange=5)
    assert "halo 5 cells wide" in _one_line(e)
    with pytest.raises(HpclabError) as e:
        cae.halo_exchange(((4, 4, 4, 4), (16,)), 5)
    _one_line(e)
    with pytest.raises(HpclabError) as e:
        cae.sine_mode(2, 2)
    assert "n must be >= 3" in _one_line(e)
    with pytest.raises(HpclabError):
        cae.poisson(*cae.manufactured_poisson(9, 2, (3, 1))[["f", "u0"]].data_vars.values(), sweeps_per_exchange=2)


# --------------------------------------------------------------------------- scaling model
from hpclab.network import Fabric, collective_time  # noqa: E402
from hpclab.workloads.cae import model  # noqa: E402

C = 2e-9  # seconds per cell-step, a typical measured value (the model takes any)


def test_process_grid_is_balanced_and_exact():
    g = model.process_grid([1, 4, 6, 12, 100_000, 7], 2)
    assert g.tolist() == [[1, 1], [2, 2], [3, 2], [4, 3], [400, 250], [7, 1]]
    g3 = model.process_grid([8, 64, 100_000], 3)
    assert np.prod(g3, axis=-1).tolist() == [8, 64, 100_000] and g3[1].tolist() == [4, 4, 4]


def test_step_time_matches_hand_computation():
    fab = Fabric(alpha=5e-6, beta=1e-9, per_hop_latency=1e-6, name="hand")
    # 100 x 100 on 2 x 2 cores, k = 1: 50 x 50 cells, 2 face messages of 50 cells x 8 B, 2 extra hops
    ds = model.step_time(4, 100, fab, cost_per_cell=C, placement="placement-group")
    assert float(ds.compute_time) == pytest.approx(C * 2500)
    assert float(ds.halo_time) == pytest.approx(2 * (5e-6 + 2 * 1e-6 + 400 * 1e-9))
    assert float(ds.halo_messages) == 2 and float(ds.halo_nbytes) == 800
    # k = 4: halo 4 deep, edges + one corner, one exchange per 4 steps, redundant cells recomputed
    ds = model.step_time(4, 100, fab, cost_per_cell=C, steps_per_exchange=4, placement=0)
    faces = 2 * (5e-6 + 4 * 50 * 8 * 1e-9)
    corner = 5e-6 + 16 * 8 * 1e-9
    assert float(ds.halo_time) == pytest.approx((faces + corner) / 4)
    assert float(ds.compute_time) == pytest.approx(C * (50 + 3) ** 2)
    # reductions: half an allreduce of 8 bytes per step, its messages crossing the same 2 extra hops:
    # recursive doubling on 4 ranks = 2 rounds of (alpha + 2 hops + 8 B beta)
    ds = model.step_time(4, 100, fab, cost_per_cell=C, reductions_per_step=0.5)
    hop2 = fab.with_(alpha=5e-6 + 2 * 1e-6)
    assert float(ds.reduction_time) == pytest.approx(0.5 * collective_time("allreduce", 8, 4, hop2))
    assert float(ds.reduction_time) == pytest.approx(0.5 * 2 * (5e-6 + 2e-6 + 8e-9), rel=1e-3)
    same_leaf = model.step_time(4, 100, fab, cost_per_cell=C, reductions_per_step=0.5, placement="same-leaf")
    assert float(same_leaf.reduction_time) == pytest.approx(0.5 * collective_time("allreduce", 8, 4, fab))


def test_placement_hops_from_names_numbers_and_topology():
    from hpclab.network import Topology

    fab = Fabric(alpha=5e-6, beta=1e-9, per_hop_latency=1e-6, name="hand")
    one = {p: float(model.step_time(2, 64, fab, cost_per_cell=C, placement=p).halo_time)
           for p in ("same-leaf", "placement-group", "same-zone", 3)}
    assert one["placement-group"] - one["same-leaf"] == pytest.approx(2e-6)
    assert one["same-zone"] - one["same-leaf"] == pytest.approx(4e-6) and one[3] - one["same-leaf"] == pytest.approx(3e-6)
    topo = Topology(hosts_per_leaf=4, leaves_per_pod=2)  # 1 leaf: +0 hops, 1 pod: +2, beyond: +4
    ds = model.step_time([2 * 4, 2 * 8, 2 * 9], 64, fab, cost_per_cell=C, placement=topo, cores_per_host=2)
    same = model.step_time([8, 16, 18], 64, fab, cost_per_cell=C, placement=0)
    np.testing.assert_allclose(ds.halo_time - same.halo_time, same.halo_messages * np.array([0, 2, 4]) * 1e-6)


@pytest.mark.parametrize("ndim, cores, grid, k", [(2, 12, 48, 1), (2, 9, 30, 2), (3, 27, 18, 1), (3, 8, 16, 3)])
def test_model_halo_equals_counted_halo_of_busiest_subdomain(ndim, cores, grid, k):
    ds = model.step_time(cores, grid, "erdma", cost_per_cell=C, ndim=ndim, steps_per_exchange=k)
    pg = model.process_grid(cores, ndim)
    h = cae.halo_exchange(cae.chunks_for((grid,) * ndim, pg), k)
    assert float(ds.halo_nbytes) == h.nbytes.max() and float(ds.halo_messages) == h.messages.max()


def test_model_reduces_to_pure_compute_on_an_infinitely_fast_fabric():
    ideal = Fabric(alpha=1e-30, beta=1e-30, name="ideal")
    cores = 2 ** np.arange(0, 13)
    ds = model.scaling(cores, 4096, [ideal], cost_per_cell=C, reductions_per_step=1.0)
    np.testing.assert_allclose(ds.time_per_step, ds.compute_time, rtol=1e-12)
    np.testing.assert_allclose(ds.compute_time.sel(fabric="ideal"), C * 4096 ** 2 / cores, rtol=1e-12)
    np.testing.assert_allclose(ds.efficiency, 1.0, rtol=1e-12)


def test_tcp_saturates_before_erdma_and_sweep_is_a_dataset():
    ds = model.scaling(cost_per_cell=C, grid=4096)
    assert ds.sizes["fabric"] == 3 and 95 <= ds.sizes["cores"] <= 105 and ds.cores.max() == 100_000
    sat = ds.saturation_cores
    assert sat.sel(fabric="tcp-vpc") < sat.sel(fabric="erdma") <= sat.sel(fabric="rdma-hpn7")
    assert ds.time_per_step.attrs["units"] == "s" and ds.efficiency.attrs["units"] == "1"
    # the same step costs more on TCP from the first exchange on
    assert np.all(ds.halo_time.sel(fabric="tcp-vpc")[1:] > ds.halo_time.sel(fabric="erdma")[1:])
    weak = model.scaling(cost_per_cell=C, grid=512, mode="weak", reductions_per_step=0.1)
    assert weak.grid[-1] > weak.grid[0] and np.all(weak.efficiency <= 1 + 1e-12)
    assert weak.efficiency.sel(fabric="tcp-vpc")[-1] < weak.efficiency.sel(fabric="erdma")[-1]


def test_saturation_points_follow_from_the_catalog_figures():
    """Strong scaling of 4096^2 (k = 1, 2 extra hops, no reductions) recomputed here from the
    catalog's alpha, bandwidth x efficiency, per-hop latency and message rate of each fabric."""
    from hpclab import catalog

    N, cores = 4096, model.smooth_cores(1, 100_000, 100)
    ds = model.scaling(cores, N, ["tcp-vpc", "erdma"], cost_per_cell=C, placement="placement-group")
    sat = {}
    for name in ("tcp-vpc", "erdma"):
        spec = catalog.default().fabric(name)
        beta = 1.0 / (spec.bandwidth * spec.efficiency)
        eff = []
        for P in cores:
            p1, p2 = (int(v) for v in model.process_grid(int(P), 2))
            e1, e2 = math.ceil(N / p1), math.ceil(N / p2)
            halo = 0.0
            for n_nb, face in ((min(p1 - 1, 2), e2), (min(p2 - 1, 2), e1)):  # faces across axis 0, axis 1
                halo += n_nb * max(spec.alpha + 2 * spec.per_hop_latency + face * 8 * beta, 1 / spec.message_rate)
            eff.append(C * N * N / (P * (C * e1 * e2 + halo)))
        eff = np.array(eff)
        np.testing.assert_allclose(ds.efficiency.sel(fabric=name), eff, rtol=1e-12)
        sat[name] = int(cores[eff >= 0.5].max())
        assert float(ds.saturation_cores.sel(fabric=name)) == sat[name]
    assert sat["tcp-vpc"] < sat["erdma"]  # TCP's larger alpha and hop cost: it stops helping first


def test_model_feasibility_is_the_solvers():
    # 10 points on 3 x 1 cores: blocks of 4, 3, 3; a halo of 3 fits, a halo of 4 does not (the
    # thinnest block, not the busiest, decides), exactly as the solver refuses it
    ds = model.step_time(3, 10, "erdma", cost_per_cell=C, steps_per_exchange=[3, 4])
    assert ds.feasible.values.tolist() == [True, False]
    u0 = cae.sine_mode(10, 2, 1.0, (3, 1))
    cae.heat(u0, 1.0, 1e-3, 3, steps_per_exchange=3)
    with pytest.raises(HpclabError):
        cae.heat(u0, 1.0, 1e-3, 4, steps_per_exchange=4)


def test_model_bad_input_is_one_clear_error():
    for kwargs in (dict(cores=0), dict(cores=[4, 0]), dict(cores=4, cost_per_cell=-1), dict(cores=4, placement="moon"),
                   dict(cores=4, ndim=4)):
        args = dict(grid=64, fabric="erdma", cost_per_cell=C)
        args.update(kwargs)
        with pytest.raises(HpclabError) as e:
            model.step_time(args.pop("cores"), **args)
        _one_line(e)
    # sub-domains thinner than the halo are not a number in a sweep, and an error for one point
    ds = model.step_time([4, 64 * 64], 64, "erdma", cost_per_cell=C, steps_per_exchange=2)
    assert ds.feasible.values.tolist() == [True, False] and np.isnan(ds.time_per_step[1])
    with pytest.raises(HpclabError) as e:
        model.time_to_solution(10, cores=64 * 64, grid=64, cost_per_cell=C, steps_per_exchange=2)
    assert "too small" in _one_line(e)


def test_time_to_solution_cloud_versus_on_premises():
    from hpclab import catalog

    cat = catalog.default()
    ds = model.time_to_solution(1000, cores=100_000, grid=16384, cost_per_cell=C, months=4)
    assert float(ds.provision.sel(provisioning="on-premises")) == pytest.approx(4 * 365.25 / 12 * 86400)
    inst, cloud = cat.instance("ecs.c8i.8xlarge"), cat.provisioning("cloud")
    n = math.ceil(100_000 / inst.cores)
    expect = cloud.lead_time + n / cloud.launch_rate + inst.boot_time + inst.boot_time_sd * math.sqrt(2 * math.log(n))
    assert float(ds.provision.sel(provisioning="cloud")) == pytest.approx(expect)
    assert float(ds.provision.sel(provisioning="cloud")) < 86400  # the article: under a day
    cpfs, oss = cat.storage("cpfs"), cat.storage("oss")
    nbytes = 16384 ** 2 * (80 + 8 * 100)
    assert float(ds.staging.sel(storage="cpfs")) == pytest.approx(2 * nbytes / cpfs.throughput + 4 * cpfs.latency)
    assert float(ds.staging.sel(storage="oss")) == pytest.approx(2 * nbytes / oss.throughput + 4 * oss.latency)
    assert float(ds.total.sel(provisioning="cloud", storage="cpfs")) < float(ds.total.sel(provisioning="cloud", storage="oss"))
    assert ds.total.attrs["units"] == "s" and float(ds.solve) == pytest.approx(1000 * ds.attrs["seconds_per_step"])


def test_measured_cost_per_cell_is_plausible():
    c = model.measure_cost_per_cell(n=256, steps=5, repeat=2)
    assert 1e-11 < c < 1e-6


# --------------------------------------------------------------------------- views and command line
def test_scaling_panel_updates_in_place():
    from hpclab.viz import cae as view

    panel = view.scaling_panel(cost_per_cell=C, grid=4096, cores=1080)
    curves, brk = panel.sources["curves"], panel.sources["breakdown"]
    assert curves.data["name"] == ["tcp-vpc", "erdma", "rdma-hpn7"]
    before = list(curves.data["ys"][0])
    panel.widgets["steps_per_exchange"].value = 8  # fewer messages: TCP efficiency rises at scale
    after = curves.data["ys"][0]
    assert after[-1] > before[-1]
    panel.widgets["fabric"].value = "tcp-vpc"
    assert "tcp-vpc" in panel.figures["breakdown"].title.text and "tcp-vpc" in panel.summary.value
    panel.widgets["placement"].value = "same-zone"
    panel.widgets["ndim"].value = 3
    panel.widgets["mode"].value = "weak"
    assert "1,080" in panel.summary.value and brk.data["name"][0] == "total"
    panel.widgets["mode"].value = "strong"
    panel.widgets["grid"].value = 256
    panel.widgets["steps_per_exchange"].value = 16
    panel.widgets["cores"].value = 100_000
    assert "not feasible" in panel.summary.value  # 256^3 on 50 x 50 x 40 cores: 6 cells < halo of 16


def test_field_and_scaling_figures_build():
    from bokeh.embed import json_item

    from hpclab.viz import cae as view

    u0 = cae.sine_mode(33, 2, 1.0, (2, 1))
    u = cae.heat(u0, 1.0, 1e-4, 10, 5).compute()
    ds = xr.Dataset({"u": u, "error": u - cae.heat_analytic(u0, u.attrs["time"], 1.0).compute()})
    json_item(view.field_figure(ds))
    sweep = model.scaling(cost_per_cell=C)
    fig = view.scaling_figure(sweep)
    assert fig._hpclab_sources["marks"].data["x"] == sweep.saturation_cores.values.tolist()
    json_item(view.breakdown_figure(sweep, "tcp-vpc"))


def test_cli_runs_the_real_solver_and_reports_bad_input(capsys, client):
    from hpclab.cli import main

    assert main(["cae", "--grid", "64", "--steps", "20", "--steps-per-exchange", "5", "--model",
                 "--scheduler", client.scheduler.address]) == 0
    out = capsys.readouterr().out
    assert "max abs" in out and "time per step" in out and "tcp-vpc" in out
    assert "halo: 1.0 kB in 0.4 messages per step" in out
    assert "the mode decayed to" in out  # 64^2: 2 slabs x 5 rows x 64 cells x 8 B / 5 steps
    bad = {"halo": ["--grid", "8", "--steps", "10", "--steps-per-exchange", "6", "--workers", "2"],
           "dt must be <=": ["--grid", "64", "--dt", "1e-3"], "dt must be a finite": ["--grid", "64", "--dt", "nan"],
           "kappa": ["--grid", "64", "--kappa", "nan"], "--workers": ["--grid", "64", "--workers", "0"],
           "--grid": ["--grid", "-5"], "--steps": ["--grid", "64", "--steps", "0"],
           "unknown fabric 'moon'": ["--grid", "64", "--fabrics", "erdma,moon"],
           "subdomains": ["--grid", "64", "--subdomains", "0,1"]}
    for needle, argv in bad.items():
        assert main(["cae", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("hpclab: error:") and "\n" not in err and needle in err, (argv, err)


def test_distribute_puts_one_subdomain_on_each_worker(client):
    u0 = cae.sine_mode(64, 2, 1.0, (2, 1))
    placed = cae.distribute(u0, client)
    where = client.who_has(placed.data)
    owners = {k[1]: v for k, v in where.items()}
    assert len(set(owners.values())) == 2  # two blocks, two different workers
    np.testing.assert_array_equal(client.compute(placed, sync=True).values, u0.values)


def test_exchange_overhead_is_paid_once_per_round_and_only_with_neighbours():
    fab = Fabric(alpha=5e-6, beta=1e-9, name="hand")
    base = model.step_time([1, 4], 100, fab, cost_per_cell=C, steps_per_exchange=5)
    more = model.step_time([1, 4], 100, fab, cost_per_cell=C, steps_per_exchange=5, exchange_overhead=0.01)
    np.testing.assert_allclose(more.halo_time - base.halo_time, [0.0, 0.01 / 5])
