"""``hpclab collectives``: time of a collective per rank count and message size, as a table.

    hpclab collectives --op allreduce --fabric erdma --ranks 2,16,256 --nbytes 8,1MiB,1GiB
    hpclab collectives --op allreduce --fabric rdma-hpn7,erdma,tcp-vpc --ranks 1024 \\
        --nbytes 256MiB --ranks-per-node 8 --intra-fabric nvlink --topology hpn7 --json
"""

from __future__ import annotations

import json

from hpclab._validate import MAX_RANKS, HpclabError, check_range


def register(sub) -> None:
    p = sub.add_parser("collectives", help="model the time of a collective (allreduce, ...) on a fabric",
                       description="Hockney alpha-beta-gamma cost of a collective; nbytes follows "
                                   "nccl-tests (busbw and algbw compare with nccl-tests output).")
    p.add_argument("--op", default="allreduce",
                   help="allreduce, allgather, reduce_scatter, broadcast, reduce, alltoall, barrier")
    p.add_argument("--fabric", default="erdma", help="catalog fabric name(s), comma-separated")
    p.add_argument("--algorithm", default="auto", help="auto (fastest, reported) or an algorithm name")
    p.add_argument("--ranks", default="2,16,256", help="rank counts, comma-separated")
    p.add_argument("--nbytes", default="8,1MiB,1GiB", help="message sizes, comma-separated (8, 64KiB, 1GiB)")
    p.add_argument("--ranks-per-node", type=str, default="1", help="ranks (GPUs/processes) per host")
    p.add_argument("--intra-fabric", default="shm", help="fabric inside a host (e.g. nvlink)")
    p.add_argument("--topology", default=None, help="topology preset (e.g. hpn7, vpc-placement-group)")
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    p.set_defaults(func=run)


def _ints(field: str, text: str, high: int = MAX_RANKS) -> list[int]:
    out = []
    for tok in str(text).split(","):
        out.append(check_range(field, tok.strip(), 1, high, integer=True))
    return out


def _sizes(text: str) -> list[int]:
    from hpclab.catalog import parse_size

    out = []
    for tok in str(text).split(","):
        n = parse_size(tok.strip(), field="nbytes")
        if n <= 0:
            raise HpclabError(f"nbytes must be > 0 (at most 1 PiB), got {tok.strip()!r}")
        out.append(n)
    return out


def rows(args) -> list[dict]:
    """The table as records (one per fabric, ranks, nbytes)."""
    import numpy as np

    from hpclab.network import algbw, best_algorithm, busbw, collective_time

    ranks = _ints("ranks", args.ranks)
    sizes = _sizes(args.nbytes)
    ppn = _ints("ranks-per-node", args.ranks_per_node)
    if len(ppn) != 1:
        raise HpclabError(f"ranks-per-node must be one whole number, got {args.ranks_per_node!r}")
    options = dict(ranks_per_node=ppn[0], intra_fabric=args.intra_fabric)
    if args.topology:
        options["topology"] = args.topology
    fabrics = [f.strip() for f in args.fabric.split(",") if f.strip()]
    if not fabrics:
        raise HpclabError("fabric must name at least one catalog fabric")
    p = np.array(ranks, dtype=float)[:, None]
    n = np.array(sizes, dtype=float)[None, :]
    out = []
    for fab in fabrics:
        t = np.broadcast_to(collective_time(args.op, n, p, fab, algorithm=args.algorithm, **options),
                            (len(ranks), len(sizes)))
        if args.algorithm == "auto":
            chosen = np.broadcast_to(best_algorithm(args.op, n, p, fab, **options), t.shape)
        else:
            chosen = np.full(t.shape, args.algorithm)
        with np.errstate(all="ignore"):
            alg_bw = np.broadcast_to(np.where(t > 0, algbw(args.op, n, np.where(t > 0, t, 1.0)), np.nan),
                                     t.shape)
            bus_bw = np.broadcast_to(np.where(t > 0, busbw(args.op, n, p, np.where(t > 0, t, 1.0)), np.nan),
                                     t.shape)
        for i, r in enumerate(ranks):
            for j, s in enumerate(sizes):
                out.append({"fabric": fab, "op": args.op, "ranks": r, "nbytes": s,
                            "algorithm": str(chosen[i, j]), "time_us": float(t[i, j]) * 1e6,
                            "algbw_GBps": _json_float(alg_bw[i, j] / 1e9),
                            "busbw_GBps": _json_float(bus_bw[i, j] / 1e9)})
    return out


def _json_float(x):
    import math

    x = float(x)
    return None if math.isnan(x) else x


def _human(n: int) -> str:
    for unit, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= f and n % f == 0:
            return f"{n // f} {unit}"
    return f"{n} B"


def run(args) -> int:
    records = rows(args)
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    head = ("fabric", "ranks", "nbytes", "algorithm", "time [us]", "algbw [GB/s]", "busbw [GB/s]")
    table = [(r["fabric"], str(r["ranks"]), _human(r["nbytes"]), r["algorithm"], f"{r['time_us']:.2f}",
              "-" if r["algbw_GBps"] is None else f"{r['algbw_GBps']:.3f}",
              "-" if r["busbw_GBps"] is None else f"{r['busbw_GBps']:.3f}") for r in records]
    widths = [max(len(h), *(len(row[k]) for row in table)) for k, h in enumerate(head)]
    print(f"# {args.op}: Hockney alpha-beta-gamma model (nccl-tests size convention)")
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for row in table:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    return 0
