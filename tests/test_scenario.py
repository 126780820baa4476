"""Scenarios: one description, saved to a file, run on either clock, with one Result type."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

from hpclab import HpclabError
from hpclab.cli import main
from hpclab.result import open_result
from hpclab.scenario import Scenario, example_names, scenario_dir


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # measured screening costs go to a per-session cache, not the user's
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


def test_every_example_round_trips(tmp_path):
    names = example_names()
    assert {"burst", "campaign_100k", "screening_campaign", "screening_small", "cae_scaling", "llm_16k",
            "platform"} <= set(names)
    for name in names:
        s = Scenario.example(name)
        path = s.save(tmp_path / f"{name}.yaml")
        again = Scenario.load(path)
        assert again == s
        assert again.to_yaml() == s.to_yaml()


@pytest.mark.parametrize("name", sorted(p.stem for p in scenario_dir().glob("*.yaml")))
def test_every_example_runs_on_the_virtual_clock(name, capsys, tmp_path):
    assert main(["run", str(scenario_dir() / f"{name}.yaml"), "--clock", "virtual", "--json",
                 "--out", str(tmp_path / "out")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"] == name and out["clock"] == "virtual"
    if "tasks" in out:
        assert out["tasks_done"] == out["tasks"] > 0
    if "cost_usd" in out:
        assert out["cost_usd"] > 0
    files = open_result(tmp_path / "out" / "result.nc")
    assert "summary" in files
    assert Scenario.load(tmp_path / "out" / "scenario.yaml") == Scenario.example(name)


def _agree(a, b, keys, tol=0.15):
    from hpclab.testing import assert_summary_close, assert_valid_result

    assert_valid_result(a)
    assert_valid_result(b)
    assert_summary_close(a, b, keys, rtol=tol)


def _real_and_virtual(run_real, run_virtual, keys, tol=0.15):
    """(real, virtual) Results of the same scenario on the two clocks.

    The real clock's times are wall times: a pause of this process (a long garbage collection in
    a full test run, another job on the cores) delays the pool's policy, and with it the end of
    the run and of every live instance. The real run reports how late its policy loop ran at
    worst (``policy_lag_s``). A first run that disagrees on ``keys`` by more than ``tol``, but by
    no more than that lag explains (the lag on the makespan, the lag times the instances on
    instance-seconds and their cost), is measured once more, and the second must agree. A
    disagreement the lag does not explain fails at once."""
    for attempt in range(2):
        real = run_real(attempt)
        virtual = run_virtual(attempt)
        lag, n = real["policy_lag_s"], real["instances"]
        rate = virtual["cost_usd"] / virtual["instance_seconds"] if virtual["instance_seconds"] else 0.0
        room = {"makespan_s": lag, "instance_seconds": lag * n, "cost_usd": lag * n * rate}
        over = {k: abs(real[k] - virtual[k]) - tol * abs(virtual[k]) for k in keys}
        if attempt or max(over.values()) <= 0 or any(x > room[k] for k, x in over.items() if x > 0):
            return real, virtual
    raise AssertionError("unreachable")  # pragma: no cover


def test_burst_agrees_on_both_clocks():
    """The same file on the two clocks: tasks, instance-seconds and cost within 15%."""
    s = Scenario.example("burst")
    real, virtual = _real_and_virtual(lambda _: s.run("real"), lambda _: s.run("virtual"),
                                      ("instance_seconds", "cost_usd", "makespan_s"))
    assert real["tasks_done"] == virtual["tasks_done"] == s.workload["tasks"]
    _agree(real, virtual, ("instance_seconds", "cost_usd", "makespan_s"))
    assert real["instances"] == virtual["instances"]


def test_small_screening_campaign_agrees_on_both_clocks(tmp_path):
    s = Scenario.example("screening_small")
    real, virtual = _real_and_virtual(
        lambda k: s.run("real", out=tmp_path / f"screen{k}"),
        lambda k: s.replace(workload={"costs_from": str(tmp_path / f"screen{k}")}).run("virtual"),
        ("instance_seconds", "cost_usd"))
    assert real["roc_auc_2d"] > 0.5
    assert real["policy_lag_s"] >= 0
    assert real["tasks_done"] == virtual["tasks_done"] == real["tasks"]
    assert real["molecules"] == virtual["molecules"]
    _agree(real, virtual, ("instance_seconds", "cost_usd"))


def test_result_netcdf_round_trip(tmp_path):
    r = Scenario.example("burst").run()
    path = r.to_netcdf(tmp_path / "r.nc")
    got = open_result(path)
    assert set(got) >= {"summary", "events", "instances", "bill", "timeseries", "tasks"}
    assert float(got["summary"]["cost_usd"]) == pytest.approx(r["cost_usd"])
    assert got["summary"]["cost_usd"].attrs["units"] == "USD"
    xr.testing.assert_allclose(got["bill"]["cost"], r.bill["cost"])
    assert Scenario.from_dict(__import__("yaml").safe_load(got["/"].attrs["scenario"])) == r.scenario


def test_cae_scaling_writes_netcdf(tmp_path):
    from hpclab.workloads import cae

    ds = cae.scaling(cores=[1, 4, 16], grid=256, cost_per_cell=1e-8)
    ds.to_netcdf(tmp_path / "c.nc")
    back = xr.open_dataset(tmp_path / "c.nc")
    assert back.attrs["mode"] == "strong"
    np.testing.assert_allclose(back["time_per_step"].values, ds["time_per_step"].values)


BAD = [
    ("workload: {kind: tasks, tasks: 5}\n", "name: is required"),
    ("name: x\nworkload: {kind: nope}\n", "workload.kind: must be one of"),
    ("name: x\nworkload: {kind: tasks, tasks: -3}\npool: {types: [ecs.c8i.8xlarge]}\n",
     "workload.tasks: must be a whole number in [1, 1,000,000,000], got -3"),
    ("name: x\nworkload: {kind: tasks, tasks: 2.5}\npool: {types: [ecs.c8i.8xlarge]}\n", "workload.tasks"),
    ("name: x\nworkload: {kind: tasks, tasks: 1e30}\npool: {types: [ecs.c8i.8xlarge]}\n", "workload.tasks"),
    ("name: x\nworkload: {kind: tasks, tasks: 5, mean: .nan}\npool: {types: [ecs.c8i.8xlarge]}\n",
     "workload.mean"),
    ("name: x\nworkload: {kind: tasks, tasks: 5, colour: red}\npool: {types: [ecs.c8i.8xlarge]}\n",
     "workload.colour: is not a known key"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\npool: {types: [ecs.nope]}\n",
     "pool.types[0]: must be a catalog instance type"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\npool: {types: [ecs.c8i.8xlarge], zones: [mars-1]}\n",
     "pool.zones[0]: must be a catalog zone"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\npool: {types: [ecs.c8i.8xlarge], quota_cores: 0}\n",
     "pool.quota_cores"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\npool: {types: [ecs.c8i.8xlarge], slots: {ecs.c7.8xlarge: 2}}\n",
     "pool.slots.ecs.c7.8xlarge: names a type not in pool.types"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\npool: {types: [ecs.c8i.8xlarge]}\npolicy: {name: nope}\n",
     "policy: policy must be one of"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\npool: {types: [ecs.c8i.8xlarge]}\n"
     "policy: {name: target-duration, params: {colour: 1}}\n", "policy: policy target-duration:"),
    ("name: x\nclock: sideways\nworkload: {kind: tasks, tasks: 5}\npool: {types: [ecs.c8i.8xlarge]}\n",
     "clock: must be one of virtual, real"),
    ("name: x\nclock: real\nworkload: {kind: llm}\n", "clock: a llm workload runs on virtual only"),
    ("name: x\nworkload: {kind: llm, model: gpt-99}\n", "workload.model: must be one of"),
    ("name: x\nworkload: {kind: llm, gpus: 100000000000}\n", "workload.gpus"),
    ("name: x\nworkload: {kind: cae, fabrics: [carrier-pigeon]}\n", "workload.fabrics[0]"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\npool: {types: [ecs.c8i.8xlarge]}\nfabric: smoke\n", "fabric:"),
    ("name: x\nworkload: {kind: trace}\npool: {types: [ecs.c8i.32xlarge]}\n", "pool.types: a trace needs two"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\ncluster: {kind: address}\npool: {types: [ecs.c8i.8xlarge]}\n",
     "cluster.address: is required"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\ncluster: {kind: file}\npool: {types: [ecs.c8i.8xlarge]}\n",
     "cluster.file: is required"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\ncluster: {kind: file, file: nope.yaml}\npool: {types: [ecs.c8i.8xlarge]}\n",
     "cluster.file: no such cluster spec file, got 'nope.yaml'"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\ncluster: {kind: files}\npool: {types: [ecs.c8i.8xlarge]}\n",
     "cluster.kind: must be one of local, address, file"),
    ("name: x\nworkload: {kind: tasks, tasks: 5, arrival: uniform}\npool: {types: [ecs.c8i.8xlarge]}\n",
     "workload.window: must be > 0"),
    ("name: x\nclock: real\nworkload: {kind: screening, molecules: 100000000}\npool: {types: [ecs.c8i.8xlarge]}\n",
     "library has 4,999 molecules"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\npool: {types: [ecs.c8i.8xlarge], spot_market: {model: sideways}}\n",
     "pool.spot_market: model must be one of"),
    ("- just\n- a list\n", "must be a mapping of scenario keys"),
    ("name: [unclosed\n", "not valid YAML"),
    ("name: x\nworkload: !!python/object:os.system {}\n", "not valid YAML"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\npool: {types: [ecs.c8i.8xlarge]}\nseed: -1\n", "seed:"),
    ("name: x\nworkload: {kind: tasks, tasks: 5}\npool: {types: [ecs.c8i.8xlarge]}\ntime_scale: 0\n", "time_scale:"),
]


def test_simulate_scenario_is_the_run_behind_the_result():
    """The SimResult a notebook draws is the very run Scenario.run summarises."""
    from hpclab.workloads.tasks import simulate_scenario

    s = Scenario.example("burst")
    sim, res = simulate_scenario(s), s.run("virtual")
    assert sim.summary["completed"] == res["tasks_done"] == s.workload["tasks"]
    assert sim.summary["makespan_s"] == pytest.approx(res["makespan_s"], rel=1e-12)
    assert sim.summary["cost_usd"] == pytest.approx(res["cost_usd"], rel=1e-9)


def test_cae_reductions_per_step_reach_the_model():
    """workload.reductions_per_step is the model's: allreduces lower the saturation point."""
    from hpclab.workloads import cae

    s = Scenario.example("cae_scaling").replace(workload={"cost_per_cell": 1e-9, "grid": 2048})
    none, some = s.run().data["scaling"], s.replace(workload={"reductions_per_step": 1.0}).run().data["scaling"]
    assert float(none.reduction_time.max()) == 0.0
    assert float(some.reduction_time.sel(cores=slice(2, None)).min()) > 0.0  # none on one core
    assert (some.saturation_cores <= none.saturation_cores).all()
    assert (some.saturation_cores < none.saturation_cores).any()
    direct = cae.scaling(np.array(s.workload["cores"]), 2048, tuple(s.workload["fabrics"]), cost_per_cell=1e-9,
                         reductions_per_step=1.0)
    xr.testing.assert_allclose(some.time_per_step, direct.time_per_step)


