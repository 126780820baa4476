"""An LLM pretraining run as a scenario (``kind: llm``): modelled only (no GPUs here).

The model (a preset of ``data/models.yaml``) on ``gpus`` GPUs of ``node`` joined by the
scenario's ``fabric``: the best layouts of the search (or the one given), the step time and
its breakdown, stragglers at that scale, and the run's goodput with failures (the catalog's
reliability figures) and checkpoints to ``storage`` at the Young/Daly interval (or ``interval``),
from a seeded Monte-Carlo of ``days`` of training.
"""

from __future__ import annotations

import numpy as np

from hpclab._validate import HpclabError
from hpclab.scenario import MAX_GPUS, Field

__all__ = ["LLMPretraining"]


class LLMPretraining:
    """``kind: llm`` — see the module docstring."""

    name = "llm"
    clocks = ("virtual",)
    #: it has no pool: the GPUs, node type and fabric are the workload's and ``fabric``
    pool_keys = ()
    #: of the run settings, only the seed (the failures drawn); no policy, no tick
    settings = ("seed",)
    #: the scenario's top-level network keys it reads (the backend fabric, its topology preset)
    network = ("fabric", "topology")
    fields = {
        "model": Field("str", "gpt3-175b"),
        "gpus": Field("int", 1024, lo=1, hi=MAX_GPUS),
        "node": Field("str", "lingjun.8xh800"),
        "global_batch": Field("int", None, lo=1, hi=10**9, optional=True),
        "layout": Field("mapping", None, optional=True,
                        help="tp, pp, dp, cp, micro_batch, interleave, zero, recompute (default: search)"),
        "top": Field("int", 5, lo=1, hi=1000),
        "storage": Field("str", "cpfs"),
        "interval": Field("float", None, lo=0, lo_open=True, hi=30 * 86400.0, optional=True,
                          help="checkpoint interval, s (default: the Young/Daly optimum)"),
        "days": Field("float", 30.0, lo=0, lo_open=True, hi=3650.0, help="days of training simulated"),
        "runs": Field("int", 100, lo=1, hi=100_000, help="Monte-Carlo runs"),
    }

    @staticmethod
    def check(s) -> None:
        from hpclab.workloads.llm.model import model_names

        if s.workload["model"] not in model_names():
            raise HpclabError(f"{s.source}: workload.model: must be one of {', '.join(model_names())}, "
                              f"got {s.workload['model']!r}")

    def run(self, s, *, progress: bool = False, out=None):
        from hpclab.result import Result, summary_dataset
        from hpclab.workloads.llm.parallel import step_time
        from hpclab.workloads.llm.plan import plan
        from hpclab.workloads.llm.reliability import goodput_curve, simulate_goodput

        p = s.workload
        fabric = s.fabric or "rdma-hpn7"
        res = plan(p["model"], p["gpus"], fabric=fabric, node=p["node"], global_batch=p["global_batch"],
                   top=p["top"], storages=(p["storage"],), topology=s.topology or "auto")
        cl, gb = res["cluster"], res["global_batch"]
        best = res["layouts"]
        if p["layout"] is not None:
            lay = dict(p["layout"])
            missing = [k for k in ("tp", "pp", "dp") if k not in lay]
            if missing:
                raise HpclabError(f"{s.source}: workload.layout: must give tp, pp and dp (their product "
                                  f"with cp the {p['gpus']:,} GPUs), missing {', '.join(missing)}")
            try:
                chosen = step_time(p["model"], cl, global_batch=gb, gpus=p["gpus"], **lay)
            except (TypeError, HpclabError) as exc:
                raise HpclabError(f"{s.source}: workload.layout: {exc}") from None
            if np.size(chosen["step_time"]) != 1:
                raise HpclabError(f"{s.source}: workload.layout: must be one layout (one value per "
                                  f"key), got {lay!r}")
            chosen = chosen.isel({d: 0 for d in chosen["step_time"].dims})  # the one layout
            step = float(chosen["step_time"])
            mfu = float(chosen["mfu"])
            tokens = float(chosen["tokens_per_s"])
        else:
            step = float(best["step_time"][0])
            mfu = float(best["mfu"][0])
            tokens = float(best["tokens_per_s"][0])
        good = goodput_curve(p["model"], cl, p["gpus"], storages=(p["storage"],))
        g = good.sel(storage=p["storage"])
        interval = p["interval"] or float(g["optimal_interval"])
        try:
            sim = simulate_goodput(interval, float(g["checkpoint_time"]), float(good.attrs["mtbf"]),
                                   float(good.attrs["restart"]), work=p["days"] * 86400.0, runs=p["runs"],
                                   seed=s.seed)
        except HpclabError as exc:
            raise HpclabError(f"{s.source}: workload.interval (with gpus, days, runs): {exc}") from None
        goodput = float(sim["goodput"][0])
        values = {"gpus": p["gpus"], "global_batch": int(gb), "step_time_s": step, "mfu": mfu,
                  "tokens_per_s": tokens, "effective_tokens_per_s": tokens * goodput,
                  "mtbf_s": float(good.attrs["mtbf"]), "checkpoint_s": float(g["checkpoint_time"]),
                  "checkpoint_interval_s": interval, "goodput": goodput,
                  "failures_per_run": float(sim["failures"][0])}
        units = {"gpus": "GPUs", "global_batch": "sequences", "step_time_s": "s", "mfu": "1",
                 "tokens_per_s": "1/s", "effective_tokens_per_s": "1/s", "mtbf_s": "s",
                 "checkpoint_s": "s", "checkpoint_interval_s": "s", "goodput": "1", "failures_per_run": "1"}
        return Result(scenario=s, clock="virtual", summary=summary_dataset(values, units, {"notes": ""}),
                      data={"layouts": best, "stragglers": res["stragglers"], "goodput": good,
                            "goodput_simulated": sim})
