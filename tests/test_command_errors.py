"""Every command besides experiments.run gives one `error: ...` line and exit status 2 for
a bad command line (a wrong type, an unknown flag, a missing argument, an unknown choice,
an out-of-range value, an --out that cannot be written), not a usage box or a traceback.
No run is needed: each is refused before a run directory is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import check_reference, compare, evaluate, landscape, plot, summarize
from tests.conftest import run_module


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "╭" not in err and "usage:" not in err
    return err


CASES = {
    "evaluate": (
        evaluate.main,
        [
            ([], "Missing from python -m experiments.evaluate: PATH"),
            (["RUN", "--nope", "1"], "Unrecognized options: --nope"),
            (["RUN", "--checkpoint", "mid"], "invalid choice 'mid' for argument '--checkpoint'"),
            (["RUN", "--episodes", "abc"], "Error parsing --episodes"),
            (["RUN", "--episodes", "0"], "--episodes 0: must be an integer >= 1"),
            (["RUN", "--seed", "-1"], "--seed -1: must be an integer in [0, 2147483647]"),
        ],
    ),
    "plot": (
        plot.main,
        [
            (["RUN", "--source", "both"], "invalid choice 'both' for argument '--source'"),
            (["RUN", "--bogus"], "Unrecognized options: --bogus"),
            (["RUN", "--out", "fig.xyz"], "unknown image format 'xyz'"),
            ([], "give at least one run directory"),
        ],
    ),
    "summarize": (
        summarize.main,
        [
            (["RUN", "--last", "x"], "Error parsing --last"),
            (["RUN", "--last", "0"], "--last 0: must be an integer >= 1"),
            (["RUN", "--what"], "Unrecognized options: --what"),
        ],
    ),
    "landscape": (
        landscape.main,
        [
            ([], "the following arguments are required: run_dir"),
            (["RUN", "--grid", "x"], "argument --grid: invalid int value: 'x'"),
            (["RUN", "--out", "land.xyz"], "--out land.xyz: unknown image format 'xyz'"),
            (["RUN", "--checkpoint", "mid"], "argument --checkpoint: invalid choice: 'mid'"),
        ],
    ),
    "compare": (
        compare.main,
        [
            (["RUN", "--nope"], "Unrecognized options: --nope"),
            (["RUN", "--resamples", "many"], "Error parsing --resamples"),
        ],
    ),
    "check_reference": (
        check_reference.main,
        [
            ([], "the following arguments are required: dump"),
            (["a.npz", "--x"], "unrecognized arguments: --x"),
        ],
    ),
}


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [(name, args, message) for name, (_, cases) in CASES.items() for args, message in cases],
)
def test_bad_command_lines_are_one_line(
    command: str,
    args: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # relative --out paths land here, if anywhere
    main = CASES[command][0]
    args = [str(tmp_path / "missing-run") if a == "RUN" else a for a in args]
    assert main(args) == 2
    assert message in one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_out_in_a_file_or_unwritable_folder(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for main in (plot.main, landscape.main):
        assert main([str(tmp_path / "run"), "--out", str(blocker / "sub" / "fig.png")]) == 2
        assert f"{blocker} is a file, not a folder" in one_line(capsys)


def test_a_bad_flag_in_a_real_process_is_one_line() -> None:
    done = run_module("experiments.evaluate", "runs/x", "--episodes", "many")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: Error parsing --episodes: invalid literal for int() with base 10: 'many'; "
        "see --help"
    ]
