import subprocess
import sys

from genrefusion.cli import COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_console_script_runs_as_module():
    r = subprocess.run([sys.executable, "-m", "genrefusion", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "validate" in r.stdout and "train" in r.stdout
