"""What the command-line tests share: run ``ddpmdp`` in-process and check the one-line error rule."""
from __future__ import annotations

from ddpmdp.cli.main import main


def run(args, capsys):
    """``ddpmdp ARGS`` in this process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *needles):
    """A user error: exit status 2, one line on stderr, no traceback, naming every needle."""
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
