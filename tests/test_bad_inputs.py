"""A table of bad inputs across every subcommand and the public API.

Each row must end with exit code 2 (CLI) or an :class:`hpclab.HpclabError` (API) whose message
is ONE line naming the field, file or line, with no traceback, in under 10 s. The CLI runs
in-process (``hpclab.cli.main``) so the whole table takes seconds, not minutes.

Classes (the ``CLASS`` column, counted in ``test_table_is_large_enough``): ``range`` (a number
outside its domain), ``number`` (not a number: NaN, inf, text), ``yaml`` (catalog files: syntax,
duplicates, alias bombs, nesting, encoding, size, figures), ``trace`` (SWF and CSV files),
``path`` (output files and folders), ``address`` (Dask scheduler addresses), ``name`` (unknown
names and choices), ``api`` (the Python API).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from hpclab import HpclabError
from hpclab.cli import main

BIG = "1" + "0" * 32  # a 33-digit whole number
HUGE = "1" + "0" * 400

# -- files the table reads ----------------------------------------------------------------------

_FAB = "fabrics:\n  erdma:\n"
_INST = "instances:\n  ecs.c8i.8xlarge:\n"
_BOMB = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10 if i else ["x"] * 10) + "]\n"
                for i in range(8)) + "fabrics:\n  erdma:\n    description: *l7\n"
CATALOGS = {  # name -> (content, needle)
    "dup_key.yaml": (_FAB + "    alpha: 500 s\n    alpha: 8 us\n", "duplicate key 'alpha'"),
    "dup_entry.yaml": ("fabrics:\n  erdma: {alpha: 500 s}\n  erdma: {alpha: 8 us}\n", "duplicate key 'erdma'"),
    "dup_section.yaml": (_FAB + "    alpha: 9 us\n" + _FAB + "    alpha: 8 us\n", "duplicate key 'fabrics'"),
    "bomb.yaml": (_BOMB, "alias bomb"),
    "deep.yaml": ("fabrics: " + "[" * 200 + "]" * 200 + "\n", "nested deeper than 64"),
    "deep_map.yaml": ("".join("  " * i + f"k{i}:\n" for i in range(100)), "nested deeper than 64"),
    "recursive.yaml": ("a: &a [1, *a]\n", "recursive alias"),
    "python.yaml": ("!!python/object/apply:os.system ['echo pwned']\n", "python.yaml: not valid YAML"),
    "syntax.yaml": ("fabrics: [1, 2\n", "syntax.yaml: not valid YAML (line"),
    "tab.yaml": ("fabrics:\n\terdma: 1\n", "tab.yaml: not valid YAML"),
    "list.yaml": ("- 1\n- 2\n", "expected a mapping of sections"),
    "section.yaml": ("fabrics: [1, 2]\n", "section 'fabrics' must map names"),
    "unknown_section.yaml": ("galaxies:\n  x: 1\n", "unknown section 'galaxies'"),
    "entry.yaml": ("fabrics:\n  erdma: 5\n", "entry must be a mapping"),
    "alpha_dots.yaml": (_FAB + "    alpha: 1.2.3 us\n", "alpha must be '<number> <unit>'"),
    "alpha_e.yaml": (_FAB + "    alpha: e us\n", "alpha must be '<number> <unit>'"),
    "alpha_huge.yaml": (_FAB + "    alpha: 1e300 us\n", "alpha must be at most"),
    "alpha_neg.yaml": (_FAB + "    alpha: -1 us\n", "alpha must be > 0"),
    "alpha_nan.yaml": (_FAB + "    alpha: nan us\n", "alpha must be finite"),
    "alpha_inf.yaml": (_FAB + "    alpha: {value: .inf, unit: us, source: x}\n", "alpha must be finite"),
    "alpha_unit.yaml": (_FAB + "    alpha: 5 parsec\n", "alpha has unit 'parsec'"),
    "alpha_bare.yaml": (_FAB + "    alpha: 5\n", "alpha must be '<number> <unit>'"),
    "alpha_text.yaml": (_FAB + "    alpha: {value: fast, unit: us, source: x}\n", "alpha must be '<number> <unit>'"),
    "alpha_keys.yaml": (_FAB + "    alpha: {value: 1, unit: us, colour: red}\n", "alpha has unknown keys"),
    "efficiency.yaml": (_FAB + "    efficiency: 1.5\n", "efficiency must be in (0, 1]"),
    "mtu.yaml": (_FAB + "    mtu: 1e300 B\n", "mtu must be at most"),
    "links.yaml": (_FAB + "    links_per_host: 0\n", "links_per_host must be > 0"),
    "links_big.yaml": (_FAB + "    links_per_host: " + BIG + "\n", "links_per_host must be at most 1,000"),
    "scope.yaml": (_FAB + "    scope: outer-space\n", "scope must be one of"),
    "field.yaml": (_FAB + "    colour: blue\n", "unknown field 'colour'"),
    "source_ref.yaml": (_FAB + "    alpha: {value: 1, unit: us, source: '@nowhere'}\n", "source '@nowhere' is not defined"),
    "vcpus_big.yaml": (_INST + "    vcpus: " + BIG + "\n", "vcpus must be at most 100,000, got a 33-digit number"),
    "vcpus_huge.yaml": (_INST + "    vcpus: " + HUGE + "\n", "vcpus must be at most 100,000, got a 401-digit number"),
    "vcpus_frac.yaml": (_INST + "    vcpus: 4.5\n", "vcpus must be a whole number"),
    "vcpus_bool.yaml": (_INST + "    vcpus: true\n", "vcpus must be a whole number"),
    "vcpus_neg.yaml": (_INST + "    vcpus: -4\n", "vcpus must be > 0"),
    "gpus_big.yaml": (_INST + "    gpus: 1000000\n", "gpus must be at most 1,000"),
    "memory_huge.yaml": (_INST + "    memory: 1e30 GB\n", "memory must be at most"),
    "memory_digits.yaml": (_INST + "    memory: {value: " + HUGE + ", unit: B}\n", "memory must be at most"),
    "price.yaml": (_INST + "    price_on_demand: 1e9 USD/h\n", "price_on_demand must be at most"),
    "spot_price.yaml": (_INST + "    price_spot: 1000 USD/h\n", "price_spot must be <= price_on_demand"),
    "boot.yaml": (_INST + "    boot_time: 4000 day\n", "boot_time must be at most"),
    "erdma_bool.yaml": (_INST + "    erdma: maybe\n", "erdma must be true or false"),
    "fabric_list.yaml": (_INST + "    fabrics: [warp-drive]\n", "unknown fabric 'warp-drive'"),
    "capacity.yaml": ("zones:\n  cn-hangzhou-h:\n    capacity: {ecs.c8i.8xlarge: " + BIG + "}\n",
                      "capacity[ecs.c8i.8xlarge] must be a whole number of cores"),
    "capacity_name.yaml": ("zones:\n  cn-hangzhou-h:\n    capacity: {ecs.nope: 5}\n", "unknown instance type 'ecs.nope'"),
    "speed.yaml": ("generations:\n  x:\n    source: s\n    speed_factor: 1e9\n", "speed_factor must be at most"),
    "reclaim.yaml": ("zones:\n  cn-hangzhou-h:\n    spot_reclaim_rate: 100 1/s\n", "spot_reclaim_rate must be at most"),
}
BINARY = {  # name -> (bytes, needle)
    "latin1.yaml": (_FAB.encode() + b"    description: caf\xe9\n", "latin1.yaml:3: not UTF-8 text (byte 0xe9"),
    "binary.yaml": (bytes(range(256)) * 4, "binary.yaml:2: not UTF-8 text (byte 0x80"),
    "nul.yaml": (b"fabrics:\n  erdma:\n    description: a\x00b\n", "nul.yaml:3: not valid YAML: character 0x0000"),
    "big.yaml": (b"# padding\n" * 110_000, "YAML files are read up to 1,048,576 bytes"),
}
_SWF_OK = "1 0 10 100 4 -1 -1 4 200 -1 1 1 1 1 1 1 -1 -1"


def _swf(**fields):
    row = _SWF_OK.split()
    for k, v in fields.items():
        row[int(k[1:]) - 1] = v
    return "; Version: 2.2\n" + _SWF_OK + "\n" + " ".join(row) + "\n"


SWFS = {
    "job_id.swf": (_swf(f1="1e30"), "job_id.swf:3: field 1 (job number) must be at most"),
    "run_time.swf": (_swf(f4="1e300"), "run_time.swf:3: field 4 (run time) must be at most"),
    "procs.swf": (_swf(f5="1e15", f8="1e15"), "procs.swf:3: field 5 (allocated processors) must be at most"),
    "req_procs.swf": (_swf(f8="1e15"), "req_procs.swf:3: field 8 (requested processors) must be at most"),
    "req_time.swf": (_swf(f9="1e300"), "req_time.swf:3: field 9 (requested time) must be at most"),
    "submit_big.swf": (_swf(f2="1e300"), "submit_big.swf:3: field 2 (submit time) must be at most"),
    "submit_neg.swf": (_swf(f2="-5"), "submit_neg.swf:3: field 2 (submit time) must be >= 0"),
    "frac_procs.swf": (_swf(f5="2.5"), "frac_procs.swf:3: field 5 (allocated processors) must be a whole"),
    "text.swf": (_swf(f4="x"), "text.swf:3: field 4 (run time) must be a number, got 'x'"),
    "nan.swf": (_swf(f4="nan"), "nan.swf:3: field 4 (run time) must be finite"),
    "inf.swf": (_swf(f9="inf"), "inf.swf:3: field 9 (requested time) must be finite"),
    "count.swf": ("; Version: 2.2\n1 0 10 100 4\n", "count.swf:2: expected 18 fields (SWF), got 5"),
    "empty.swf": ("", "empty.swf: empty trace"),
    "comments.swf": ("; Version: 2.2\n; Computer: x\n", "comments.swf: empty trace"),
}
SWF_BYTES = {
    "latin1_job.swf": (b"; Version: 2.2\n1 0 10 100 4 -1 -1 4 200 -1 1 1 1 1 1 1 -1 \xe9\n",
                       "latin1_job.swf:2: not UTF-8 text (byte 0xe9"),
    "binary.swf": (bytes(range(256)) * 8, "binary.swf:2: not UTF-8 text (byte 0x80"),
}
_CSV_HEAD = "job_id,submit,kind,pods,slots,run_time\n"
CSVS = {
    "repeat.csv": ("job_id,submit,kind,pods,pods,slots,run_time\n1,0,train,1,1,8,10\n",
                   "repeat.csv:1: header repeats column(s) 'pods'"),
    "neg_submit.csv": (_CSV_HEAD + "1,-5,train,1,8,10\n", "neg_submit.csv:2: column 'submit' must be a number in [0,"),
    "pods_big.csv": (_CSV_HEAD + "1,0,train,1e18,8,10\n", "pods_big.csv:2: column 'pods' must be a whole number in [1, 10,000,000]"),
    "slots_big.csv": (_CSV_HEAD + "1,0,train,1,100000,10\n", "slots_big.csv:2: column 'slots' must be a whole number in [0, 4,096]"),
    "slots_zero.csv": (_CSV_HEAD + "1,0,train,1,0,10\n", "slots_zero.csv:2: column 'slots' must be >= 1"),
    "pods_frac.csv": (_CSV_HEAD + "1,0,train,2.5,8,10\n", "pods_frac.csv:2: column 'pods' must be a whole number"),
    "run_nan.csv": (_CSV_HEAD + "1,0,train,1,8,nan\n", "run_nan.csv:2: column 'run_time' must be a number"),
    "run_inf.csv": (_CSV_HEAD + "1,0,train,1,8,inf\n", "run_inf.csv:2: column 'run_time' must be a number"),
    "run_big.csv": (_CSV_HEAD + "1,0,train,1,8,1e300\n", "run_big.csv:2: column 'run_time' must be a number in"),
    "req_neg.csv": ("job_id,submit,kind,pods,slots,run_time,req_time\n1,0,train,1,8,10,-1\n",
                    "req_neg.csv:2: column 'req_time' must be a number in [0,"),
    "job_big.csv": (_CSV_HEAD + "1e30,0,train,1,8,10\n", "job_big.csv:2: column 'job_id' must be a whole number"),
    "priority.csv": ("job_id,submit,kind,pods,slots,run_time,priority\n1,0,train,1,8,10,1e30\n",
                     "priority.csv:2: column 'priority' must be a whole number"),
    "kind.csv": (_CSV_HEAD + "1,0,training,1,8,10\n", "kind.csv:2: column 'kind' must be one of"),
    "missing.csv": ("job_id,submit,kind,pods\n1,0,train,1\n", "missing.csv:1: header lacks column(s) slots, run_time"),
    "columns.csv": (_CSV_HEAD + "1,0,train,1,8\n", "columns.csv:2: expected 6 columns, got 5"),
    "text.csv": (_CSV_HEAD + "1,0,train,two,8,10\n", "text.csv:2: column 'pods' must be a whole number"),
    "empty.csv": ("", "empty.csv: empty trace (no header line)"),
    "dup_id.csv": (_CSV_HEAD + "1,0,train,1,8,10\n1,5,train,1,8,10\n", "job_id must be unique"),
}
_JOB = "kind: slurm\noptions:\n  cores: 1\n  memory: 1GB\n"
CLUSTERS = {  # cluster spec files (hpclab run --cluster FILE): name -> (content, needle)
    "cl_kind.yaml": ("kind: slrum\noptions: {cores: 1, memory: 1GB}\n",
                     "cl_kind.yaml: kind: must be one of address, slurm, pbs"),
    "cl_nokind.yaml": ("options: {cores: 1, memory: 1GB}\n", "cl_nokind.yaml: kind: must be one of"),
    "cl_list.yaml": ("- slurm\n", "cl_list.yaml: must be a mapping with kind"),
    "cl_option.yaml": (_JOB + "  walltme: '00:10:00'\n",
                       "cl_option.yaml: options.walltme: is not a SLURMCluster option (account,"),
    "cl_cores.yaml": ("kind: slurm\noptions: {cores: 0, memory: 1GB}\n",
                      "cl_cores.yaml: options.cores: must be a whole number in [1, 1,000,000], got 0"),
    "cl_cores_text.yaml": ("kind: slurm\noptions: {cores: many, memory: 1GB}\n",
                           "options.cores: must be a whole number in [1, 1,000,000], got 'many'"),
    "cl_no_memory.yaml": ("kind: slurm\noptions: {cores: 1}\n", "cl_no_memory.yaml: options.memory: is required"),
    "cl_memory.yaml": ("kind: slurm\noptions: {cores: 1, memory: 1000}\n",
                       "options.memory: must be a size such as 1GB, got 1000"),
    "cl_processes.yaml": (_JOB + "  processes: 4\n", "options.processes: must be 1 (one worker per job"),
    "cl_key.yaml": (_JOB + "queue: work\n", "cl_key.yaml: queue: is not a known key with kind: slurm"),
    "cl_options.yaml": ("kind: slurm\noptions: [1, 2]\n", "options: must be a mapping of SLURMCluster keywords"),
    "cl_sched.yaml": (_JOB + "  scheduler_options: [host]\n", "options.scheduler_options: must be a mapping"),
    "cl_address.yaml": ("kind: address\n", "cl_address.yaml: address: is required with kind: address"),
    "cl_address_udp.yaml": ("kind: address\naddress: udp://10.0.0.5:8786\n",
                            "cl_address_udp.yaml: address: must be a tcp:// or tls:// address"),
    "cl_address_port.yaml": ("kind: address\naddress: tcp://10.0.0.5:99999\n", "cl_address_port.yaml: address:"),
    "cl_address_key.yaml": ("kind: address\naddress: tcp://10.0.0.5:8786\noptions: {}\n",
                            "options: is not a known key with kind: address"),
    "cl_jobqueue_two.yaml": ("jobqueue: {slurm: {cores: 1}, pbs: {cores: 1}}\n",
                             "cl_jobqueue_two.yaml: jobqueue: must name one queue system"),
    "cl_jobqueue_option.yaml": ("jobqueue:\n  slurm:\n    cores: 1\n    memory: 1GB\n    job-extra-directivs: []\n",
                                "jobqueue.slurm.job-extra-directivs: is not a SLURMCluster option"),
    "cl_jobqueue_key.yaml": ("jobqueue:\n  slurm: {cores: 1, memory: 1GB}\nkind: pbs\n",
                             "kind: is not a known key beside jobqueue"),
    "cl_python.yaml": ("kind: slurm\noptions: !!python/object/apply:os.system ['echo pwned']\n",
                       "cl_python.yaml: not valid YAML"),
    "cl_dup.yaml": ("kind: slurm\nkind: pbs\n", "duplicate key 'kind'"),
}
CSV_BYTES = {"latin1.csv": (_CSV_HEAD.encode() + b"1,0,train,1,8,10\n# caf\xe9\n", "latin1.csv:3: not UTF-8 text")}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    for table in (CATALOGS, SWFS, CSVS, CLUSTERS):
        for name, (text, _) in table.items():
            (d / name).write_text(text, encoding="utf-8")
    for table in (BINARY, SWF_BYTES, CSV_BYTES):
        for name, (data, _) in table.items():
            (d / name).write_bytes(data)
    (d / "folder.swf").mkdir()
    (d / "folder.yaml").mkdir()
    (d / "a_file").write_text("")
    (d / "ok.swf").write_text("; Version: 2.2\n" + _SWF_OK + "\n")
    from hpclab.scenario import scenario_dir

    (d / "ok_scenario.yaml").write_text((scenario_dir() / "burst.yaml").read_text())
    return d


# -- the CLI table: (class, argv, needle); {d} is the folder of the files above -----------------

def _cli_rows():
    rows = []
    add = rows.append
    run_real = ["run", "{d}/ok_scenario.yaml", "--clock", "real", "--quiet"]
    for name, (_, needle) in CLUSTERS.items():
        add(("yaml", [*run_real, "--cluster", f"{{d}}/{name}"], needle))
    add(("path", [*run_real, "--cluster", "{d}/nope_cluster.yaml"],
         "--cluster {d}/nope_cluster.yaml: no such cluster spec file"))
    add(("path", [*run_real, "--cluster", "{d}/folder.yaml"], "folder.yaml: no such cluster spec file"))
    add(("name", [*run_real, "--cluster", "{d}/cl_kind.yaml", "--scheduler", "tcp://127.0.0.1:1"],
         "give either --scheduler ADDR or --cluster FILE, not both"))
    for name, (_, needle) in {**CATALOGS, **BINARY}.items():
        add(("yaml", ["catalog", "--file", f"{{d}}/{name}"], needle))
    add(("yaml", ["catalog", "--file", "{d}/folder.yaml"], "folder.yaml: is a folder"))
    add(("yaml", ["catalog", "--file", "{d}/nope.yaml"], "nope.yaml: cannot read"))
    add(("name", ["catalog", "galaxy"], "argument kind: invalid choice"))
    for name, (_, needle) in {**SWFS, **SWF_BYTES, **CSVS, **CSV_BYTES}.items():
        add(("trace", ["platform", "replay", f"{{d}}/{name}"], needle))
    add(("trace", ["platform", "replay", "{d}/folder.swf"], "folder.swf: is a folder"))
    add(("trace", ["platform", "replay", "{d}/nope.swf"], "nope.swf: cannot read trace"))
    add(("trace", ["platform", "replay", "{d}/a_file"], "trace must be a .swf or .csv file"))
    replay = "{d}/ok.swf"
    for opt, values, needle in [
        ("--cpu-nodes", ["0", "-1", "100000000"], "--cpu-nodes must be a whole number in [1, 10,000,000]"),
        ("--gpu-nodes", ["0", "100000000"], "--gpu-nodes must be a whole number in [1, 10,000,000]"),
        ("--data-nodes", ["0"], "--data-nodes must be a whole number in [1,"),
        ("--procs-per-node", ["0", "1000000000"], "--procs-per-node must be a whole number in [1, 100,000,000]"),
        ("--idle-timeout", ["-1", "nan", "inf", "1e300"], "--idle-timeout must be a number in [0,"),
        ("--min-nodes", ["-1", "100000000"], "--min-nodes must be a whole number in [0,"),
        ("--tick", ["0", "nan", "-5"], "--tick must be a number in (0,"),
        ("--cpu-nodes", ["1e300", "many"], "argument --cpu-nodes: invalid int value"),
    ]:
        for v in values:
            add(("range" if v not in ("nan", "inf", "many", "1e300") or opt == "--idle-timeout" and v == "1e300"
                 else "number", ["platform", "replay", replay, opt, v], needle))
    add(("name", ["platform", "replay", replay, "--gpu-type", "ecs.c8i.32xlarge"], "--gpu-type ecs.c8i.32xlarge has no GPUs"))
    add(("name", ["platform", "replay", replay, "--gpu-type", "ecs.nope"], "unknown instance 'ecs.nope'"))
    add(("name", ["platform", "replay", replay, "--cpu-type", "ecs.nope"], "unknown instance 'ecs.nope'"))
    add(("name", ["platform", "replay", replay, "--policy", "both"], "argument --policy: invalid choice"))
    add(("path", ["platform", "generate", "{d}/folder.swf"], "OUT '{d}/folder.swf' is a folder"))
    add(("path", ["platform", "generate", "{d}/missing/x.swf"], "folder '{d}/missing' does not exist"))
    add(("path", ["platform", "generate", "{d}/x.txt"], "OUT must end in .swf or .csv"))
    add(("path", ["platform", "generate", ""], "OUT must end in .swf or .csv, got ''"))
    for opt, values, needle in [
        ("--jobs", ["0", "-1", "100000000"], "--jobs must be a whole number in [1, 10,000,000]"),
        ("--seed", ["-1"], "--seed must be a whole number in [0,"),
        ("--max-nodes", ["0", "100000000"], "--max-nodes must be a whole number in [1, 10,000,000]"),
        ("--mean-interarrival", ["0", "-1", "nan", "inf"], "--mean-interarrival must be a number in (0,"),
    ]:
        for v in values:
            add(("number" if v in ("nan", "inf") else "range", ["platform", "generate", "{d}/g.csv", opt, v], needle))

    for opt, values, needle in [
        ("--ranks", ["0", "-4", "1e300", "100000001", "2.5"], "ranks must be a whole number in [1, 10,000,000]"),
        ("--ranks", ["two", "nan", "inf", ""], "ranks must be a whole number in [1, 10,000,000]"),
        ("--ranks-per-node", ["0", "1e300"], "ranks-per-node must be a whole number in [1, 10,000,000]"),
        ("--nbytes", ["1e300", "2PiB", "-8", "1e400"], "nbytes must be a byte size in [0, 1 PiB]"),
        ("--nbytes", ["nan", "inf", "-inf"], "nbytes must be a byte size in [0, 1 PiB]"),
        ("--nbytes", ["0"], "nbytes must be > 0"),
        ("--nbytes", ["1.2.3", "e", "1XB", "8,,9"], "is not a byte size"),
    ]:
        for v in values:
            cls = "number" if v in ("two", "nan", "inf", "-inf", "", "1.2.3", "e", "1XB", "8,,9") else "range"
            add((cls, ["collectives", f"{opt}={v}"], needle))
    add(("name", ["collectives", "--op", "gather"], "op must be one of"))
    add(("name", ["collectives", "--fabric", "moon"], "unknown fabric 'moon'"))
    add(("name", ["collectives", "--fabric", ","], "fabric must name at least one"))
    add(("name", ["collectives", "--algorithm", "butterfly"], "algorithm for allreduce must be one of"))
    add(("name", ["collectives", "--topology", "torus"], "unknown topology 'torus'"))

    for argv, needle in [
        (["--grid", "2"], "--grid must be a whole number in [3, 100,000]"),
        (["--grid", "-5"], "--grid must be a whole number in [3, 100,000]"),
        (["--grid", "1000000"], "--grid must be a whole number in [3, 100,000]"),
        (["--grid", "100000"], "--grid 100000 in 2-D is 10,000,000,000 cells"),
        (["--grid", "2000", "--ndim", "3"], "--grid 2000 in 3-D is 8,000,000,000 cells"),
        (["--steps", "0"], "--steps must be a whole number in [1, 10,000,000]"),
        (["--steps", "100000000"], "--steps must be a whole number in [1, 10,000,000]"),
        (["--workers", "0"], "--workers must be a whole number in [1, 256]"),
        (["--workers", "1000"], "--workers must be a whole number in [1, 256]"),
        (["--steps-per-exchange", "0"], "--steps-per-exchange must be a whole number in [1,"),
        (["--grid", "64", "--kappa", "nan"], "kappa"),
        (["--grid", "64", "--kappa", "-1"], "kappa"),
        (["--grid", "64", "--dt", "nan"], "dt must be a finite"),
        (["--grid", "64", "--dt", "inf"], "dt must be a finite"),
        (["--grid", "64", "--dt", "-1"], "dt"),
        (["--grid", "64", "--dt", "1e-3"], "dt must be <="),
        (["--grid", "64", "--subdomains", "a,b"], "--subdomains must be whole numbers"),
        (["--grid", "64", "--subdomains", "0,1"], "subdomains"),
        (["--grid", "64", "--fabrics", "erdma,moon"], "unknown fabric 'moon'"),
        (["--grid", "64", "--fabrics", ","], "--fabrics must name at least one"),
        (["--ndim", "4"], "argument --ndim: invalid choice"),
        (["--grid", "big"], "argument --grid: invalid int value"),
    ]:
        add(("name" if "fabric" in needle or "choice" in needle else
             "number" if "nan" in argv or "inf" in argv or "big" in argv or "a,b" in argv else "range",
             ["cae", *argv], needle))
    for addr, needle in [("tcp://127.0.0.1:1", "cannot connect (Connection refused)"),
                         ("garbage", "--scheduler must be host:port, got 'garbage'"),
                         ("", "--scheduler must be an address such as"),
                         ("ucx://127.0.0.1:1", "--scheduler must be a tcp:// or tls:// address"),
                         ("tcp://127.0.0.1:99999", "--scheduler needs a host and a port in [1, 65535]"),
                         ("tcp://host.invalid:8786", "unknown host 'host.invalid'")]:
        add(("address", ["cae", "--grid", "64", "--scheduler", addr], needle))
        add(("address", ["screen", "--size", "10", "--no-progress", "--scheduler", addr], needle))
        add(("address", ["run", "{d}/ok_scenario.yaml", "--clock", "real", "--quiet", "--scheduler", addr], needle))

    for argv, needle in [
        (["--gpus", "0"], "--gpus must be a whole number in [1, 10,000,000]"),
        (["--gpus", "-8"], "--gpus must be a whole number in [1, 10,000,000]"),
        (["--gpus", "1000000000000"], "--gpus must be a whole number in [1, 10,000,000], got 1,000,000,000,000"),
        (["--gpus", "1e300"], "argument --gpus: invalid int value"),
        (["--gpus", "12"], "gpus must be a multiple of"),
        (["--global-batch", "0"], "global_batch must be a whole number in [1, 1,000,000,000]"),
        (["--global-batch", BIG], "global_batch must be a whole number in [1, 1,000,000,000], got 1e+32"),
        (["--top", "0"], "top must be a whole number in [1, 1,000]"),
        (["--top", "1000000"], "top must be a whole number in [1, 1,000]"),
        (["--efficiency", "0"], "efficiency must be in [0.01, 1]"),
        (["--efficiency", "1.5"], "efficiency must be in [0.01, 1]"),
        (["--efficiency", "nan"], "efficiency must be in [0.01, 1]"),
        (["--model", "gpt-9"], "gpt-9"),
        (["--fabric", "moon"], "unknown fabric 'moon'"),
        (["--node", "ecs.nope"], "unknown instance 'ecs.nope'"),
    ]:
        add(("name" if "unknown" in needle or "gpt-9" in needle else
             "number" if "nan" in argv or "1e300" in argv else "range", ["llm", "plan", *argv], needle))

    for argv, needle in [
        (["--tasks", "0"], "--tasks must be a whole number in [1, 1,000,000]"),
        (["--tasks", "10000000"], "--tasks must be a whole number in [1, 1,000,000]"),
        (["--tasks", "1e9"], "argument --tasks: invalid int value"),
        (["--task-seconds", "-1"], "--task-seconds must be a number in [0, 3,600]"),
        (["--task-seconds", "nan"], "--task-seconds must be a number in [0, 3,600]"),
        (["--task-seconds", "1e9"], "--task-seconds must be a number in [0, 3,600]"),
        (["--spot-share", "1.5"], "--spot-share must be a number in [0, 1]"),
        (["--spot-share", "-0.1"], "--spot-share must be a number in [0, 1]"),
        (["--spot-share", "nan"], "--spot-share must be a number in [0, 1]"),
        (["--preemptions", "-1"], "--preemptions must be a whole number in [0, 1,000]"),
        (["--preemptions", "1000000"], "--preemptions must be a whole number in [0, 1,000]"),
        (["--fault-rate", "-1"], "--fault-rate must be a number in [0, 3,600]"),
        (["--fault-rate", "inf"], "--fault-rate must be a number in [0, 3,600]"),
        (["--max-instances", "0"], "--max-instances must be a whole number in [1, 64]"),
        (["--max-instances", "1000"], "--max-instances must be a whole number in [1, 64]"),
        (["--time-scale", "0"], "--time-scale must be a number in (0, 1,000]"),
        (["--time-scale", "-1"], "--time-scale must be a number in (0, 1,000]"),
        (["--time-scale", "nan"], "--time-scale must be a number in (0, 1,000]"),
        (["--time-scale", "inf"], "--time-scale must be a number in (0, 1,000]"),
        (["--seed", "-1"], "--seed must be a whole number in [0,"),
        (["--policy", "magic"], "magic"),
        (["--types", "ecs.nope"], "ecs.nope"),
        (["--types", ","], "types must name at least one instance type"),
    ]:
        add(("name" if "magic" in argv or "ecs.nope" in argv or "," in argv else
             "number" if "nan" in argv or "inf" in argv or "1e9" in argv else "range", ["pool", "demo", *argv], needle))

    for opt, values, needle in [
        ("--cores", ["0", "1000000000"], "--cores must be a whole number in [1, 100,000,000]"),
        ("--tasks", ["0", "10000000000"], "--tasks must be a whole number in [1, 1,000,000,000]"),
        ("--mean-work", ["0", "-1", "nan", "inf", "1e300"], "--mean-work must be a number in (0,"),
        ("--sigma", ["-1", "nan", "100"], "--sigma must be a number in [0, 10]"),
        ("--window", ["-1", "nan"], "--window must be a number in (0,"),
        ("--target-duration", ["0", "inf"], "--target-duration must be a number in (0,"),
        ("--spot-share", ["2", "-1"], "--spot-share must be a number in [0, 1]"),
        ("--deadline", ["0", "nan"], "--deadline must be a number in (0,"),
        ("--budget", ["0", "-1", "inf"], "--budget must be a number in (0,"),
        ("--capacity", ["-1", "nan"], "--capacity must be a number in [0,"),
        ("--capacity-noise", ["-1"], "--capacity-noise must be a number in [0, 2]"),
        ("--spot-capacity", ["2"], "--spot-capacity must be a number in [0, 1]"),
        ("--tick", ["0", "nan"], "--tick must be a number in (0,"),
        ("--horizon", ["0", "1e300"], "--horizon must be a number in (0,"),
        ("--seed", ["-1"], "--seed must be a whole number in [0,"),
    ]:
        for v in values:
            add(("number" if v in ("nan", "inf") else "range", ["simulate", "--quiet", opt, v], needle))
    add(("name", ["simulate", "--quiet", "--tasks", "10", "--policy", "magic"], "magic"))

    for argv, needle in [
        (["--workers", "0"], "--workers must be a whole number in [1, 256]"),
        (["--workers", "1000"], "--workers must be a whole number in [1, 256]"),
        (["--size", "0"], "--size must be a whole number in [1,"),
        (["--size", "-1"], "--size must be a whole number in [1,"),
        (["--size", "100000000"], "size must be at most 4,999 (the molecules of library 'nci5k'), got 100,000,000"),
        (["--batch-size", "0"], "--batch-size must be a whole number in [1, 1,000,000]"),
        (["--batch-size", "10000000"], "--batch-size must be a whole number in [1, 1,000,000]"),
        (["--threshold-3d", "nan"], "threshold_3d must be"),
        (["--threshold-3d", "-1"], "threshold_3d must be"),
        (["--conformers", "0"], "n_conformers must be a whole number in [1, 1,000]"),
        (["--conformers", "1000000"], "n_conformers must be a whole number in [1, 1,000]"),
        (["--seed", "-1"], "--seed must be a whole number in [0,"),
        (["--out", ""], "--out must name a folder, got ''"),
        (["--out", "{d}/a_file"], "out must be a writable folder"),
        (["--target", "abl1"], "target must be one of cdk2, egfr"),
        (["--library", "zinc"], "library must be one of nci5k"),
        (["--pool", "ecs.nope"], "unknown instance 'ecs.nope'"),
        (["--pool", "ecs.c8i.8xlarge", "--scheduler", "tcp://127.0.0.1:1"], "give --scheduler or --pool, not both"),
    ]:
        cls = ("path" if "--out" in argv else "name" if needle.startswith(("target", "library", "unknown", "give"))
               else "number" if "nan" in argv else "range")
        add((cls, ["screen", "--no-progress", "--size", "10", *argv] if "--size" not in argv
             else ["screen", "--no-progress", *argv], needle))

    # scenario files (hpclab run) go through the same YAML loader
    for name, needle in [("dup_key.yaml", "duplicate key 'alpha'"), ("bomb.yaml", "alias bomb"),
                         ("deep.yaml", "nested deeper than 64"), ("latin1.yaml", "latin1.yaml:3: not UTF-8"),
                         ("big.yaml", "YAML files are read up to"), ("python.yaml", "python.yaml: not valid YAML"),
                         ("list.yaml", "list.yaml: must be a mapping of scenario keys"),
                         ("nope.yaml", "no such scenario file")]:
        add(("yaml", ["run", f"{{d}}/{name}"], needle))
    for out, needle in [("/dev/full", "--out '/dev/full' is not writable (No space left on device)"),
                        ("", "out must be a file path, got the folder ."),
                        ("{d}", "out must be a file path, got the folder {d}"),
                        ("{d}/missing/report.html", "out must be in an existing folder; {d}/missing does not exist")]:
        add(("path", ["report", "--no-progress", "--out", out], needle))
    return rows


CLI_ROWS = _cli_rows()


def _fill(text: str, d: Path) -> str:
    return text.replace("{d}", str(d))


@pytest.mark.parametrize("cls,argv,needle", CLI_ROWS,
                         ids=[f"{i:03d}-{c}-{' '.join(a)[:60]}" for i, (c, a, _) in enumerate(CLI_ROWS)])
def test_cli_bad_input(cls, argv, needle, files, capsys):
    argv = [_fill(a, files) for a in argv]
    t0 = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit through the parser
        code = exc.code
    seconds = time.perf_counter() - t0
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, (argv, code, captured.err[-400:])
    assert "Traceback" not in captured.err, captured.err[-2000:]
    assert len(err) == 1 and err[0].startswith("hpclab: error: "), err
    assert _fill(needle, files) in err[0], err[0]
    assert seconds < 10, f"{argv}: {seconds:.1f} s"


# -- the public API -----------------------------------------------------------------------------

def _api_rows():
    import numpy as np

    from hpclab import catalog
    from hpclab import platform as P
    from hpclab._yaml import load_yaml
    from hpclab.network import collective_time, fabric
    from hpclab.workloads import screening as scr

    def ct(**kw):
        args = dict(op="allreduce", nbytes=8, ranks=8, fabric="erdma") | kw
        return lambda: collective_time(args.pop("op"), args.pop("nbytes"), args.pop("ranks"),
                                       args.pop("fabric"), **args)

    rows = [
        (ct(nbytes=1e308), "nbytes must be <= 1,125,899,906,842,624"),
        (ct(nbytes=np.array([8, 1e308])), "nbytes must be <="),
        (ct(ranks=1e300), "ranks must be <= 10,000,000"),
        (ct(nbytes=float("nan")), "nbytes must be finite"),
        (ct(nbytes=-1), "nbytes must be > 0"),
        (ct(ranks=0), "ranks must be >= 1"),
        (ct(ranks=2.5), "ranks must be whole numbers"),
        (ct(nbytes="lots"), "nbytes must be numeric"),
        (ct(op="gather"), "op must be one of"),
        (ct(fabric="moon"), "unknown fabric 'moon'"),
        (lambda: fabric("moon"), "unknown fabric 'moon'"),
        (lambda: catalog.parse_size("1.2.3"), "size '1.2.3' is not a byte size"),
        (lambda: catalog.parse_size("e"), "size 'e' is not a byte size"),
        (lambda: catalog.parse_size("1e300"), "size must be a byte size in [0, 1 PiB]"),
        (lambda: catalog.parse_size(1e300), "size must be a byte size in [0, 1 PiB]"),
        (lambda: catalog.parse_size(-1), "size must be a byte size in [0, 1 PiB]"),
        (lambda: catalog.parse_size("nan"), "size must be a byte size in [0, 1 PiB]"),
        (lambda: catalog.parse_size(10**400), "size must be a byte size in [0, 1 PiB]"),
        (lambda: catalog.parse_size(True), "size must be a byte size"),
        (lambda: load_yaml(_BOMB, source="bomb"), "bomb: not valid YAML"),
        (lambda: load_yaml("[" * 10000, source="deep"), "nested deeper than 64"),
        (lambda: load_yaml("a: 1\na: 2\n", source="dup"), "dup: not valid YAML (line 2, column 1): duplicate key 'a'"),
        (lambda: load_yaml(b"a: caf\xe9\n", source="l1"), "l1:1: not UTF-8 text (byte 0xe9 at column 7)"),
        (lambda: load_yaml(b"\x00\x01\x02", source="bin"), "bin:1: not valid YAML: character 0x0000"),
        (lambda: load_yaml("a: &a [*a]\n", source="rec"), "recursive alias"),
        (lambda: load_yaml("!!python/object:os.system x\n", source="py"), "py: not valid YAML"),
        (lambda: load_yaml("x" * (2**20 + 1), source="big"), "big: more than 1,048,576 bytes"),
        (lambda: load_yaml(3, source="int"), "load_yaml takes a path, str or bytes"),
        (lambda: P.read_swf(P.sample_traces()[next(n for n in P.sample_traces() if n.endswith(".swf"))],
                            procs_per_node=0), "procs_per_node must be a whole number in [1, 100,000,000]"),
        (lambda: P.read_swf("x.swf", procs_per_node=1e300), "procs_per_node must be a whole number"),
        (lambda: P.read_trace("jobs.txt"), "trace must be a .swf or .csv file"),
        (lambda: P.lublin_feitelson(0), "n_jobs must be"),
        (lambda: P.gpu_jobs(-1), "n_jobs must be"),
        (lambda: P.mixed_workload(10, ai_share=2), "ai_share must be in [0, 1]"),
        (lambda: P.jobs_frame(submit=[0], pods=[0], run_time=[10]), "'pods' must be >= 1"),
        (lambda: P.jobs_frame(submit=[0], pods=[1], run_time=[10], kind="mpi"), "kind must be one of"),
        (lambda: scr.load_library("nci5k", "cdk2", size=10**8), "size must be at most 4,999"),
        (lambda: scr.load_library("nci5k", "cdk2", size=0), "size must be"),
        (lambda: scr.load_library("zinc"), "library must be one of nci5k"),
        (lambda: scr.ScreenParams(n_conformers=10**6), "n_conformers must be a whole number in [1, 1,000]"),
        (lambda: scr.ScreenParams(seed=2**40), "seed must be a whole number in [0, 2,147,483,647]"),
        (lambda: scr.ScreenParams(fp_size=10**9), "fp_size must be a whole number in [1, 1,048,576]"),
        (lambda: scr.ScreenParams(target="abl1"), "target must be one of"),
        (lambda: scr.run_screen(scr.load_library("nci5k", "cdk2", size=5), out=""), "out must name a folder"),
        (lambda: scr.run_screen(scr.load_library("nci5k", "cdk2", size=5), batch_size=0), "batch_size must be"),
    ]
    return rows


API_ROWS = _api_rows()


@pytest.mark.parametrize("call,needle", API_ROWS, ids=[f"api{i:03d}-{n[:40]}" for i, (_, n) in enumerate(API_ROWS)])
def test_api_bad_input(call, needle):
    t0 = time.perf_counter()
    with pytest.raises(HpclabError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg and needle in msg, msg
    assert time.perf_counter() - t0 < 10


def test_table_is_large_enough():
    from collections import Counter

    counts = Counter(c for c, _, _ in CLI_ROWS)
    counts["api"] = len(API_ROWS)
    assert sum(counts.values()) >= 150, counts
    for cls in ("range", "number", "yaml", "trace", "path", "address", "name", "api"):
        assert counts[cls] >= 5, counts


# -- shipped scenarios with one value changed (found by fuzzing the CLI): one line, exit 2 -------

_HUGE = 10**400  # an int no float holds
SCENARIO_EDITS = [
    ("burst.yaml", ("tick",), _HUGE, "tick: must be a number in (0, 86,400], got 1000000"),
    ("burst.yaml", ("tick",), 1e-300, "more than 10,000,000 policy ticks; take a tick of at least"),
    ("burst.yaml", ("workload", "kind"), ["tasks"], "workload.kind: must be one of"),
    ("burst.yaml", ("policy", "name"), ":Foo", "policy ':Foo': must be 'package.module:Class'"),
    ("burst.yaml", ("policy", "name"), ".x:Y", "policy '.x:Y': must be 'package.module:Class'"),
    ("burst.yaml", ("policy", "params", "target_duration"), _HUGE,
     "target_duration must be a finite number > 0, got 1e+400"),
    ("burst.yaml", ("bogus",), 1, "edited.yaml: bogus: is not a known key"),
    ("burst.yaml", ("name",), " ", "edited.yaml: name: must be a non-empty name on one line, got ' '"),
    ("burst.yaml", ("pool", "bo\ngus"), 1, "edited.yaml: pool.'bo\\ngus': is not a known key"),
    ("cae_scaling.yaml", ("workload", "fabrics"), [], "workload.fabrics: must name at least one catalog fabric"),
    ("cae_scaling.yaml", ("workload", "cores"), [], "workload.cores: must list at least one core count"),
    ("cae_scaling.yaml", ("workload", "cores"), [10**8], "workload.cores[0]: must be a whole number in [1, 10,000,000]"),
    ("platform.yaml", ("pool", "max_per_type", "ecs.c8i.32xlarge"), 0,
     "pool.max_per_type.ecs.c8i.32xlarge: must be a whole number >= 1"),
    ("burst.yaml", ("topology",), "hpn7", "topology: the tasks workload does not use it (only the cae and llm "
                                          "workloads read it)"),
    ("burst.yaml", ("fabric",), "erdma", "fabric: the tasks workload does not use it (only the llm workload reads it)"),
    ("cae_scaling.yaml", ("fabric",), "erdma", "fabric: the cae workload does not use it (its fabrics are workload.fabrics)"),
    ("cae_scaling.yaml", ("topology",), "nope", "topology: must be a topology preset (hpn7, nonblocking"),
    ("llm_16k.yaml", ("fabric",), "nope", "fabric: must be a catalog fabric ("),
    ("platform.yaml", ("workload", "trace"), "/etc/passwd", "edited.yaml: workload.trace: trace must be a .swf or .csv file"),
    ("screening_campaign.yaml", ("workload", "costs_from"), "/etc",
     "edited.yaml: workload.costs_from: /etc is not the output of a real run of this campaign"),
    ("llm_16k.yaml", ("workload", "layout"), {}, "workload.layout: must give tp, pp and dp"),
    ("llm_16k.yaml", ("workload", "interval"), 1e-300, "workload.interval (with gpus, days, runs): interval 1e-300 s"),
    ("llm_16k.yaml", ("workload", "interval"), 2592000.0, "almost never complete"),
    ("burst.yaml", ("policy", "params", "zone"), "us-east-1a",
     "edited.yaml: policy.params.zone: must be one of the pool's zones (cn-hangzhou-h); got 'us-east-1a'"),
    ("screening_small.yaml", ("policy", "params", "itype"), "ecs.c7.8xlarge",
     "edited.yaml: policy.params.itype: must be one of the pool's types"),
    # a pool key the workload kind does not read is refused, not silently ignored
    ("platform.yaml", ("pool", "slots"), {"ecs.c8i.32xlarge": 4},
     "edited.yaml: pool.slots: the trace workload does not read it (it reads pool.types, pool.zones"),
    ("platform.yaml", ("pool", "quota_cores"), 64, "pool.quota_cores: the trace workload does not read it"),
    ("burst.yaml", ("pool", "idle_timeout"), 10.0, "pool.idle_timeout: the tasks workload does not read it"),
    ("cae_scaling.yaml", ("pool", "types"), ["ecs.c8i.8xlarge"],
     "edited.yaml: pool.types: the cae workload does not read it (it has no pool), got ['ecs.c8i.8xlarge']"),
    ("llm_16k.yaml", ("pool", "market"), "spot", "pool.market: the llm workload does not read it (it has no pool)"),
    # so is a run setting it does not read
    ("cae_scaling.yaml", ("tick",), 10.0, "edited.yaml: tick: the cae workload does not read it (it reads none of "
                                          "seed, time_scale, tick, horizon, policy), got 10.0"),
    ("llm_16k.yaml", ("policy",), {"name": "shortfall"}, "policy: the llm workload does not read it (it reads seed)"),
    ("platform.yaml", ("horizon",), 3600.0, "horizon: the trace workload does not read it (it reads seed, tick, policy)"),
    # settings a kind reads only in some set-ups (review of stop 15)
    ("burst.yaml", ("pool", "market"), "spot", "edited.yaml: pool.market: is read only by a pool attached to a cluster"),
    ("platform.yaml", ("tick",), 30.0, "edited.yaml: tick: the shortfall policy is asked at its triggers"),
    ("platform.yaml", ("policy",), {"name": "target-duration", "params": {"zone": "cn-hangzhou-h"}},
     "edited.yaml: policy.params.zone: must be one of the pool's zones (cpu); got 'cn-hangzhou-h' (the policy "
     "sizes each pool of a trace"),
    ("platform.yaml", ("pool", "min_per_type"), {"ecs.c8i.32xlarge": 500},
     "edited.yaml: pool.min_per_type.ecs.c8i.32xlarge: must be at most the pool's nodes (pool.max_per_type: 128)"),
    # what only a zone or a spot market reads, on a trace without them (stop 16)
    ("platform.yaml", ("pool", "capacity"), 0.5, "edited.yaml: pool.capacity: a trace reads it only with pool.zones, got 0.5"),
    ("platform.yaml", ("pool", "spot_capacity"), 0.5, "edited.yaml: pool.spot_capacity: a trace reads it only with pool.zones"),
    ("platform.yaml", ("pool", "reclaim_rate"), 1e-5,
     "edited.yaml: pool.reclaim_rate: a trace reads it only with pool.market: spot, got 1e-05"),
    ("platform.yaml", ("pool", "spot_market"), {"model": "correlated"},
     "edited.yaml: pool.spot_market: a trace reads it only with pool.market: spot"),
    ("platform.yaml", ("pool", "capacity_noise"), 0.5, "edited.yaml: pool.capacity_noise: a trace reads it only with pool.zones"),
    ("burst.yaml", ("pool", "capacity_interval"), 600.0,
     "edited.yaml: pool.capacity_interval: read only with pool.capacity_noise > 0, got 600.0"),
    ("burst.yaml", ("pool", "capacity_noise"), -0.5, "edited.yaml: pool.capacity_noise: must be"),
    ("cae_scaling.yaml", ("pool", "capacity_noise"), 0.5, "pool.capacity_noise: the cae workload does not read it"),
]


def test_a_scenarios_capacity_shortage_runs_on_the_virtual_clock_and_is_refused_on_the_real_one():
    """pool.capacity_noise: the simulator's (and the platform's) seeded shortage, read on the
    virtual clock as simulate() reads it; the real pool does not model it, and says so at once."""
    from hpclab.elastic.policies import make_policy
    from hpclab.scenario import Scenario
    from hpclab.workloads.tasks import simulate_scenario

    s = Scenario.example("burst").replace(pool={"capacity": 0.002, "capacity_noise": 0.8, "capacity_interval": 600.0})
    r = s.run("virtual")
    assert r["refusals"] > 0 and r["refusals"] != s.replace(pool={"capacity_noise": 0.0,
                                                                  "capacity_interval": 3600.0}).run("virtual")["refusals"]
    import tempfile

    assert Scenario.load(s.save(Path(tempfile.mkdtemp()) / "s.yaml")) == s
    t0 = time.perf_counter()
    with pytest.raises(HpclabError, match=re.escape("burst.yaml: pool.capacity_noise: the real clock has no "
                                                    "modelled shortage (the virtual clock draws it), got 0.8")):
        s.run("real")
    assert time.perf_counter() - t0 < 10
    trace = Scenario.example("platform_spot").replace(workload={"jobs": 300}, pool={"capacity_noise": 0.6})
    assert trace.run()["reclaims"] > Scenario.example("platform_spot").replace(workload={"jobs": 300}).run()["reclaims"]


def test_a_trace_with_an_event_driven_policy_refuses_the_pools_idle_timeout():
    """The shortfall policy keeps its own idle timeout: the pool's would change nothing, so it
    is one line that says where to set it; set there, it is read."""
    from hpclab.scenario import Scenario

    base = Scenario.example("platform").replace(workload={"jobs": 200})
    with pytest.raises(HpclabError, match=re.escape("platform.yaml: pool.idle_timeout: the shortfall policy keeps "
                                                    "its own idle timeout (set policy.params.idle_timeout instead), "
                                                    "got 120.0")):
        base.replace(policy={"name": "shortfall"}, pool={"idle_timeout": 120.0})
    short = base.replace(policy={"name": "shortfall", "params": {"idle_timeout": 1.0}}).run()
    assert short["cost_usd"] < base.run()["cost_usd"]  # idle nodes go sooner


def test_a_seed_the_workload_does_not_read_names_the_flag(capsys):
    from hpclab.scenario import scenario_dir

    code = main(["run", str(scenario_dir() / "cae_scaling.yaml"), "--seed", "3", "--quiet"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("hpclab: error: --seed 3: the cae workload does not read it") and "cae_scaling.yaml" in err[0], err


@pytest.mark.parametrize("base,key,value,needle", SCENARIO_EDITS,
                         ids=[f"{b}-{'.'.join(k)}-{str(v)[:12]}" for b, k, v, _ in SCENARIO_EDITS])
def test_shipped_scenario_with_a_bad_value(base, key, value, needle, tmp_path, capsys):
    import yaml

    from hpclab.scenario import scenario_dir

    doc = yaml.safe_load((scenario_dir() / base).read_text())
    node = doc
    for k in key[:-1]:
        node = node.setdefault(k, {})
    node[key[-1]] = value
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(doc))
    t0 = time.perf_counter()
    code = main(["run", str(path), "--clock", "virtual", "--quiet"])
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in captured.err, captured.err[-2000:]
    assert len(err) == 1 and needle in err[0], err
    assert time.perf_counter() - t0 < 20


def test_a_pool_limits_error_names_the_pool_not_the_policy():
    from hpclab.scenario import Scenario

    with pytest.raises(HpclabError, match=re.escape("burst.yaml: pool.max_per_type[ecs.c8i.8xlarge] must be >= "
                                                    "min_per_type[ecs.c8i.8xlarge] (5), got 2")):
        Scenario.example("burst").replace(pool={"min_per_type": {"ecs.c8i.8xlarge": 5},
                                                "max_per_type": {"ecs.c8i.8xlarge": 2}})


def test_the_separate_platform_refuses_what_only_elastic_pools_read():
    """The separate platform's clusters are fixed: warm nodes, boots, idle retirement, a policy
    and its tick would change nothing there, so each is one line; the plain file runs."""
    from hpclab.scenario import Scenario

    base = Scenario.example("platform").replace(workload={"platform": "separate", "jobs": 200})
    assert base.run().summary["tasks_done"] == 200
    for change, needle in (({"pool": {"boot": {"ecs.c8i.32xlarge": 10.0}}}, "pool.boot: the separate platform"),
                           ({"pool": {"idle_timeout": 10.0}}, "pool.idle_timeout: the separate platform"),
                           ({"policy": {"name": "shortfall"}}, "policy: the separate platform"),
                           ({"tick": 30.0}, "tick: the separate platform has no policy")):
        with pytest.raises(HpclabError, match=re.escape(needle)) as info:
            base.replace(**change)
        assert "\n" not in str(info.value)


def test_llm_plan_efficiency_and_simulate_window_have_their_domains(capsys):
    for argv, needle in ((["llm", "plan", "--gpus", "64", "--efficiency", "1e-300"],
                          "efficiency must be in [0.01, 1], got 1e-300"),
                         (["simulate", "--window", "0", "--quiet"], "--window must be a number in (0,")):
        code = main(argv)
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(err) == 1 and needle in err[0], err


def test_a_huge_integer_option_is_one_line():
    from hpclab._validate import check_positive, check_range

    with pytest.raises(HpclabError, match=r"--gpus must be a whole number in \[1, 10,000,000\], got 1e\+400"):
        check_range("--gpus", int("9" * 400), 1, 10**7, integer=True)
    with pytest.raises(HpclabError, match=r"x must be a finite number > 0, got 1e\+400"):
        check_positive("x", _HUGE)
