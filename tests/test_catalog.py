"""The catalog: loading, units, sources, lookups and one-line errors for bad files."""

import math

import pytest

from hpclab import HpclabError, catalog
from hpclab.catalog import CatalogError, UnknownNameError


@pytest.fixture(scope="module")
def cat():
    return catalog.load()


def test_defaults_load_with_required_entries(cat):
    for name in ["tcp-vpc", "erdma", "rdma-hpn7", "nvlink", "shm"]:
        assert cat.fabric(name).alpha > 0
    for name in ["ecs.g8i.8xlarge", "ecs.c8i.8xlarge", "ecs.hfc8i.8xlarge", "ecs.c7.8xlarge",
                 "ecs.ebmgn8is.32xlarge", "lingjun.8xh800"]:
        inst = cat.instance(name)
        assert inst.vcpus > 0 and inst.price_spot <= inst.price_on_demand
    assert cat.storage("cpfs").throughput > cat.storage("oss").throughput


def test_units_convert_to_si(cat):
    erdma = cat.fabric("erdma")
    assert erdma.alpha == pytest.approx(8e-6)
    assert erdma.bandwidth == pytest.approx(400e9 / 8)  # 400 Gbit/s in bytes/s
    assert erdma.message_rate == pytest.approx(50e6)  # article: 50 M messages/s
    assert cat.fabric("tcp-vpc").message_rate == pytest.approx(60e6)  # article: 60 M packets/s
    assert cat.instance("ecs.c8i.8xlarge").memory == 64 * 2**30
    assert cat.instance("ecs.c8i.8xlarge").spot_notice == 300
    assert cat.instance("lingjun.8xh800").rdma_bandwidth == pytest.approx(3.2e12 / 8)  # HPN 7.0
    assert cat.storage("cipu-ebs").iops == pytest.approx(3.6e6)
    assert cat.storage("cipu-ebs").throughput == pytest.approx(50e9)
    rate = cat.reliability("h100-llama3").node_failure_rate
    assert rate == pytest.approx(419 / (2048 * 54 * 86400), rel=1e-3)


def test_every_figure_has_unit_and_source(cat):
    n = 0
    for kind in ["instance", "fabric", "storage", "zone", "generation", "reliability"]:
        for name in cat.names(kind):
            rec = getattr(cat, kind)(name)
            for fname, fig in rec.figures.items():
                assert fig.source.strip(), (kind, name, fname)
                assert fig.unit, (kind, name, fname)
                assert math.isfinite(fig.value)
                n += 1
    assert n > 100


def test_erdma_only_on_8th_generation(cat):
    assert cat.instance("ecs.c8i.8xlarge").erdma and "erdma" in cat.instance("ecs.c8i.8xlarge").fabrics
    assert not cat.instance("ecs.c7.8xlarge").erdma
    assert "erdma" not in cat.instance("ecs.c7.8xlarge").fabrics


def test_unknown_name_lists_known(cat):
    with pytest.raises(KeyError) as info:
        cat.instance("ecs.nope")
    msg = str(info.value)
    assert "unknown instance 'ecs.nope'" in msg and "ecs.c8i.8xlarge" in msg
    assert isinstance(info.value, UnknownNameError)
    with pytest.raises(KeyError, match="known: .*erdma"):
        cat.fabric("infiniband-9000")


