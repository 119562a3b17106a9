import subprocess
import sys

from genrefusion.cli import COMMANDS, _count, build_parser, main


def test_help_lists_every_subcommand(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_console_script_runs_as_module():
    r = subprocess.run([sys.executable, "-m", "genrefusion", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "validate" in r.stdout and "train" in r.stdout


def _parsers():
    """(name, parser) for every command and sub-command."""
    import argparse

    from genrefusion.cli import build_parser

    todo, out = [("genrefusion", build_parser())], []
    while todo:
        name, p = todo.pop()
        out.append((name, p))
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                todo += [(f"{name} {n}", sp) for n, sp in a.choices.items()]
    return out


def _options(p) -> set[str]:
    return {o for a in p._actions for o in a.option_strings}


def test_help_texts_name_real_options_and_no_development_paths():
    import re

    from genrefusion.commands.train import parse_set
    from genrefusion.config import load_config
    from genrefusion.encoders.resnet import HOW_TO_SUPPLY

    parsers = dict(_parsers())
    for name, p in parsers.items():
        text = p.format_help()
        # an example path must be the documented data location, not one machine's absolute path
        assert not re.search(r"(?<![\w.])/(work|home|root|Users|mnt|srv|opt)/", text), (name, text)
        # every --option a help text mentions exists (in this command or one of its sub-commands)
        named = [name] + [f"genrefusion {c}" for c in COMMANDS if re.search(rf"(genrefusion |`){c}\b", text)]
        known = set().union(*(_options(q) for n, q in parsers.items()
                              if any(n == m or n.startswith(m + " ") for m in named)))
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text):
            assert flag in known, (name, flag)
    assert "../shared/datasets/*" in parsers["genrefusion train"].format_help()
    # the way resnet50's error tells users to supply weights really works
    assert "--set" in _options(parsers["genrefusion train"])
    for cmd in ("predict", "serve", "evaluate", "export"):  # where HOW_TO_SUPPLY sends a trained bundle's user
        assert "--image-weights" in _options(parsers[f"genrefusion {cmd}"]), cmd
    flag = re.search(r"--set (\S+)=FILE", HOW_TO_SUPPLY).group(1)
    assert load_config(overrides=parse_set([f"{flag}=/x/w.pth"])).image.weights == "/x/w.pth"


def test_every_command_takes_verbose_and_quiet():
    for name, p in _parsers():
        assert {"-v", "--verbose", "-q", "--quiet"} <= _options(p), name
    args = build_parser().parse_args(["-q", "collect", "-v", "imdb-tsv", "f.tsv", "--ids", "i", "--out", "o", "-qq"])
    assert (_count(args, "verbose"), _count(args, "quiet")) == (1, 3)


def test_log_level_from_v_and_q(monkeypatch, capsys):
    import logging

    from genrefusion.commands import validate

    def run(args):
        lg = logging.getLogger("genrefusion.something")
        lg.debug("a debug line")
        lg.info("an info line")
        lg.warning("a warning line")
        lg.error("an error line")
        return 0

    monkeypatch.setattr(validate, "run", run)
    seen = {}
    for argv in (["validate", "x"], ["-v", "validate", "x"], ["validate", "x", "-q"], ["-q", "validate", "x", "-q"]):
        # (-q before the command and -q after it add up to -qq)
        assert main(argv) == 0
        err = capsys.readouterr().err
        seen[" ".join(argv)] = [w for w in ("debug", "info", "warning", "error") if f" {w} line" in err]
    assert seen == {"validate x": ["info", "warning", "error"], "-v validate x": ["debug", "info", "warning", "error"],
                    "validate x -q": ["warning", "error"], "-q validate x -q": ["error"]}
    assert not logging.getLogger("genrefusion").handlers  # nothing left behind for the next call
