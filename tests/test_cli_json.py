"""Every command that prints results has --json, and what it prints is JSON."""

import json

import pytest

from hpclab.cli import build_parser, main


@pytest.mark.parametrize("argv", [
    ["catalog", "fabric"], ["collectives", "--op", "allreduce", "--fabric", "erdma", "--ranks", "16"],
    ["simulate", "--cores", "64", "--tasks", "100", "--quiet"], ["llm", "plan", "--gpus", "64", "--top", "1"],
    ["pool", "demo", "--tasks", "20"], ["run", "data/scenarios/burst.yaml"],
])
def test_json_output_parses(argv, capsys):
    assert main(argv + ["--json"]) == 0
    out = capsys.readouterr().out
    assert isinstance(json.loads(out), (dict, list))


@pytest.mark.parametrize("argv", [["screen"], ["cae"], ["platform", "replay", "x.swf"], ["llm", "validate"]])
def test_every_result_command_accepts_json(argv):
    args = build_parser().parse_args(argv + ["--json"])
    assert args.json is True


def _run(code_or_argv, *, cli=False):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    argv = ([sys.executable, "-c", "import sys; from hpclab.cli import main; sys.exit(main(sys.argv[1:]))",
             *code_or_argv] if cli else [sys.executable, "-c", code_or_argv])
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=root, timeout=300)


def test_json_stdout_carries_only_the_json_when_compiled_code_writes_to_fd_1():
    """What a C extension writes to file descriptor 1 (printf, std::cout, a raw write) while a
    --json command runs goes to stderr; Python's print still reaches stdout."""
    r = _run("import ctypes, os\n"
             "from hpclab.cli import _json_only_on_stdout\n"
             "with _json_only_on_stdout():\n"
             "    os.write(1, b'raw noise\\n')\n"
             "    ctypes.CDLL(None).printf(b'printf noise\\n')\n"
             "    print('{\"a\": 1}')\n")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"a": 1}
    assert "raw noise" in r.stderr and "printf noise" in r.stderr


def test_a_real_screen_prints_parseable_json(tmp_path):
    """RDKit logs from C++ during a real screen do not land in the --json output."""
    r = _run(["run", "data/scenarios/screening_small.yaml", "--clock", "real", "--json",
              "--out", str(tmp_path / "out")], cli=True)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["clock"] == "real" and out["tasks_done"] == out["tasks"]
