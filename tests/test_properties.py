"""Property-based tests (Hypothesis) of the parsers and the CLI's numeric options: any generated
input either parses into its domain or raises the project's one-line error (HpclabError) --
never another exception, never a hang (a deadline per example)."""

from __future__ import annotations

import argparse
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hpclab import HpclabError
from hpclab._validate import MAX_NBYTES, MAX_RANKS

# imports and the shipped catalog warmed once, so that no example's deadline pays for them
from hpclab import catalog as _catalog  # noqa: E402
from hpclab import platform as _platform  # noqa: E402, F401
from hpclab.cli import build_parser as _build_parser  # noqa: E402

_catalog.load()
_build_parser()

SETTINGS = settings(deadline=2000, max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_line(exc: BaseException) -> None:
    assert isinstance(exc, HpclabError), repr(exc)
    assert "\n" not in str(exc) and str(exc)


#: numbers written every way a person (or a fuzzer) might
number_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: f"{x:g}"),
    st.integers(min_value=-10**40, max_value=10**40).map(str),
    st.text(alphabet="0123456789.eE+-nafix ,", max_size=12),
)


# -- sizes ----------------------------------------------------------------------------------------

@SETTINGS
@given(st.one_of(number_text, st.tuples(number_text, st.sampled_from(["B", "KiB", "MB", "GiB", "PiB", "XB", ""]))
                 .map(lambda t: f"{t[0]}{t[1]}"), st.text(max_size=20)))
def test_parse_size_returns_a_size_in_domain_or_one_line(text):
    from hpclab.catalog import parse_size

    try:
        n = parse_size(text)
    except Exception as exc:  # noqa: BLE001 - the property: only HpclabError, one line
        one_line(exc)
        return
    assert isinstance(n, int) and 0 <= n <= MAX_NBYTES


@SETTINGS
@given(st.one_of(st.integers(min_value=-10**400, max_value=10**400), st.floats(allow_nan=True, allow_infinity=True)))
def test_parse_size_of_numbers(value):
    from hpclab.catalog import parse_size

    try:
        n = parse_size(value)
    except Exception as exc:  # noqa: BLE001
        one_line(exc)
        return
    assert 0 <= n <= MAX_NBYTES and math.isfinite(value) and 0 <= value <= MAX_NBYTES


# -- YAML and the catalog -------------------------------------------------------------------------

@SETTINGS
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300),
                 st.lists(st.sampled_from(["a:", " b:", "- ", "&x ", "*x", "[", "]", "{", "}", ": ", "\n",
                                           "<<: *x", "!!python/name:os.system", "\t", "'", '"', "1e3", "é"]),
                          max_size=40).map("".join)))
def test_load_yaml_parses_or_refuses_in_one_line(doc):
    from hpclab._yaml import load_yaml

    try:
        load_yaml(doc, source="gen.yaml")
    except Exception as exc:  # noqa: BLE001
        one_line(exc)
        assert str(exc).startswith("gen.yaml")


@settings(deadline=3000, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["alpha", "bandwidth", "mtu", "efficiency", "links_per_host", "message_rate"]),
       number=number_text, unit=st.sampled_from(["us", "s", "day", "GB/s", "Gbit/s", "B", "PiB", "1", "%", "M/s", "x"]),
       form=st.sampled_from(["compact", "mapping", "bare"]))
# a mapping whose text parses to an int key beside the str ones: the unknown keys were sorted
# together and raised TypeError instead of the one line
@example(field="alpha", number=",0,E", unit="us", form="mapping")
def test_catalog_figure_loads_into_its_domain_or_one_line(tmp_path, field, number, unit, form):
    from hpclab import catalog
    from hpclab.catalog._schema import MAX_BY_DIMENSION, MAX_INT, SCHEMA

    value = {"compact": f"'{number} {unit}'", "mapping": f"{{value: {number or 0}, unit: '{unit}', source: x}}",
             "bare": number or "0"}[form]
    p = tmp_path / "user.yaml"
    p.write_text(f"fabrics:\n  erdma:\n    {field}: {value}\n")
    try:
        fab = catalog.load(p).fabric("erdma")
    except Exception as exc:  # noqa: BLE001
        one_line(exc)
        assert "user.yaml" in str(exc)
        return
    dimension = SCHEMA["fabric"][2][field][0]
    got = getattr(fab, field)
    assert math.isfinite(got)
    high = MAX_INT[field] if dimension == "int" else MAX_BY_DIMENSION[dimension]
    assert abs(got) <= high


