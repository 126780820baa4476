"""``hpclab llm``: plan an LLM pretraining run (best layouts, goodput) and check the model
against published runs."""

from __future__ import annotations

from hpclab._validate import MAX_GPUS, MAX_TASKS, check_range
from hpclab.cli._args import check_bounds, print_json


def register(sub) -> None:
    p = sub.add_parser("llm", help="LLM pretraining: best parallel layouts, step time, goodput")
    lsub = p.add_subparsers(dest="llm_command", metavar="ACTION")
    pl = lsub.add_parser("plan", help="rank parallel layouts and estimate goodput")
    pl.add_argument("--model", default="gpt3-175b", help="preset name (default gpt3-175b)")
    pl.add_argument("--gpus", type=int, default=1024, help="number of GPUs (default 1024)")
    pl.add_argument("--fabric", default="rdma-hpn7", help="backend fabric (catalog name)")
    pl.add_argument("--node", default="lingjun.8xh800", help="GPU instance type (catalog name)")
    pl.add_argument("--global-batch", type=int, default=None,
                    help="sequences per step (default: about max(4M, 1,024 x GPUs) tokens, as published runs)")
    pl.add_argument("--top", type=int, default=5, help="layouts to print (default 5)")
    pl.add_argument("--json", action="store_true", help="print the plan as JSON")
    pl.add_argument("--efficiency", type=float, default=None,
                    help="share of peak FLOP/s in matrix products (default: calibrated)")
    pl.set_defaults(func=run_plan)
    va = lsub.add_parser("validate", help="compare the model with published training runs")
    va.add_argument("--json", action="store_true", help="print the rows as JSON")
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
    say = (lambda *a, **k: None) if args.json else print
    say(f"{args.model} on {args.gpus} GPUs: {cl.describe()}")
    how = ("default: about max(4M, 1,024 x GPUs) tokens, as published runs scale it"
           if res["default_batch"] else "--global-batch")
    tokens = res["global_batch"] * llm.transformer(args.model).seq_length
    say(f"global batch {res['global_batch']:,} sequences ({tokens / 1e6:.1f}M tokens; {how}); "
          f"{lay.attrs['layouts_evaluated']} layouts evaluated; efficiency "
          f"{lay.attrs['efficiency']:.3f} of peak FLOP/s in matrix products, "
          f"{lay.attrs['memory_efficiency']:.3f} of HBM bandwidth in element-wise kernels")
    df = pd.DataFrame({
        "tp": lay.tp.values, "pp": lay.pp.values, "dp": lay.dp.values, "cp": lay.cp.values,
        "ep": lay.ep.values, "mb": lay.micro_batch.values, "v": lay.interleave.values, "zero": lay.zero.values,
        "recompute": lay.recompute.values,
        "step [s]": lay.step_time.values.round(3), "MFU [%]": (100 * lay.mfu.values).round(1),
        "tokens/s": lay.tokens_per_s.values.round(0).astype(int),
        "bubble [s]": lay.bubble.values.round(3), "exposed comm [s]":
            (lay.tp_comm + lay.cp_comm + lay.ep_comm + lay.pp_comm + lay.dp_comm).values.round(3),
        "memory [GB]": (lay.total_memory.values / 1e9).round(1)})
    df.index = pd.RangeIndex(1, len(df) + 1, name="rank")
    strag = res["stragglers"]
    if args.json:
        good_rows = {str(s): {"checkpoint_s": float(good.sel(storage=s).checkpoint_time),
                              "optimal_interval_s": float(good.sel(storage=s).optimal_interval),
                              "goodput": float(good.sel(storage=s).optimal_goodput)}
                     for s in good.storage.values}
        return print_json({"model": args.model, "gpus": args.gpus, "cluster": cl.describe(),
                           "global_batch": res["global_batch"], "default_batch": bool(res["default_batch"]),
                           "layouts": df, "step_with_stragglers_s": float(strag.expected_step[0]),
                           "mtbf_s": float(good.attrs["mtbf"]), "goodput": good_rows,
                           "networks": network_rows(res["networks"])})
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(df.to_string())
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
    print()
    print("\n".join(network_lines(res["networks"])))
    return 0


