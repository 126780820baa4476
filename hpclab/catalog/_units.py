"""Units the catalog understands, each converted to SI (seconds, bytes, bytes/s, USD/s ...).

A catalog figure is ``{value: 5, unit: us, source: "..."}``; the loader checks that the unit
belongs to the dimension the field expects and converts the value to the base unit.
"""

from __future__ import annotations

# dimension -> {unit: factor to the base unit}
UNITS: dict[str, dict[str, float]] = {
    "time": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0, "day": 86400.0},
    "bytes": {"B": 1.0, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
              "KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40},
    "bandwidth": {"B/s": 1.0, "MB/s": 1e6, "GB/s": 1e9, "TB/s": 1e12, "GiB/s": 2.0**30,
                  "bit/s": 1 / 8, "Mbit/s": 1e6 / 8, "Gbit/s": 1e9 / 8, "Tbit/s": 1e12 / 8},
    "rate": {"1/s": 1.0, "k/s": 1e3, "M/s": 1e6},  # messages, packets or I/O operations per second
    "frequency": {"1/h": 1 / 3600.0, "1/day": 1 / 86400.0, "1/s": 1.0},  # events per unit time
    "price": {"USD/h": 1 / 3600.0, "USD/s": 1.0},  # base: USD per second
    "flops": {"FLOP/s": 1.0, "TFLOP/s": 1e12, "PFLOP/s": 1e15},
    "ratio": {"1": 1.0, "%": 0.01},
    "count": {"count": 1.0},
    # published prices kept in their own currency (converted with the catalog's exchange rate)
    "cny": {"CNY": 1.0},
    "cny_per_vcpu": {"CNY/vCPU/s": 1.0, "CNY/vCPU/h": 1 / 3600.0},
    "cny_per_gib": {"CNY/GiB/s": 1.0, "CNY/GiB/h": 1 / 3600.0},
    "exchange": {"CNY/USD": 1.0},
}

BASE_UNIT = {"time": "s", "bytes": "B", "bandwidth": "B/s", "rate": "1/s", "frequency": "1/s",
             "price": "USD/s", "flops": "FLOP/s", "ratio": "1", "count": "count",
             "cny": "CNY", "cny_per_vcpu": "CNY/vCPU/s",
             "cny_per_gib": "CNY/GiB/s", "exchange": "CNY/USD"}


def to_base(dimension: str, value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` to the base unit of ``dimension``; KeyError if unknown."""
    return float(value) * UNITS[dimension][unit]


def parse_size(text: str | int | float) -> int:
    """Parse a byte size such as ``8``, ``"1MiB"``, ``"1.5GB"`` or ``"64 KiB"`` into bytes."""
    from hpclab._validate import HpclabError

    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    s = str(text).strip()
    factor, number = 1.0, s
    for unit in sorted(UNITS["bytes"], key=len, reverse=True):
        if s.endswith(unit):
            factor, number = UNITS["bytes"][unit], s[: -len(unit)].strip()
            break
    try:
        return int(round(float(number) * factor))
    except ValueError:
        raise HpclabError(f"size {text!r} is not a byte size; write a number with an optional unit "
                          f"({', '.join(UNITS['bytes'])}), e.g. 8, 64KiB, 1GiB") from None
