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
@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143),  # SIGINT in the slow run (same path, ~2 s each)
                                           pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
def test_a_signal_while_torch_is_imported_is_one_line(signum, status, tmp_path):
    """The handlers are in place before torch is imported: a signal then gives the one line, not a traceback (held
    back until torch's import is done, it may stop the sweep instead: its own line, no cell stored)."""
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
    last = err.strip().splitlines()[-1]  # the import runs to its end first: the signal may land in the sweep
    assert last in ("diffsolve bench: terminated (SIGTERM)", "diffsolve bench: interrupted") or last.startswith(
        ("terminated (SIGTERM): 0 of 1 cells are stored", "interrupted: 0 of 1 cells are stored")), err
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


@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, marks=pytest.mark.slow),  # same path: slow run
                                    signal.SIGTERM])
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
    assert proc.returncode == LINES[signum][0] and _stopped(err, signum), (proc.returncode, err)


def _stopped(err: list[str], signum: int) -> bool:
    """Whether stderr's lines are the interrupt's one line: the command's, or the sweep's (a signal that arrives
    while the command line is imported is held back until the import is done and may land in the sweep)."""
    what = "interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"
    return err == [LINES[signum][1]] or (len(err) == 3 and err[0].startswith("suite 'cli': ") and not err[1]
                                          and err[2].startswith(f"{what}: 0 of ") and "Traceback" not in err[2])


@pytest.mark.slow  # timing sweeps of real processes (~8 s each); the deterministic tests above stay fast
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
            assert _stopped(err.splitlines(), signum), (delay, err)
        elif signum == signal.SIGTERM:
            assert proc.returncode == -signum and not err, (delay, proc.returncode, err)
        else:
            assert "KeyboardInterrupt" in err or proc.returncode == -signum, (delay, proc.returncode, err)


# ---- a signal inside an import is held back until the import is done (audit s02, R2-w01, R2-w02) ------------------
def test_the_handler_defers_inside_an_import_and_sends_the_signal_again():
    """Called from a frame of importlib's bootstrap, the handler does not raise: it sends the signal again shortly,
    and the re-delivered signal, landing in ordinary code, raises Stopped."""
    from diffsolve import console

    fake = compile("console._handler(signal.SIGTERM, sys._getframe())", "<frozen importlib._bootstrap>", "exec")
    with console.signals_raise():
        exec(fake, {"console": console, "signal": signal, "sys": sys})  # no exception: deferred
        assert console.received() == signal.SIGTERM and console._STATE["timer"] is not None
        start = time.monotonic()
        with pytest.raises(console.Stopped) as e:
            time.sleep(2)  # the re-delivered signal raises here
        assert e.value.signum == signal.SIGTERM and time.monotonic() - start < 1
    assert console._STATE["timer"] is None


def test_a_signal_while_a_module_is_imported_is_raised_after_the_import(tmp_path, monkeypatch):
    """A real import that receives SIGINT halfway runs to its end; Stopped is raised in the code after it."""
    from diffsolve import console

    (tmp_path / "slow_module_for_signals.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.2)\nDONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with console.signals_raise():
        with pytest.raises(console.Stopped) as e:
            import slow_module_for_signals  # noqa: F401

            time.sleep(2)
    assert e.value.signum == signal.SIGINT
    assert sys.modules.pop("slow_module_for_signals").DONE  # imported whole, not left half-done


def test_a_signal_whose_exception_was_swallowed_still_ends_the_command(monkeypatch, capsys):
    """Code that catches every exception cannot lose a signal: the command still ends with the line and 143."""

    def swallowing(args):
        try:
            _kill_self(signal.SIGTERM)
        except BaseException:  # noqa: BLE001 — as a careless library would
            pass
        return 0

    _replace_bench(monkeypatch, swallowing)
    assert cli.main(["bench"]) == 143
    assert capsys.readouterr().err == "diffsolve bench: terminated (SIGTERM)\n"


@pytest.mark.slow  # timing sweeps of real processes (~8 s each); the deterministic tests above stay fast
@pytest.mark.parametrize("how", ["script", "module"])
def test_sigterm_at_any_time_of_the_start_is_143_and_one_line(how, tmp_path):
    """SIGTERM 0.1–0.4 s after the start (while numpy, scipy and torch are imported) through the `diffsolve` script and
    `python -m diffsolve`: always 143 and no traceback (the audit's runs ended with exit 1, RecursionError from a
    half-imported numpy, or exit 0 with the signal lost)."""
    for delay in (0.1, 0.2, 0.3, 0.4):
        proc = _script(tmp_path) if how == "script" else _module(tmp_path)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
        assert proc.returncode == 143, (delay, proc.returncode, err)
        assert "Traceback" not in err and _stopped(err.splitlines(), signal.SIGTERM), (delay, err)


def _module(tmp_path: Path) -> subprocess.Popen:
    """`python -m diffsolve` on LONG."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "diffsolve", *LONG, "--out", str(tmp_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, marks=pytest.mark.slow),  # same path: slow run
                                    signal.SIGTERM])
def test_python_m_diffsolve_has_the_handlers_before_the_command_line(signum, tmp_path):
    """`python -m diffsolve` goes through the script's entry point (R2-s06, R2-s07): a signal as soon as diffsolve.cli
    is being imported gives the one line, not a KeyboardInterrupt traceback or death by the signal."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "diffsolve", *LONG, "--out", str(tmp_path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.rstrip().endswith("diffsolve.cli.common"):
            proc.send_signal(signum)
            break
    err = [line for line in proc.communicate(timeout=60)[1].splitlines() if not line.startswith("import time:")]
    assert proc.returncode == LINES[signum][0] and _stopped(err, signum), (proc.returncode, err)
