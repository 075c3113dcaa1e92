"""The command line guides: help for every option, folders of several runs, the closing lines."""
import json

import pytest

from tracer.app.cli import EXIT_BAD_INPUT, EXIT_OK, build_parser, main
from tracer.app.run_options import build_parser as run_parser

from _trace_factories import s2_trace


def _options(parser):
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {a}", h) for a, h in _options_of(sub))
    yield from _options_of(parser)


def _options_of(parser):
    import argparse
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) or a.dest == "args":
            continue
        yield "/".join(a.option_strings) or a.dest, a.help


def test_every_option_of_every_subcommand_has_help():
    missing = [name for name, text in list(_options(build_parser())) + list(_options_of(run_parser()))
               if not text or not str(text).strip()]
    assert not missing, missing


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory):
    """A folder as ``steptrace run`` leaves it: index.json and two runs."""
    out = tmp_path_factory.mktemp("runs") / "train.steptrace"
    s2_trace().save(out / "run_1")
    s2_trace(epochs=1, batch_size=12, shuffle=False).save(out / "run_2")
    (out / "index.json").write_text(json.dumps({"runs": [
        {"run": 1, "dir": "run_1", "label": "keras sequential.fit", "steps": 12, "verdict": "passed"},
        {"run": 2, "dir": "run_2", "label": "keras sequential_1.fit", "steps": 1, "verdict": "passed"}]}))
    return out


def test_a_folder_of_runs_is_listed_and_run_n_accepted(runs_folder, capsys):
    assert main(["check", str(runs_folder)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "holds 2 runs" in err and "run_1 - keras sequential.fit - 12 steps" in err
    assert f"steptrace check {runs_folder} run_1" in err and "Traceback" not in err
    assert main(["check", str(runs_folder), "run_2"]) == EXIT_OK
    assert "1 step" in capsys.readouterr().out
    assert main(["explain", str(runs_folder), "2", "--step", "1"]) == EXIT_OK
    assert main(["check", str(runs_folder), "run_7"]) == EXIT_BAD_INPUT
    assert "no run 'run_7'" in capsys.readouterr().err
    assert main(["check", str(runs_folder / "run_1"), "run_1"]) == EXIT_BAD_INPUT


def test_commands_end_with_links_and_next_commands(runs_folder, tmp_path, capsys):
    run1 = runs_folder / "run_1"
    assert main(["check", str(run1)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "next:" in out and f"steptrace explain {run1}" in out
    assert main(["explain", str(run1), "--step", "2"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "next:" in out and "--step 3" in out
    assert main(["export", str(run1), "--csv", str(tmp_path / "csv")]) == EXIT_OK
    out = capsys.readouterr().out
    assert (tmp_path / "csv").resolve().as_uri() in out and "next:" in out
    assert main(["report", str(run1), "--html", str(tmp_path / "p.html")]) == EXIT_OK
    out = capsys.readouterr().out
    assert (tmp_path / "p.html").resolve().as_uri() in out and "steptrace explain" in out


def test_value_without_metric_is_one_line_exit_2(runs_folder, capsys):
    assert main(["explain", str(runs_folder / "run_1"), "--value", "18.77"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--metric" in err


def test_summary_capture_runs_get_a_real_label():
    from types import SimpleNamespace

    import pandas as pd

    from tracer.app.run import run_label
    trace = SimpleNamespace(steps=pd.DataFrame(columns=["step", "loss", "value_norm_w", "value_norm_b"]),
                            meta={})
    label = run_label("torch loop training ? (torch.optim step)", trace)
    assert "?" not in label and "training w, b" in label and "summary capture" in label
    assert run_label("keras sequential.fit", trace) == "keras sequential.fit"


def test_readme_names_the_real_output_folder():
    from pathlib import Path

    from tracer.app.run import default_out_dir
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"{default_out_dir(Path('train.py')).name}/run_N/" in readme and "train.py.steptrace" not in readme
