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
