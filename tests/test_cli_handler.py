"""The command line's one top-level handler: wrong inputs and path errors are one line and exit 2; an unexpected
error is one line naming a log file that holds the traceback, exit 1; SIGINT and SIGTERM are one line and exit 130
and 143 from main's first line to its last (start-up, parsing, the command, writing the report)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffsolve import cli

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["bench", "--problem", "gmm-2d", "--solver", "euler", "--variable", "t", "--nfe", "4", "--n", "8",
         "--no-progress"]


def _replace_bench(monkeypatch, run):
    monkeypatch.setitem(cli.COMMANDS, "bench", (cli.COMMANDS["bench"][0], run))


def test_an_unexpected_error_is_one_line_naming_a_log_with_the_traceback(monkeypatch, capsys):
    def broken(args):
        return {}["missing key"]

    _replace_bench(monkeypatch, broken)
    assert cli.main(["bench", "--problem", "gmm-2d"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("diffsolve bench: internal error (KeyError: 'missing key')")
    log = Path(err.split("the traceback is in ")[1].split(";")[0])
    text = log.read_text()
    assert text.startswith("diffsolve bench --problem gmm-2d") and "Traceback" in text and "in broken" in text
    log.unlink()


@pytest.mark.parametrize("exc,status", [(PermissionError(errno.EACCES, "Permission denied", "/data/x"), 2),
                                        (OSError(errno.ENOSPC, "No space left on device", "/data/out"), 2),
                                        (OSError(errno.EIO, "I/O error"), 1)])
def test_an_os_error_about_a_path_is_one_line_and_status_2(exc, status, monkeypatch, capsys):
    def failing(args):
        raise exc

    _replace_bench(monkeypatch, failing)
    assert cli.main(["bench"]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    if status == 2:
        assert err.startswith("diffsolve bench: error: ") and exc.strerror in err and exc.filename in err


def test_a_usage_error_is_one_line(capsys):
    assert cli.main(["bench", "--nfe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("diffsolve bench: error: argument --nfe: expected one argument")
    assert cli.main(["nope"]) == 2
    assert capsys.readouterr().err.startswith("diffsolve: error: argument COMMAND: invalid choice: 'nope'")


def _kill_self(signum):
    os.kill(os.getpid(), signum)
    time.sleep(1)  # the handler raises here
    raise AssertionError("the signal did not interrupt")


@pytest.mark.parametrize("signum,status,what", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                (signal.SIGINT, 130, "interrupted")])
@pytest.mark.parametrize("where", ["parser", "command", "report"])
def test_a_signal_anywhere_in_main_is_one_line_and_its_status(where, signum, status, what, monkeypatch, capsys,
                                                              tmp_path):
    if where == "parser":
        monkeypatch.setattr(cli, "build_parser", lambda: _kill_self(signum))
    elif where == "command":
        _replace_bench(monkeypatch, lambda args: _kill_self(signum))
    else:
        from diffsolve.bench.api import Results

        monkeypatch.setattr(Results, "write", lambda self, out: _kill_self(signum))
    before = signal.getsignal(signum)
    assert cli.main([*SMALL, "--out", str(tmp_path)]) == status
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"diffsolve bench: {what}" and "Traceback" not in err
    assert signal.getsignal(signum) == before  # main leaves the handlers as it found them


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches the child's memory maps through /proc")
@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_torch_is_imported_is_one_line(signum, status, tmp_path):
    """The handlers are in place before torch is imported: a signal then gives the one line, not a traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "diffsolve.cli", *SMALL, "--out", str(tmp_path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if "torch" in maps.read_text():  # torch is only imported inside main, after the handlers
                break
        except OSError:
            pass
        time.sleep(0.002)
    proc.send_signal(signum)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == status, err
    assert err.strip().splitlines()[-1] in ("diffsolve bench: terminated (SIGTERM)", "diffsolve bench: interrupted")
    assert "Traceback" not in err


# ---- the console script's entry point: handlers before diffsolve.cli is imported (audit s11, s12) ------------------
LONG = ["bench", "--problem", "gmm-64", "--n", "256", "--solver", "euler,heun,rk4", "--variable", "t,sigma",
        "--nfe", "5,10,20,50,100,200", "--no-progress"]
LINES = {signal.SIGINT: (130, "diffsolve bench: interrupted"),
         signal.SIGTERM: (143, "diffsolve bench: terminated (SIGTERM)")}


def _entry_point() -> str:
    """What pyproject's [project.scripts] runs for `diffsolve`: module:function."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["diffsolve"]


def _script(tmp_path: Path, *python: str) -> subprocess.Popen:
    """The `diffsolve` console script, as pip's wrapper runs it (import the entry point, call it), on LONG."""
    module, func = _entry_point().split(":")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *python, "-c", f"import sys; from {module} import {func}; "
                             f"sys.exit({func}())", *LONG, "--out", str(tmp_path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_line_is_imported_is_one_line(signum, tmp_path):
    """The entry point installs the handlers before it imports diffsolve.cli: a signal sent as soon as diffsolve.cli
    is being imported (seen through -X importtime) gives the one line and 130/143, never a traceback."""
    proc = _script(tmp_path, "-X", "importtime")
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.rstrip().endswith("diffsolve.cli.common"):  # inside `import diffsolve.cli`, before it is done
            proc.send_signal(signum)
            break
    else:
        pytest.fail("diffsolve.cli.common was never imported: " + "".join(seen[-5:]))
    err = [line for line in proc.communicate(timeout=60)[1].splitlines() if not line.startswith("import time:")]
    status, words = LINES[signum]
    assert proc.returncode == status and err == [words], (proc.returncode, err)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_first_milliseconds_is_never_a_traceback_from_the_command_line(signum, tmp_path):
    """Sent 10–40 ms after the start. Once the entry point runs: the one line and 130/143. Before (the interpreter
    starting, site, `import diffsolve.console`: no program can handle a signal there) SIGTERM ends the process as the
    signal does, silently, and SIGINT is Python's own KeyboardInterrupt — but never a traceback through
    diffsolve.cli or torch (the audit's s11, s12: the window while diffsolve.cli was imported)."""
    status, words = LINES[signum]
    for delay in (0.01, 0.02, 0.03, 0.04):
        proc = _script(tmp_path)
        time.sleep(delay)
        proc.send_signal(signum)
        err = proc.communicate(timeout=60)[1]
        assert "diffsolve/cli" not in err and "torch" not in err, (delay, err)
        if proc.returncode == status:
            assert err.splitlines() == [words], (delay, err)
        elif signum == signal.SIGTERM:
            assert proc.returncode == -signum and not err, (delay, proc.returncode, err)
        else:
            assert "KeyboardInterrupt" in err or proc.returncode == -signum, (delay, proc.returncode, err)