def write(tmp_path, text, name="user.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_user_file_overrides_and_adds(tmp_path):
    p = write(tmp_path, """
fabrics:
  erdma:
    alpha: {value: 3, unit: us, source: "my measurement"}
  my-ib:
    source: "my lab"
    scope: inter-node
    alpha: 1 us
    bandwidth: 200 Gbit/s
""")
    cat = catalog.load(p)
    assert cat.fabric("erdma").alpha == pytest.approx(3e-6)
    assert cat.fabric("erdma").source("alpha") == "my measurement"
    assert cat.fabric("erdma").bandwidth == pytest.approx(50e9)  # untouched field kept
    assert cat.fabric("my-ib").bandwidth == pytest.approx(25e9)


@pytest.mark.parametrize("text, expected", [
    ("fabrics:\n  erdma:\n    alpha: {value: -1, unit: us, source: x}\n",
     r"user.yaml: fabric 'erdma': alpha must be > 0, got -1e-06"),
    ("fabrics:\n  erdma:\n    alpha: {value: .nan, unit: us, source: x}\n", r"fabric 'erdma': alpha must be finite"),
    ("fabrics:\n  erdma:\n    alpha: {value: 1, unit: parsec, source: x}\n",
     r"fabric 'erdma': alpha has unit 'parsec'; allowed: s, ms, us"),
    ("fabrics:\n  erdma:\n    alpha: 5\n", r"fabric 'erdma': alpha must be '<number> <unit>'"),
    ("fabrics:\n  erdma:\n    colour: blue\n", r"fabric 'erdma': unknown field 'colour'; allowed: "),
    ("fabrics:\n  x:\n    source: s\n    scope: inter-node\n    alpha: 1 us\n",
     r"fabric 'x': missing required field 'bandwidth'"),
    ("fabrics:\n  x:\n    scope: inter-node\n    alpha: {value: 1, unit: us}\n    bandwidth: 1 GB/s\n",
     r"fabric 'x': alpha has no source"),
    ("fabrics:\n  x:\n    source: s\n    scope: outer-space\n    alpha: 1 us\n    bandwidth: 1 GB/s\n",
     r"scope must be one of same-host, intra-node, inter-node"),
    ("fabrics: [1, 2\n", r"user.yaml: not valid YAML \(line"),
    ("nonsense:\n  a: 1\n", r"unknown section 'nonsense'"),
    ("instances:\n  ecs.c8i.8xlarge:\n    vcpus: -4\n", r"instance 'ecs.c8i.8xlarge': vcpus must be > 0, got -4"),
    ("instances:\n  ecs.c8i.8xlarge:\n    fabrics: [warp-drive]\n", r"fabrics lists unknown fabric 'warp-drive'"),
    ("zones:\n  cn-hangzhou-h:\n    capacity: {ecs.nope: 5}\n", r"capacity names unknown instance type 'ecs.nope'"),
    ("!!python/object/apply:os.system ['echo pwned']\n", r"not valid YAML"),
])
def test_bad_files_fail_with_one_line(tmp_path, text, expected):
    p = write(tmp_path, text)
    with pytest.raises(CatalogError, match=expected) as info:
        catalog.load(p)
    assert "\n" not in str(info.value)


def test_table_has_units_in_headers(cat):
    table = cat.table("fabric")
    assert "alpha [us]" in table.columns
    assert table.loc["erdma", "alpha [us]"] == pytest.approx(8.0)


def test_parse_size():
    assert catalog.parse_size("1MiB") == 2**20
    assert catalog.parse_size("8") == 8
    assert catalog.parse_size("1.5 GB") == 1_500_000_000


# -- the one YAML loader ---------------------------------------------------------------------------

def test_load_yaml_keeps_what_yaml_allows():
    from hpclab._yaml import load_yaml

    doc = load_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 5\nlist: [*b, *b]\n")
    assert doc["c"] == {"x": 5, "y": 2}  # a merge key may be overridden: not a duplicate
    assert doc["list"] == [{"x": 1, "y": 2}] * 2
    assert load_yaml("\ufeffa: 1\n") == {"a": 1} and load_yaml(b"\xef\xbb\xbfa: 1\n") == {"a": 1}  # BOM
    assert load_yaml("") is None and load_yaml("a: caf\u00e9\n") == {"a": "café"}


@pytest.mark.parametrize("text, expected", [
    ("a: 1\nb: 2\na: 3\n", r"^t\.yaml: not valid YAML \(line 3, column 1\): duplicate key 'a' \(first at line 1\)$"),
    ("a: &a [1, *a]\n", r"^t\.yaml: not valid YAML \(line 1, column \d+\): has a recursive alias"),
    ("[" * 100, r"^t\.yaml: not valid YAML \(line 1, column 65\): nested deeper than 64 levels$"),
    ("".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9 if i else ["lol"] * 9) + "]\n" for i in range(9)),
     r"^t\.yaml: not valid YAML \(line \d+, column \d+\): expands to more than 1,000,000 nodes"),
    ("a: &a '" + "x" * 100_000 + "'\nb: [" + ", ".join(["*a"] * 1000) + "]\n",
     r"expands to more than 67,108,864 characters"),
])
def test_load_yaml_refuses_in_one_line(text, expected):
    import time

    from hpclab._yaml import load_yaml

    t0 = time.perf_counter()
    with pytest.raises(HpclabError, match=expected) as info:
        load_yaml(text, source="t.yaml")
    assert "\n" not in str(info.value) and time.perf_counter() - t0 < 5


def test_duplicate_key_in_a_catalog_file_is_refused_not_last_wins(tmp_path):
    p = write(tmp_path, "fabrics:\n  erdma:\n    alpha: 500 s\n    alpha: 8 us\n")
    with pytest.raises(CatalogError, match=r"user\.yaml: not valid YAML \(line 4, column 5\): duplicate key 'alpha'"):
        catalog.load(p)


@pytest.mark.parametrize("figure, expected", [
    ("alpha: 1.2.3 us", r"alpha must be '<number> <unit>' with a number such as 5, 1.5 or 2e-6, got '1.2.3'"),
    ("alpha: e us", r"alpha must be '<number> <unit>'"),
    ("alpha: 1e300 us", r"alpha must be at most 3.15576e\+08 s \(10 years\), got 1e\+300 us"),
    ("bandwidth: 1e30 GB/s", r"bandwidth must be at most 1e\+15 B/s \(1 PB/s\)"),
])
def test_catalog_numbers_out_of_domain_get_one_line(tmp_path, figure, expected):
    p = write(tmp_path, f"fabrics:\n  erdma:\n    {figure}\n")
    with pytest.raises(CatalogError, match=expected):
        catalog.load(p)


def test_catalog_accepts_exponents_yaml_reads_as_text(tmp_path):
    p = write(tmp_path, "fabrics:\n  erdma:\n    alpha: {value: 8e-6, unit: s, source: x}\n")
    assert catalog.load(p).fabric("erdma").alpha == pytest.approx(8e-6)


def test_parse_size_domain():
    assert catalog.parse_size("1PiB") == 2**50
    for bad in ("2PiB", "1e300", -1, "nan", "1.2.3"):
        with pytest.raises(HpclabError, match=r"size"):
            catalog.parse_size(bad)
