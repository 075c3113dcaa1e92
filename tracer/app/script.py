"""Run a script as ``python SCRIPT ARGS`` would: ``__main__``, its argv, its exit code, its traceback.

Why apart from the runner: what the user sees of their own script - its output, its
exit code, its traceback starting at its own frames - must be exactly what Python
shows, whatever steptrace does around it.
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path
from types import TracebackType

from .signals import Terminated

__all__ = ["run_script", "exit_code"]


def exit_code(exc: SystemExit) -> int:
    """What ``python script.py`` would exit with for ``SystemExit(code)``."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF            # as the operating system reports it (-1 -> 255)
    try:
        print(code, file=sys.stderr)
    except Exception:  # the script's exit message could not be printed (closed stderr): exit 1 regardless
        pass
    return 1


def _script_traceback(tb: TracebackType | None, script: Path) -> TracebackType | None:
    """The traceback from the script's first frame on, without steptrace's own frames
    (the runner, runpy, the ``fit`` wrapper): what ``python script.py`` would show."""
    import hooks.autotrace as auto
    ours = (Path(__file__).resolve().parent, Path(auto.__file__).resolve().parent)   # tracer/app, hooks/autotrace
    kept, started = [], False
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename).resolve()
        if not started and path == script:
            started = True
        if started and not any(d in path.parents for d in ours):
            kept.append(tb)
        tb = tb.tb_next
    if not kept:
        return None
    for a, b in zip(kept, kept[1:]):
        a.tb_next = b
    kept[-1].tb_next = None
    return kept[0]


def _print_script_error(exc: BaseException, script: Path) -> None:
    """Print the traceback as Python would, starting at the script's own frames."""
    tb = _script_traceback(exc.__traceback__, script)
    if tb is not None:
        exc.__traceback__ = tb
    try:
        sys.stdout.flush()
    except Exception:  # a closed or broken stdout must not hide the script's own error
        pass
    sys.excepthook(type(exc), exc, exc.__traceback__)


def run_script(script: Path, args: list[str]) -> tuple[int, BaseException | None]:
    """Run ``script`` as ``__main__`` with ``sys.argv = [script, *args]`` and the script's
    directory first on ``sys.path``, as ``python script args`` does; restores both.

    Returns ``(exit code, exception or None)``; the script's traceback is printed.
    """
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script)] + list(args)
    sys.path.insert(0, str(script.parent))
    error = None
    code = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        code = exit_code(exc)
        if code != 0:
            error = exc
    except Terminated as exc:        # SIGTERM: Python prints nothing for it, nor do we
        error = exc
        code = 128 + exc.signum
    except KeyboardInterrupt as exc:
        error = exc
        _print_script_error(exc, script)
        code = 130
    except BaseException as exc:  # the script's own error: report it as Python would
        error = exc
        _print_script_error(exc, script)
        code = 1
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return code, error