def test_the_scenario_topology_reaches_the_cae_and_llm_models():
    """A top-level topology preset is the one the models use (it was read by none): the CAE halo
    messages pay its hops (a spread placement is slower than a placement group), and the LLM
    cluster's backend network is it."""
    from hpclab.network import topology
    from hpclab.workloads import cae
    from hpclab.workloads.llm.plan import plan

    s = Scenario.example("cae_scaling").replace(workload={"cost_per_cell": 1e-9, "grid": 2048})
    spread = s.replace(topology="vpc-spread").run().data["scaling"]
    group = s.run().data["scaling"]
    assert (spread.time_per_step.sel(cores=slice(2, None)) > group.time_per_step.sel(cores=slice(2, None))).all()
    direct = cae.scaling(np.array(s.workload["cores"]), 2048, tuple(s.workload["fabrics"]), cost_per_cell=1e-9,
                         placement=topology("vpc-spread"))
    xr.testing.assert_allclose(spread.time_per_step, direct.time_per_step)
    with pytest.raises(HpclabError, match="topology: give it or workload.placement, not both"):
        s.replace(topology="vpc-spread", workload={"placement": "spread"}).run()
    assert plan("gpt3-175b", 64, top=1, topology="nonblocking")["cluster"].topology.name == "nonblocking"