# -- traces ---------------------------------------------------------------------------------------

token = st.one_of(st.integers(min_value=-3, max_value=10**20).map(str), number_text,
                  st.sampled_from(["-1", "0", "1", "x", "nan", "1e30", "1e300"]))


@settings(deadline=3000, max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(token, min_size=16, max_size=19), min_size=0, max_size=6),
       comment=st.one_of(st.text(max_size=20), st.binary(max_size=20).map(lambda b: b.decode("latin-1"))),
       latin1=st.booleans())
def test_swf_reader_reads_into_the_swf_domain_or_one_line(tmp_path, rows, comment, latin1):
    from hpclab import platform as P
    from hpclab._validate import MAX_SECONDS

    text = "; Version: 2.2\n; Note: " + comment.replace("\n", " ") + "\n" + "".join(" ".join(r) + "\n" for r in rows)
    p = tmp_path / "gen.swf"
    p.write_bytes(text.encode("latin-1", "replace") if latin1 else text.encode("utf-8"))
    try:
        df = P.read_swf(p)
    except Exception as exc:  # noqa: BLE001
        one_line(exc)
        assert str(exc).startswith("gen.swf")
        return
    assert (df["job_id"] >= 0).all() and (df["job_id"] <= 10**9).all()
    assert df["run_time"].between(0, MAX_SECONDS).all() and df["submit"].between(0, MAX_SECONDS).all()
    assert (df["pods"] >= 1).all() and (df["pods"] <= 10**8).all()


csv_cell = st.one_of(token, st.sampled_from(["train", "infer", "data", "hpc", "", "8", "1"]))


@settings(deadline=3000, max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.sampled_from(["job_id", "submit", "kind", "pods", "slots", "run_time", "req_time",
                                        "priority", "note"]), min_size=4, max_size=9),
       rows=st.lists(st.lists(csv_cell, min_size=4, max_size=9), max_size=5))
def test_gpu_csv_reader_reads_into_its_domain_or_one_line(tmp_path, header, rows):
    from hpclab import platform as P
    from hpclab._validate import MAX_SECONDS

    p = tmp_path / "gen.csv"
    p.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    try:
        df = P.read_gpu_csv(p)
    except Exception as exc:  # noqa: BLE001
        one_line(exc)
        return
    assert df["submit"].between(0, MAX_SECONDS).all() and df["run_time"].between(0, MAX_SECONDS).all()
    assert (df["pods"] >= 1).all() and (df["pods"] <= 10**7).all() and (df["slots"] <= 4096).all()
    assert ((df["slots"] >= 1) | (df["kind"] == "hpc")).all()


# -- the CLI's numeric options --------------------------------------------------------------------

@SETTINGS
@given(ranks=number_text, nbytes=st.one_of(number_text, st.tuples(number_text, st.sampled_from(["", "KiB", "GiB"]))
                                            .map("".join)))
def test_collectives_cli_prints_a_table_or_exits_2(capsys, ranks, nbytes):
    from hpclab.cli import main

    try:
        code = main(["collectives", f"--ranks={ranks}", f"--nbytes={nbytes}", "--json"])
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if code == 0:
        import json

        for rec in json.loads(captured.out):
            assert 1 <= rec["ranks"] <= MAX_RANKS and 0 < rec["nbytes"] <= MAX_NBYTES
            assert math.isfinite(rec["time_us"]) and rec["time_us"] >= 0
    else:
        assert code == 2 and captured.err.count("\n") == 1 and captured.err.startswith("hpclab: error: ")


def _subparser(path):
    from hpclab.cli import build_parser

    parser = build_parser()
    sub = parser
    for name in path:
        action = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction))
        sub = action.choices[name]
    return parser, sub


CLI_OPTIONS = []  # (command path, BOUNDS table, option dest)