def network_rows(nets) -> list:
    """The front-end/back-end comparison (:func:`hpclab.workloads.llm.network_separation`) as
    JSON rows, one per set-up and checkpoint mode; seconds, bytes/s and shares as named."""
    rows = []
    for setup in nets.setup.values:
        for mode in nets.checkpoint.values:
            n = nets.sel(setup=setup, checkpoint=mode)
            ck = float(n.step_time_checkpointing)
            rows.append({"setup": str(setup), "checkpoint": str(mode), "step_s": float(n.step_time),
                         "step_while_checkpointing_s": None if ck != ck else ck,
                         "data_load_stall_s": float(n.data_load_stall),
                         "collective_share": float(n.collective_share),
                         "checkpoint_write_s": float(n.checkpoint_time),
                         "checkpoint_cost_s": float(n.checkpoint_cost),
                         "checkpoint_rate_Bps": float(n.storage_rate),
                         "interval_s": float(n.optimal_interval), "goodput": float(n.goodput),
                         "effective_tokens_per_s": float(n.tokens_per_s)})
    return rows


def network_lines(nets) -> list:
    """The plan's section on storage traffic: shared back-end NICs against a separate front-end."""
    a = nets.attrs
    out = [f"storage traffic ({a['storage']}: {a['storage_per_host'] / 1e9:.2f} GB/s per host) on the "
           f"back-end NICs (shared: {a['storage_nics']} of {a['backend_links']} x "
           f"{a['backend_link'] * 8 / 1e9:.0f} Gbit/s effective, max-min fair with the collectives) or on "
           f"a separate front-end NIC ({a['frontend_nic'] * 8 / 1e9:.0f} Gbit/s):"]
    for mode in nets.checkpoint.values:
        for setup in nets.setup.values:
            n = nets.sel(setup=setup, checkpoint=mode)
            during = (f"{float(n.step_time_checkpointing):.3f} s while it drains "
                      f"(collectives keep {100 * float(n.collective_share):.1f}%)"
                      if mode == "async" else "training paused while it writes")
            out.append(f"  {mode:>8} checkpoint, {setup:>8}: step {float(n.step_time):.3f} s, {during}; "
                       f"write {float(n.checkpoint_time):.1f} s costs {float(n.checkpoint_cost):.3f} s; "
                       f"goodput {100 * float(n.goodput):.2f}% every {float(n.optimal_interval) / 60:.1f} min, "
                       f"{float(n.tokens_per_s):,.0f} tokens/s")
    for mode in nets.checkpoint.values:
        sh, se = (nets.sel(setup=x, checkpoint=mode) for x in ("shared", "separate"))
        step_sh = float(sh.step_time_checkpointing if mode == "async" else sh.step_time)
        step_se = float(se.step_time_checkpointing if mode == "async" else se.step_time)
        out.append(f"  separate vs shared, {mode}: step {100 * (step_sh / step_se - 1):+.2f}% on shared NICs"
                   f"{' while checkpointing' if mode == 'async' else ''}, goodput "
                   f"{100 * (float(se.goodput) - float(sh.goodput)):+.3f} points for the separate network")
    out.append(f"  (not modelled: {a['not_modelled']})")
    return out


def run_validate(args) -> int:
    import numpy as np
    import pandas as pd

    from hpclab.workloads import llm

    ds = llm.validate()
    df = ds.to_dataframe()[["metric", "layout", "layout_source", "published", "predicted",
                            "relative_error", "within_tolerance", "calibration"]]
    misses = [m for m in ds.attrs["known_misses"].split(", ") if m]
    outside = set(ds.row.values[~ds.within_tolerance.values])
    if getattr(args, "json", False):
        print_json({"rows": df, "tolerance": float(ds.attrs["tolerance"]), "known_misses": misses})
        return 0 if outside <= set(misses) else 1
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(df.round(3).to_string())
    for src in dict.fromkeys(ds.source.values):
        err = np.abs(ds.relative_error.values[ds.source.values == src])
        print(f"{src:>12}: {err.size:2d} rows, mean |error| {100 * err.mean():4.1f}%, "
              f"max {100 * err.max():4.1f}%")
    print(f"efficiency {ds.attrs['efficiency_by_generation']} (matrix products), memory efficiency "
          f"{ds.attrs['memory_efficiency']:.4f} (element-wise), {ds.attrs['fitted_settings']}, "
          f"fitted on {ds.attrs['calibration_rows']}; "
          f"tolerance {100 * ds.attrs['tolerance']:.0f}%: {int(ds.within_tolerance.sum())}/"
          f"{ds.sizes['row']} rows within")
    misses = [m for m in ds.attrs["known_misses"].split(", ") if m]
    if misses:
        print(f"known misses (data/reference/llm_training.yaml, calibration.known_misses): {', '.join(misses)}")
    outside = set(ds.row.values[~ds.within_tolerance.values])
    return 0 if outside <= set(misses) else 1