@pytest.mark.parametrize("text, message", BAD)
def test_bad_scenarios_are_one_line_errors(text, message, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(HpclabError) as err:
        Scenario.load(path)
    assert message in str(err.value)
    assert str(err.value).startswith("bad.yaml")
    assert "\n" not in str(err.value)
    assert main(["run", str(path)]) == 2
    cap = capsys.readouterr()
    assert cap.err.count("\n") == 1 and "Traceback" not in cap.err


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: x\n# caf\xe9\nworkload: {kind: tasks, tasks: 5}\n")
    with pytest.raises(HpclabError, match=r"latin.yaml:2: not UTF-8"):
        Scenario.load(path)


def test_example_is_written_and_never_overwritten(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--example", "burst"]) == 0
    assert Scenario.load(tmp_path / "burst.yaml") == Scenario.example("burst")
    before = (tmp_path / "burst.yaml").read_text()
    assert main(["run", "--example", "burst"]) == 2
    assert "not overwritten" in capsys.readouterr().err
    assert (tmp_path / "burst.yaml").read_text() == before
    assert main(["run", "--example", "nope"]) == 2


def test_unwritable_out_fails_before_the_run(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", str(scenario_dir() / "burst.yaml"), "--out", str(blocker)]) == 2
    assert "--out" in capsys.readouterr().err


USER_POLICY = '''
import math
from hpclab.elastic.state import Decision, Launch


class Doubling:
    """Doubles the pool while work waits; retires every idle instance when nothing waits."""

    name = "doubling"

    def __init__(self, per_instance=2):
        self.per_instance = per_instance
        self.calls = 0

    def decide(self, state):
        self.calls += 1
        lim = state.limits
        itype, zone = lim.types[0], lim.zones[0]
        serving = state.count()
        slots = state.slots.get(itype, self.per_instance)
        want = math.ceil((state.queued + state.running) / slots)
        cap = lim.max_per_type.get(itype)
        if cap is not None:
            want = min(want, cap)
        if lim.quota_cores is not None:
            want = min(want, lim.quota_cores // slots)
        grow = min(max(want - serving, 0), max(serving, 1))
        if grow:
            return Decision(launch=(Launch(itype, zone, "on-demand", grow),), reason="doubling")
        if state.queued == 0:
            idle = tuple(i.id for i in state.instances if i.state == "running" and i.running_tasks == 0)
            return Decision(retire=idle, reason="doubling: idle")
        return Decision()
'''


def _burst_on_both_clocks(policy, params, name, *, tol):
    """The burst scenario under ``policy``: every task done on both clocks, the policy named
    ``name``, instance-seconds and cost within ``tol``."""
    s = Scenario.example("burst").replace(policy={"name": policy, "params": params, "hysteresis": False})
    virtual = s.run("virtual")
    real = s.run("real")
    assert virtual["tasks_done"] == real["tasks_done"] == 96
    assert virtual["policy"] == real["policy"] == name
    _agree(real, virtual, ("instance_seconds", "cost_usd"), tol=tol)


def test_a_user_policy_runs_on_all_three(tmp_path, monkeypatch):
    """One class in one file, found as module:Class, unchanged on the real pool, the virtual clock
    and the platform."""
    (tmp_path / "my_policies.py").write_text(textwrap.dedent(USER_POLICY))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_policies", None)
    _burst_on_both_clocks("my_policies:Doubling", {}, "doubling", tol=0.2)
    p = Scenario.example("platform").replace(workload={"jobs": 300},
                                             policy={"name": "my_policies:Doubling", "params": {},
                                                     "hysteresis": False})
    plat = p.run()
    assert plat["tasks_done"] == 300 and plat["policy"] == "doubling"


def test_a_run_gets_a_fresh_policy_built_once(tmp_path, monkeypatch):
    """Loading builds the policy once to check it; the first run takes that object, every later
    run a new one, so no state passes between runs (the same scenario gives the same result)."""
    (tmp_path / "counted_policies.py").write_text(textwrap.dedent(USER_POLICY) + textwrap.dedent('''
        BUILT = []


        class Counted(Doubling):
            name = "counted"

            def __init__(self, per_instance=2):
                super().__init__(per_instance)
                BUILT.append(self)
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("counted_policies", None)
    s = Scenario.example("burst").replace(policy={"name": "counted_policies:Counted", "params": {},
                                                  "hysteresis": False})
    built = sys.modules["counted_policies"].BUILT
    assert len(built) == 1  # replace() checked the new policy section
    del built[:]
    path = s.save(tmp_path / "counted.yaml")
    s = Scenario.load(path)
    assert len(built) == 1  # checked once, not built again to run
    first = s.run()
    assert len(built) == 1 and built[0].calls > 0
    second = s.run()
    assert len(built) == 2 and built[1] is not built[0]
    assert built[1].calls == built[0].calls  # the second policy started from nothing
    assert first.to_dict() | {"wall_s": 0} == second.to_dict() | {"wall_s": 0}
    assert s.make_policy() is not s.make_policy()


def test_registered_policy_names(tmp_path, monkeypatch):
    from hpclab.elastic import policies as P

    (tmp_path / "reg_policy.py").write_text(textwrap.dedent(USER_POLICY) +
                                           "\nfrom hpclab.elastic.policies import register_policy\n"
                                           "register_policy('doubling', Doubling)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("reg_policy")
    try:
        assert "doubling" in P.policy_names()
        assert P.make_policy("doubling", catalog=None).name == "doubling"
    finally:
        P._REGISTRY.pop("doubling", None)


def test_testing_helpers_catch_a_damaged_result():
    from hpclab.testing import assert_clocks_agree, assert_valid_result

    r = Scenario.example("burst").run()
    assert_valid_result(r)
    r.summary["cost_usd"] = r.summary["cost_usd"] * 2
    with pytest.raises(AssertionError, match="cost_usd"):
        assert_valid_result(r)
    with pytest.raises(AssertionError):
        assert_clocks_agree(r, r)  # both virtual


def test_one_event_loop():
    """Only hpclab/elastic/clock.py runs an event loop (the simulator and the platform use it)."""
    from pathlib import Path

    import hpclab

    root = Path(hpclab.__file__).parent
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "heapq" in p.read_text())
    assert users == ["elastic/clock.py"]


def test_a_scenario_runs_on_a_running_scheduler(capsys):
    """cluster kind address (``hpclab run --scheduler``): the workers are checked, then billed."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=4, processes=False, dashboard_address=None,
                      host="127.0.0.1", protocol="tcp://") as lc:
        s = Scenario.example("burst").replace(workload={"tasks": 12}, time_scale=0.002)
        r = s.run("real", cluster={"kind": "address", "address": lc.scheduler_address})
    assert r["tasks_done"] == 12 and r["instances"] == 1 and r["cost_usd"] > 0
    assert main(["run", str(scenario_dir() / "burst.yaml"), "--clock", "real", "--scheduler",
                 "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect" in err and err.count("\n") == 1


def test_a_scenario_runs_on_the_cluster_of_a_spec_file(tmp_path, capsys):
    """cluster kind file: a spec file next to the scenario naming a scheduler address (and
    ``hpclab run --cluster FILE`` overriding the scenario's cluster); one client checks the
    workers and runs the work (whose end retires the one worker: a new cluster each time)."""
    from distributed import LocalCluster

    def scheduler():
        return LocalCluster(n_workers=1, threads_per_worker=4, processes=False,
                            dashboard_address=None, host="127.0.0.1", protocol="tcp://")

    spec = tmp_path / "here.yaml"
    small = Scenario.example("burst").replace(workload={"tasks": 12}, time_scale=0.002)
    with scheduler() as lc:
        spec.write_text(f"kind: address\naddress: {lc.scheduler_address}\n")
        s = small.replace(clock="real", cluster={"kind": "file", "file": str(spec)})
        path = s.save(tmp_path / "burst_here.yaml")
        path.write_text(path.read_text().replace(str(spec), "here.yaml"))  # next to the scenario
        loaded = Scenario.load(path)
        assert loaded.cluster["file"] == "here.yaml" and loaded == Scenario.load(loaded.save(path))
        assert loaded.cluster_spec().address == lc.scheduler_address
        r = loaded.run()
        assert r["tasks_done"] == 12 and r["instances"] == 1 and r["cost_usd"] > 0
    with scheduler() as lc:
        spec.write_text(f"kind: address\naddress: {lc.scheduler_address}\n")
        small.save(tmp_path / "local.yaml")
        capsys.readouterr()
        assert main(["run", str(tmp_path / "local.yaml"), "--clock", "real", "--json", "--cluster",
                     str(spec)]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["tasks_done"] == 12 and out["instances"] == 1  # the scheduler's one worker


def test_a_cae_study_runs_its_real_solver_on_the_cluster_of_a_spec_file(tmp_path):
    """The CAE scenario's real clock on a spec file's scheduler: its workers are checked for
    numba, the solver runs there and matches the analytical decay."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      host="127.0.0.1", protocol="tcp://") as lc:
        (tmp_path / "here.yaml").write_text(f"kind: address\naddress: {lc.scheduler_address}\n")
        s = Scenario.example("cae_scaling").replace(
            workload={"steps": 50}, cluster={"kind": "file", "file": str(tmp_path / "here.yaml")})
        r = s.run("real")
    assert r["workers"] == 1 and r["steps"] == 50 and r["max_abs_error"] < 1e-4


def test_a_price_path_prices_the_result_as_the_simulator_bills():
    """The Result's bill is the run's own bill: spot seconds at the market's moving price."""
    from hpclab.catalog import default
    from hpclab.elastic.billing import bill
    from hpclab.elastic.faults import SpotMarket
    from hpclab.testing import assert_valid_result

    s = Scenario.example("burst").replace(pool={"spot_market": {"prices": "path"}},
                                          policy={"name": "spot-first", "params": {"spot_share": 1.0},
                                                  "hysteresis": False})
    r = s.run("virtual")
    assert_valid_result(r)
    per = r.instances.to_dataframe().reset_index()
    assert set(per["market"]) == {"spot"}
    priced = bill(per, default(), market=SpotMarket(prices="path").schedule(default(), s.seed))
    fixed = bill(per, default())
    assert r["cost_usd"] == pytest.approx(float(priced["total_cost"]), rel=1e-12)
    assert abs(float(fixed["total_cost"]) - r["cost_usd"]) > 1e-6 * r["cost_usd"]


def test_the_platform_default_is_the_shortfall_policy_and_reproduces_the_built_in_rule():
    """The platform's elastic pools are scaled by the registered ``shortfall`` policy, asked at
    its triggers; its replay equals the rule as it was built into the pools
    (benchmarks/builtin_rule.py) job for job, node for node."""
    import importlib
    from pathlib import Path

    import hpclab.platform as P
    from hpclab.elastic.policies import Shortfall

    monkey = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(monkey))
    try:
        builtin_rule = importlib.import_module("builtin_rule")
    finally:
        sys.path.remove(str(monkey))
    jobs = P.mixed_workload(3000, ai_share=0.3, cpu_nodes=64, gpu_nodes=8, load=0.9, seed=3)
    kw = dict(cpu_nodes=64, gpu_nodes=8, idle_timeout=200.0)
    with builtin_rule.builtin_rule():
        old = P.replay(jobs, "unified", **kw)
    new = P.replay(jobs, "unified", **kw)
    given = P.replay(jobs, "unified", scaler=Shortfall(idle_timeout=200.0), **kw)
    assert new.settings["scaler"] == "shortfall"
    assert len(new.instances) > 8, "the pools must scale for this test to mean anything"
    for r in (new, given):
        assert r.cost == old.cost
        assert r.jobs["end"].equals(old.jobs["end"])
        assert r.instances["end"].equals(old.instances["end"])


def test_the_shortfall_policy_runs_on_the_virtual_clock_and_the_real_pool():
    """The platform's rule on the other two clocks: it launches for the queue at once and
    retires idle instances after its timeout; both finish the burst and agree."""
    _burst_on_both_clocks("shortfall", {"idle_timeout": 30.0}, "shortfall", tol=0.25)


def test_shortfall_decides_nothing_when_its_triggers_do_not_hold():
    """A clock may skip asking it when there is no shortfall and no idle instance is due."""
    from hpclab.elastic.policies import Shortfall, Aggregates, attach_aggregates
    from hpclab.elastic.state import PoolLimits, PoolState

    p = Shortfall(idle_timeout=100.0)
    lim = PoolLimits(types=("ecs.c8a.8xlarge",), zones=("cn-hangzhou-h",))
    s = Aggregates(count={"ecs.c8a.8xlarge": 2}, serving_cores=32, spot_cores=0,
                     slots={"ecs.c8a.8xlarge": 16}, noticed=frozenset(),
                     idle=(("i1", "ecs.c8a.8xlarge", "on-demand", 16, 950.0),),
                     places={}, booting_cores=0, idle_cores=16)
    # 10 queued, 6 of the busy instance's 16 slots running: 10 free slots there; nothing due
    st = attach_aggregates(PoolState(time=1000.0, queued=10, running=6, instances=(), limits=lim,
                                  slots={"ecs.c8a.8xlarge": 16}), s)
    assert p.decide(st).empty and p.shortfall(st) == -1
    # 40 queued: 30 beyond the free slots, less the idle instance: one more instance
    st = attach_aggregates(PoolState(time=1000.0, queued=40, running=6, instances=(), limits=lim,
                                  slots={"ecs.c8a.8xlarge": 16}), s)
    d = p.decide(st)
    assert [(la.itype, la.count) for la in d.launch] == [("ecs.c8a.8xlarge", 1)] and not d.retire
    # nothing queued, the idle instance due: it retires
    st = attach_aggregates(PoolState(time=1050.0, queued=0, running=6, instances=(), limits=lim,
                                  slots={"ecs.c8a.8xlarge": 16}), s)
    assert p.decide(st).retire == ("i1",)
