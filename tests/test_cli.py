import argparse
import json
import subprocess
import sys

import pytest

from multimodal.cli import build_parser, main

SUBCOMMANDS = [["tag"], ["index"], ["search"], ["generate"], ["shards", "write"], ["shards", "check"],
               ["shards", "corpus"], ["train"], ["eval"], ["export"], ["demo"]]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "multimodal", *args], capture_output=True, text=True)


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_explains_itself(cmd, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*cmd, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: multimodal " + " ".join(cmd)) and len(text.splitlines()) > 5


def test_console_script_help_and_version():
    run = run_cli("--help")
    assert run.returncode == 0 and "shards" in run.stdout and "tag" in run.stdout
    assert run_cli("--version").stdout.startswith("multimodal ")


def test_shards_write_then_check_via_cli(caption_dir, tmp_path):
    out = tmp_path / "out"
    run = run_cli("shards", "write", str(caption_dir), "--out", str(out), "--shard-size", "10", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "wrote 24 samples in 3 shard(s)" in run.stderr
    check = run_cli("shards", "check", str(out / "shard-{000000..000002}.tar"), "--format", "json", "--quiet")
    assert check.returncode == 0 and json.loads(check.stdout)["num_samples"] == 24


def test_user_errors_are_one_readable_line(tmp_path, capsys):
    assert main(["shards", "write", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("multimodal shards: error:") and "no such file or folder" in err and "Traceback" not in err


def all_parsers(parser, path="multimodal"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_parsers(sub, f"{path} {name}")


def test_every_option_explains_itself_and_says_its_default_once():
    for path, parser in all_parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"`{path}` {action.dest}: no help text"
        text = parser.format_help()
        assert "default: None" not in text, f"`{path} --help` prints an empty default"
        for line in text.splitlines():
            assert line.count("default") <= 1, f"`{path} --help`: {line.strip()}"


@pytest.mark.parametrize("bad", [["--top-k", "0"], ["--top-k", "-1"], ["--threshold", "1.5"],
                                 ["--threshold", "nan"], ["--threshold", "-0.1"]])
def test_tag_refuses_bad_top_k_and_threshold(bad, tmp_path):
    run = subprocess.run([sys.executable, "-m", "multimodal", "tag", str(tmp_path), "--labels", "a,b", *bad],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and bad[0] in run.stderr and "Traceback" not in run.stderr, run.stderr
