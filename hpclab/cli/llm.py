"""``hpclab llm``: plan an LLM pretraining run (best layouts, goodput) and check the model
against published runs."""

from __future__ import annotations

from hpclab._validate import MAX_GPUS, MAX_TASKS, check_range
from hpclab.cli._args import check_bounds


def register(sub) -> None:
    p = sub.add_parser("llm", help="LLM pretraining: best parallel layouts, step time, goodput")
    lsub = p.add_subparsers(dest="llm_command", metavar="ACTION")
    pl = lsub.add_parser("plan", help="rank parallel layouts and estimate goodput")
    pl.add_argument("--model", default="gpt3-175b", help="preset name (default gpt3-175b)")
    pl.add_argument("--gpus", type=int, default=1024, help="number of GPUs (default 1024)")
    pl.add_argument("--fabric", default="rdma-hpn7", help="backend fabric (catalog name)")
    pl.add_argument("--node", default="lingjun.8xh800", help="GPU instance type (catalog name)")
    pl.add_argument("--global-batch", type=int, default=None, help="sequences per step (default ~4M tokens)")
    pl.add_argument("--top", type=int, default=5, help="layouts to print (default 5)")
    pl.add_argument("--efficiency", type=float, default=None,
                    help="share of peak FLOP/s in matrix products (default: calibrated)")
    pl.set_defaults(func=run_plan)
    va = lsub.add_parser("validate", help="compare the model with published training runs")
    va.set_defaults(func=run_validate)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_plan(args) -> int:
    import pandas as pd

    from hpclab.workloads import llm

    check_bounds(args, {"gpus": (1, MAX_GPUS, True)})  # before any layout is enumerated
    for field, high in (("global_batch", MAX_TASKS), ("top", 1000)):  # named as llm.plan names them
        if getattr(args, field) is not None:
            check_range(field, getattr(args, field), 1, high, integer=True)

    res = llm.plan(args.model, args.gpus, fabric=args.fabric, node=args.node,
                   global_batch=args.global_batch, top=args.top, efficiency=args.efficiency)
    lay, good, cl = res["layouts"], res["goodput"], res["cluster"]
    print(f"{args.model} on {args.gpus} GPUs: {cl.describe()}")
    print(f"global batch {res['global_batch']} sequences; {lay.attrs['layouts_evaluated']} layouts "
          f"evaluated; efficiency {lay.attrs['efficiency']:.3f} of peak in matrix products")
    df = pd.DataFrame({
        "tp": lay.tp.values, "pp": lay.pp.values, "dp": lay.dp.values, "cp": lay.cp.values,
        "mb": lay.micro_batch.values, "v": lay.interleave.values, "zero": lay.zero.values,
        "recompute": lay.recompute.values,
        "step [s]": lay.step_time.values.round(3), "MFU [%]": (100 * lay.mfu.values).round(1),
        "tokens/s": lay.tokens_per_s.values.round(0).astype(int),
        "bubble [s]": lay.bubble.values.round(3), "exposed comm [s]":
            (lay.tp_comm + lay.cp_comm + lay.pp_comm + lay.dp_comm).values.round(3),
        "memory [GB]": (lay.total_memory.values / 1e9).round(1)})
    df.index = pd.RangeIndex(1, len(df) + 1, name="rank")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(df.to_string())
    strag = res["stragglers"]
    slow = float(strag.expected_step[0])
    print(f"\nwith stragglers (jitter {100 * strag.attrs['jitter']:.0f}% per rank, a rank "
          f"{100 * strag.attrs['slowdown']:.0f}% slow with probability {strag.attrs['slow_probability']:g} "
          f"per step): best step {slow:.3f} s on {args.gpus} GPUs "
          f"(x{float(strag.slowdown_factor[0]):.3f})")
    hours = good.attrs["mtbf"] / 3600
    print(f"\ngoodput ({good.attrs['nodes']} nodes, MTBF {hours:.1f} h, restart "
          f"{good.attrs['restart'] / 60:.0f} min, checkpoint {good.attrs['checkpoint_bytes'] / 1e12:.2f} TB):")
    for s in good.storage.values:
        g = good.sel(storage=s)
        print(f"  {s:>5}: checkpoint write {float(g.checkpoint_time):8.1f} s, Young/Daly interval "
              f"{float(g.optimal_interval) / 60:6.1f} min, effective training time "
              f"{100 * float(g.optimal_goodput):.2f}%, effective "
              f"{float(lay.tokens_per_s[0]) / float(strag.slowdown_factor[0]) * float(g.optimal_goodput):,.0f} tokens/s")
    return 0


def run_validate(args) -> int:
    import pandas as pd

    from hpclab.workloads import llm

    ds = llm.validate()
    df = ds.to_dataframe()[["metric", "layout", "published", "predicted", "relative_error",
                            "within_tolerance", "calibration"]]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(df.round(3).to_string())
    print(f"efficiency {ds.attrs['efficiency']:.4f} calibrated on {ds.attrs['calibration_row']}; "
          f"tolerance {100 * ds.attrs['tolerance']:.0f}%: {int(ds.within_tolerance.sum())}/"
          f"{ds.sizes['row']} rows within")
    return 0 if bool(ds.within_tolerance.all()) else 1
