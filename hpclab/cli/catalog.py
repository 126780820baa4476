"""``hpclab catalog``: list what the catalog knows, with units and sources."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("catalog", help="list instance types, fabrics, storage, zones")
    p.add_argument("kind", nargs="?", default="instance",
                   choices=["instance", "fabric", "storage", "zone", "generation", "reliability",
                            "market", "spot_option", "billing_rule", "unit_price", "exchange_rate"])
    p.add_argument("--file", action="append", default=[], metavar="YAML",
                   help="your own catalog file, loaded over the defaults (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from hpclab import catalog

    cat = catalog.load(*args.file)
    table = cat.table(args.kind)
    if args.json:
        print(json.dumps(json.loads(table.to_json(orient="index")), indent=2))
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print(table.to_string())
    return 0