def _collect():
    from hpclab.cli import cae, llm, platform, pool, screen, simulate

    tables = [(("cae",), cae.BOUNDS), (("screen",), screen.BOUNDS), (("simulate",), simulate.BOUNDS),
              (("pool", "demo"), pool.BOUNDS), (("platform", "replay"), platform.REPLAY_BOUNDS),
              (("platform", "generate"), platform.GENERATE_BOUNDS)]
    for path, bounds in tables:
        for dest in bounds:
            CLI_OPTIONS.append((path, bounds, dest))
    del llm


_collect()


@settings(deadline=2000, max_examples=250)
@given(case=st.sampled_from(CLI_OPTIONS), value=number_text)
def test_cli_numeric_options_are_in_their_domain_or_exit_2(case, value):
    """Each bounded option, parsed as the CLI parses it and checked as the CLI checks it before any
    work: in its domain, or one line (exit 2 from argparse or an HpclabError)."""
    from hpclab.cli._args import check_bounds

    path, bounds, dest = case
    parser, sub = _subparser(path)
    option = next(a for a in sub._actions if a.dest == dest)
    argv = [*path, *(["x.swf"] if path == ("platform", "generate") or path == ("platform", "replay") else []),
            f"{option.option_strings[0]}={value}"]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2
        return
    try:
        check_bounds(args, {dest: bounds[dest]})
    except Exception as exc:  # noqa: BLE001
        one_line(exc)
        assert option.option_strings[0] in str(exc)
        return
    low, high, integer, *rest = bounds[dest]
    got = getattr(args, dest)
    assert math.isfinite(got) and low <= got <= high
    assert not (rest and rest[0]) or got > low
    assert not integer or got == int(got)


@pytest.mark.parametrize("path", [("llm", "plan")])
def test_llm_gpus_bound_is_checked_first(path, capsys):
    from hpclab.cli import main

    assert main([*path, "--gpus", str(10**12)]) == 2
    assert "--gpus must be a whole number in [1, 10,000,000]" in capsys.readouterr().err


#: values a cluster spec file might hold: scalars, option-like keys, nested lists and mappings
_spec_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**7), st.floats(allow_nan=True),
                         st.text(max_size=12))
_spec_key = st.one_of(st.sampled_from(["kind", "address", "options", "jobqueue", "slurm", "pbs", "cores",
                                       "memory", "processes", "walltime", "queue", "scheduler_options",
                                       "scheduler-options", "job-extra-directives", "host"]),
                      st.text(max_size=8))
_spec_value = st.recursive(_spec_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_spec_key, inner, max_size=4)), max_leaves=12)


@settings(deadline=3000, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(
    st.dictionaries(_spec_key, _spec_value, max_size=4),
    st.builds(lambda kind, opts: {"kind": kind, "options": opts},
              st.sampled_from(["slurm", "pbs", "address", "sge"]),
              st.dictionaries(_spec_key, _spec_value, max_size=5)),
    st.builds(lambda kind, opts: {"jobqueue": {kind: opts}}, st.sampled_from(["slurm", "lsf", "k8s"]),
              st.dictionaries(_spec_key, _spec_value, max_size=5)),
    _spec_value))
@example(doc={"kind": "slurm", "options": {"cores": 2, "memory": "2GB", "walltime": "00:10:00"}})
@example(doc={"jobqueue": {"pbs": {"cores": 1, "memory": "1GB", "resource-spec": "select=1"}}})
@example(doc={"kind": "address", "address": "tcp://10.0.0.5:8786"})
def test_cluster_spec_file_loads_into_its_domain_or_one_line(tmp_path, doc):
    """A cluster spec file (hpclab run --cluster FILE) becomes a checked ClusterSpec or one line."""
    import yaml

    from hpclab.elastic._cluster_spec import SPEC_KINDS, load_cluster_spec

    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    try:
        spec = load_cluster_spec(path)
    except Exception as exc:  # noqa: BLE001 - the property: nothing but the one-line error
        one_line(exc)
        assert str(exc).startswith("cluster.yaml")
        return
    assert spec.kind in SPEC_KINDS
    if spec.kind == "address":
        assert spec.address.startswith(("tcp://", "tls://")) or "://" not in spec.address
    else:
        kw = spec.cluster_kwargs()
        assert kw["processes"] == 1 and isinstance(kw["cores"], int) and kw["cores"] >= 1
        assert isinstance(kw["scheduler_options"], dict)
