"""export and report on two small real runs kept in tests/data/runs/."""

import json
import shutil

import pandas as pd
import pytest

from bench.cli import main
from bench.engine.results import load_run
from bench.report.frame import frame
from bench.report.writer import write_report
from tests.conftest import DATA

RUNS = DATA / "runs"
OLD = "20261127T235702Z-082c39"  # cbench: native, qemu-user, cross; qemu-system unavailable
NEW = "20261128T002548Z-aa4451"  # tiny: qemu-user default/max and cross, cold and warm


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    shutil.copytree(RUNS, root)
    return root


def test_export_csv_has_one_row_per_record_and_every_column(results, capsys):
    assert main(["export", "--results", str(results), "--format", "csv"]) == 0
    text = capsys.readouterr().out
    df = pd.read_csv(pd.io.common.StringIO(text))
    _, records = load_run(results / NEW)
    assert len(df) == len(records)
    assert list(df.columns) == list(frame(records).columns)
    assert set(df["run_id"]) == {NEW}  # default: the latest run


def test_export_json_and_parquet_of_several_runs(results, tmp_path, capsys):
    out = tmp_path / "all.json"
    assert (
        main(["export", OLD, NEW, "--results", str(results), "--format", "json", "--out", str(out)])
        == 0
    )
    rows = json.loads(out.read_text())
    assert {r["run_id"] for r in rows} == {OLD, NEW}
    parquet = tmp_path / "all.parquet"
    pytest.importorskip("pyarrow")
    assert (
        main(
            [
                "export",
                OLD,
                NEW,
                "--results",
                str(results),
                "--format",
                "parquet",
                "--out",
                str(parquet),
            ]
        )
        == 0
    )
    back = pd.read_parquet(parquet)
    assert len(back) == len(rows)
    assert back["wall_s"].sum() == pytest.approx(sum(r["wall_s"] for r in rows))


def test_export_rejects_bad_format(results, capsys):
    assert main(["export", "--results", str(results), "--format", "xls"]) == 2
    assert "--format: invalid choice: 'xls'" in capsys.readouterr().err


def test_report_on_real_runs_writes_charts_summary_and_page(results, tmp_path):
    out = tmp_path / "report"
    written = {p.name for p in write_report([results / OLD, results / NEW], out)}
    for chart in ("walltime-ci", "slowdown", "steps", "cache", "validation", "resources"):
        assert f"{chart}.png" in written and f"{chart}.svg" in written
    assert {"summary.md", "report.html", "cells.csv"} <= written
    summary = (out / "summary.md").read_text()
    assert "## Recommendation" in summary
    assert "use **cross**, median 5.5 s, 1.24x native (native linux/amd64)" in summary
    assert "qemu-system was unavailable: the full-system VM strategy" in summary
    assert "Cost against work size: no cell was measured at two or more sizes" in summary
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6
    assert 'src="http' not in page and "<link" not in page


def test_report_command_defaults_to_latest_run(results, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert f"archbench report: {NEW}" in summary
    assert "Slowdown against native: no native cell ran" in summary
    # the history chart covers every stored run beside the one reported
    assert "No change point over 2 runs" in summary


def test_run_ends_with_the_one_report_reading_each_stored_run_once(
    results, tmp_path, monkeypatch, capsys
):
    from types import SimpleNamespace

    import pandas

    from bench.engine import results as stored
    from bench.engine import runner
    from bench.report import frame as report_frame

    run = stored.read_run(results / OLD)
    summary = runner.RunSummary(SimpleNamespace(path=run.path, run_id=OLD), list(run.records))
    monkeypatch.setattr(runner, "execute", lambda *_a, **_k: summary)
    reads, frames, csv_writes = [], [], []
    read_run, build_frame, to_csv = stored.read_run, report_frame.frame, pandas.DataFrame.to_csv
    monkeypatch.setattr(stored, "read_run", lambda p: reads.append(p.name) or read_run(p))
    monkeypatch.setattr(report_frame, "frame", lambda r: frames.append(1) or build_frame(r))
    monkeypatch.setattr(
        pandas.DataFrame,
        "to_csv",
        lambda self, path=None, **k: csv_writes.append(str(path)) or to_csv(self, path, **k),
    )
    out = tmp_path / "reports"
    main(["run", "--strategy", "cross", "--results", str(results), "--reports", str(out)])
    assert sorted(reads) == sorted([OLD, NEW])  # the run, and the one beside it for history
    assert len(frames) == 1
    assert len([p for p in csv_writes if p.endswith("cells.csv")]) == 1
    assert {"cells.csv", "walltime.csv", "walltime.png", "summary.md", "report.html"} <= {
        p.name for p in out.iterdir()
    }
    table = capsys.readouterr().out
    assert "18.20" in table  # qemu-user on arm64 against native amd64, read back from the store
