"""tracer.progress: the progress bar of ``steptrace report`` and the status line of ``steptrace run``."""
from __future__ import annotations

import io
import time

from tracer.progress import ClearingStream, LiveProgress, ProgressBar, TerminalLine, format_progress, is_tty


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal():
    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar(3, enabled=True, stream=stream)
        bar.step("a")
        bar.step("b")
        bar.close()
    assert "2/3" in tty.getvalue() and pipe.getvalue() == ""
    assert tty.getvalue().startswith("\r[") and tty.getvalue().endswith("\n")


def test_a_terminal_line_is_drawn_erased_and_ended():
    out = Tty()
    line = TerminalLine(out)
    line.draw("one")
    line.clear()
    line.clear()                      # nothing shown: nothing written
    line.draw("two", erase=False)
    line.end()
    assert out.getvalue() == "\r\x1b[Kone\r\x1b[K\rtwo\n"
    assert not TerminalLine(io.StringIO()).enabled and TerminalLine(io.StringIO(), tty_only=False).enabled
    assert is_tty(out) and not is_tty(io.StringIO()) and not is_tty(object())


def test_progress_text():
    assert format_progress(None) is None
    assert format_progress({"run": 0, "framework": "torch", "steps": 0, "epoch": None}) is None
    assert format_progress({"run": 2, "framework": "keras", "steps": 120, "epoch": 3}, 7.2) == \
        "steptrace: keras run 2 | epoch 3 | 120 steps recorded | 7s"


def test_the_status_line_is_erased_before_the_script_writes_and_waits_for_a_line_end():
    err = io.StringIO()
    progress = LiveProgress(lambda: {"run": 1, "framework": "torch", "steps": 5, "epoch": 1}, err, interval=0.01)
    out = ClearingStream(io.StringIO(), progress)
    progress.start()
    deadline = time.monotonic() + 5
    while not progress.shown and time.monotonic() < deadline:
        time.sleep(0.01)
    assert progress.shown and "5 steps recorded" in err.getvalue()
    out.write("partial")              # the script is writing a line: the status line waits
    assert not progress.shown and err.getvalue().endswith("\r\x1b[K")
    time.sleep(0.05)
    assert not progress.shown
    out.write(" done\n")
    progress.stop()
    assert not progress.shown
