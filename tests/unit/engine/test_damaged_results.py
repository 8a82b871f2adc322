"""show, export, report, compare and history over a results folder with damaged files.

The folder is built from the golden runs in tests/data/runs: OLD and NEW as stored, and
COPY, OLD stored again as a later run, which is the one damaged. Every command must warn
naming the damaged file, skip it (the record, or the run when its manifest is unusable),
report the rest, and never print a traceback.
"""

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.cli import run as run_command
from bench.engine.results import DamagedRun, read_run, record_from_dict
from bench.report import charts
from bench.report import writer as htmlreport
from bench.report.frame import load_report_data
from tests.conftest import DATA

RUNS = DATA / "runs"
OLD = "20261127T235702Z-082c39"  # cbench: native, qemu-user, cross, 3 repetitions
NEW = "20261128T002548Z-aa4451"  # tiny
COPY = "20261129T000000Z-c0ffee"  # OLD stored again, later: the run that is damaged
RECORD = "0017-cell-cbench-s1-cross-linux-amd64-r2.json"  # 5.29 s; r1 and r3 took 5.24 s
OLD_ROWS = len(list((RUNS / OLD / "records").iterdir()))


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    shutil.copytree(RUNS, root)
    shutil.copytree(root / OLD, root / COPY)
    for path in [root / COPY / "manifest.json", *(root / COPY / "records").iterdir()]:
        data = json.loads(path.read_text())
        data["run_id"] = COPY
        if path.name == "manifest.json":
            data["started_at"] = "2026-11-29T00:00:00+00:00"
        path.write_text(json.dumps(data, indent=2))
    return root


def _rewrite(**changes):
    def damage(path, _monkeypatch):
        data = json.loads(path.read_text())
        for key, value in changes.items():
            if value is KeyError:
                del data[key]
            else:
                data[key] = value
        # json.dumps writes NaN and Infinity as the bare tokens Python's json reads back.
        path.write_text(json.dumps(data, indent=2))

    return damage


def _text(text):
    def damage(path, _monkeypatch):
        path.write_text(text(path.read_text()))

    return damage


def _directory(path, _monkeypatch):
    path.unlink()
    path.mkdir()
    (path / "inner.json").write_text("{}")


def _unreadable(path, monkeypatch):
    path.chmod(0)
    if os.geteuid() == 0:
        # root reads a mode-000 file anyway: make the read fail as it does for any other
        # user, for this one file only.
        real = Path.read_bytes

        def read_bytes(self):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)


COMMON = {
    "truncated": (_text(lambda t: t[: len(t) // 2]), "not valid JSON"),
    "empty": (_text(lambda t: ""), "is empty"),
    "binary": (lambda p, _m: p.write_bytes(b"\xff\xfe\x00garbage"), "not UTF-8"),
    "directory": (_directory, "is a directory"),
    "permission-denied": (_unreadable, "permission denied"),
    "future-schema": (_rewrite(schema_version=99), "schema 99 is newer"),
    "not-an-object": (_text(lambda t: "[1, 2, 3]"), "not list"),
}
RECORD_DAMAGE = {
    **COMMON,
    "missing-field": (_rewrite(wall_s=KeyError), "'wall_s' is missing"),
    "mistyped-field": (_rewrite(size="one"), "'size' is 'one'"),
    "mistyped-extra": (_rewrite(extra=[1]), "'extra' is [1]"),
    "nan-time": (_rewrite(wall_s=float("nan")), "wall_s is nan"),
    "infinite-time": (_rewrite(wall_s=float("inf")), "wall_s is inf"),
    "negative-time": (_rewrite(wall_s=-1.0), "wall_s is -1.0"),
    "zero-time": (_rewrite(wall_s=0), "not a finite positive"),
    "nan-step": (_rewrite(extra={"step_seconds": {"compile": float("nan")}}), "compile is nan"),
    "mistyped-checks": (_rewrite(validation={"checks": "all"}), "validation.checks is not a"),
}
# A report takes seconds (charts), and reads through the same loader as the other
# commands: it runs on one damage of each kind of file failure.
REPORTED_RECORD = {"truncated", "permission-denied", "nan-time"}
REPORTED_MANIFEST = {"truncated", "mistyped-field"}
MANIFEST_DAMAGE = {
    **COMMON,
    "mistyped-field": (_rewrite(cells="all"), "'cells' is 'all'"),
    "mistyped-provenance": (_rewrite(provenance=None), "'provenance' is None"),
}


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out, captured.err


def assert_warned(err, path, why):
    lines = [line for line in err.splitlines() if line.startswith(f"warning: {path}:")]
    assert lines, err
    assert why in lines[0], lines[0]


@pytest.mark.parametrize("damage", RECORD_DAMAGE, ids=list(RECORD_DAMAGE))
def test_a_damaged_record_is_skipped_by_every_command(
    damage, results, tmp_path, monkeypatch, capsys
):
    damaged = results / COPY / "records" / RECORD
    make, why = RECORD_DAMAGE[damage]
    make(damaged, monkeypatch)
    r = ["--results", str(results)]

    code, out, err = run_cli(capsys, "show", COPY, *r, "--json")
    assert code == 0
    assert_warned(err, damaged, why)
    assert err.count(str(damaged)) == 1  # said once
    cells = {c["cell"]: c for c in json.loads(out)["cells"]}
    assert cells["cbench-s1-cross-linux-amd64"]["samples"] == pytest.approx([5.24, 5.24], abs=0.01)
    assert cells["cbench-s1-qemu-user-linux-arm64"]["n"] == 3
    code, out, err = run_cli(capsys, "show", COPY, *r)
    assert code == 0 and "cbench-s1-qemu-user-linux-arm" in out
    assert_warned(err, damaged, why)

    code, out, err = run_cli(capsys, "export", OLD, COPY, *r, "--format", "json")
    assert code == 0
    assert_warned(err, damaged, why)
    rows = pd.DataFrame(json.loads(out))
    assert (rows["run_id"] == OLD).sum() == OLD_ROWS
    assert (rows["run_id"] == COPY).sum() == OLD_ROWS - 1

    if damage in REPORTED_RECORD:
        out_dir = tmp_path / "report"
        code, out, err = run_cli(capsys, "report", COPY, *r, "--out", str(out_dir))
        assert code == 0
        assert_warned(err, damaged, why)
        summary = (out_dir / "summary.md").read_text()
        assert f"archbench report: {COPY}" in summary
        assert "## Stored results skipped" in summary and RECORD in summary
        assert "| cbench | 1 | cross | linux/amd64 | cold | 2 |" in summary
        assert (out_dir / "report.html").is_file()

    code, out, err = run_cli(capsys, "compare", OLD, COPY, *r, "--json")
    assert code == 0
    assert_warned(err, damaged, why)
    compared = {c["cell"]: c for c in json.loads(out)["cells"]}
    assert (
        compared["cbench-s1-cross-linux-amd64"]["base_n"],
        compared["cbench-s1-cross-linux-amd64"]["new_n"],
    ) == (3, 2)
    assert compared["cbench-s1-qemu-user-linux-arm64"]["ratio"] == pytest.approx(1.0)
    code, out, err = run_cli(capsys, "compare", OLD, COPY, *r)
    assert code == 0 and "cbench-s1-cross-linux-amd64" in out

    code, out, err = run_cli(capsys, "history", *r, "--json")
    assert code == 0
    assert_warned(err, damaged, why)
    runs = json.loads(out)["cells"]["cbench-s1-cross-linux-amd64"]["runs"]
    assert [(p["run_id"], p["n"]) for p in runs] == [(OLD, 3), (COPY, 2)]
    assert "tiny-s1-cross-linux-arm64" in json.loads(out)["cells"]
    code, out, err = run_cli(capsys, "history", *r)
    assert code == 0 and "history of 3 runs" in out


@pytest.mark.parametrize("damage", MANIFEST_DAMAGE, ids=list(MANIFEST_DAMAGE))
def test_a_damaged_manifest_skips_its_run_and_reports_the_others(
    damage, results, tmp_path, monkeypatch, capsys
):
    damaged = results / COPY / "manifest.json"
    make, why = MANIFEST_DAMAGE[damage]
    make(damaged, monkeypatch)
    r = ["--results", str(results)]

    # Named, the run cannot be shown: exit 2, naming the file.
    code, out, err = run_cli(capsys, "show", COPY, *r)
    assert code == 2 and out == ""
    assert_warned(err, damaged, why)
    assert "archbench: error: no run that can be read" in err
    # By default, the latest run that can be read is shown.
    code, out, err = run_cli(capsys, "show", *r, "--json")
    assert code == 0 and json.loads(out)["run"] == NEW
    assert_warned(err, damaged, why)

    code, out, err = run_cli(capsys, "export", OLD, COPY, *r, "--format", "json")
    assert code == 0
    assert_warned(err, damaged, why)
    assert {row["run_id"] for row in json.loads(out)} == {OLD}
    assert len(json.loads(out)) == OLD_ROWS

    if damage in REPORTED_MANIFEST:
        out_dir = tmp_path / "report"
        code, out, err = run_cli(capsys, "report", COPY, NEW, *r, "--out", str(out_dir))
        assert code == 0
        assert_warned(err, damaged, why)
        summary = (out_dir / "summary.md").read_text()
        assert f"archbench report: {NEW}" in summary and f"Runs: {NEW}." in summary
        assert f"- {damaged}: " in summary and "run skipped" in summary

    code, out, err = run_cli(capsys, "compare", OLD, COPY, *r, "--json")
    assert code == 2 and out == ""
    assert_warned(err, damaged, why)
    code, out, err = run_cli(capsys, "compare", COPY, OLD, *r)
    assert code == 2
    assert_warned(err, damaged, why)

    code, out, err = run_cli(capsys, "history", *r, "--json")
    assert code == 0
    assert_warned(err, damaged, why)
    cells = json.loads(out)["cells"]
    assert [p["run_id"] for p in cells["cbench-s1-cross-linux-amd64"]["runs"]] == [OLD]
    assert "tiny-s1-cross-linux-arm64" in cells


def test_the_loader_returns_records_and_typed_warnings(results):
    (results / COPY / "records" / RECORD).write_text('{"kind": "cell", "wall')
    run = read_run(results / COPY)
    assert len(run.records) == OLD_ROWS - 1
    [warning] = run.warnings
    assert warning.path == results / COPY / "records" / RECORD
    assert warning.skipped == "record" and "not valid JSON" in warning.reason
    (results / COPY / "manifest.json").write_text("")
    with pytest.raises(DamagedRun) as caught:
        read_run(results / COPY)
    assert caught.value.warning.skipped == "run"
    assert caught.value.warning.path == results / COPY / "manifest.json"


def test_stored_formats_keep_loading(results):
    for run_id in (OLD, NEW):
        run = read_run(results / run_id)
        assert run.warnings == ()
        assert len(run.records) == len(list((results / run_id / "records").iterdir()))
    # An unavailable cell has no time: 0 s is valid there, and only there.
    unavailable = json.loads(
        (RUNS / OLD / "records" / "0001-cell-cbench-s1-native-linux-arm64-r1.json").read_text()
    )
    assert unavailable["wall_s"] == 0 and record_from_dict(unavailable).status == "unavailable"
    v1 = json.loads((DATA / "result-v1-cell.json").read_text())
    assert record_from_dict(v1).cache == "cold"
    with pytest.raises(ValueError, match="not a finite positive"):
        record_from_dict(v1 | {"wall_s": 0.0})
    with pytest.raises(ValueError, match="'rep' is True"):
        record_from_dict(v1 | {"rep": True})


def _boom(*_args, **_kwargs):
    raise RuntimeError("chart failed half-way")


def test_a_report_that_fails_leaves_no_folder(results, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(charts, "step_breakdown_chart", _boom)
    out_dir = tmp_path / "reports" / "r"
    code, out, err = run_cli(
        capsys, "report", OLD, "--results", str(results), "--out", str(out_dir)
    )
    assert code == 1
    assert "the report could not be written (RuntimeError: chart failed half-way)" in err
    assert list((tmp_path / "reports").iterdir()) == []


def test_a_report_that_fails_keeps_the_previous_one(results, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "reports" / "r"
    r = ["--results", str(results), "--out", str(out_dir)]
    assert run_cli(capsys, "report", OLD, *r)[0] == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    assert "slowdown.png" in before and "report.html" in before
    monkeypatch.setattr(charts, "step_breakdown_chart", _boom)
    code, _, err = run_cli(capsys, "report", NEW, *r)
    assert code == 1 and f"{out_dir} is left as it was" in err
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["r"]
    monkeypatch.undo()
    code, _, err = run_cli(capsys, "report", NEW, *r)
    assert code == 0 and f"replaced {out_dir}" in err
    assert f"archbench report: {NEW}" in (out_dir / "summary.md").read_text()
    assert "slowdown.png" not in {p.name for p in out_dir.iterdir()}  # NEW has no native cell
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["r"]


def test_the_report_at_the_end_of_a_run_keeps_its_first_files_when_the_full_one_fails(
    results, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(htmlreport.charts, "history_chart", _boom)
    out_dir = tmp_path / "reports" / OLD
    written = run_command._write_run_report(load_report_data([results / OLD]), out_dir, OLD)
    assert {p.name for p in written} == {"cells.csv", "walltime.csv", "walltime.png"}
    assert {p.name for p in out_dir.iterdir()} == {"cells.csv", "walltime.csv", "walltime.png"}
    assert [p.name for p in (tmp_path / "reports").iterdir()] == [OLD]
    assert "the full report could not be written (chart failed half-way)" in capsys.readouterr().err
    monkeypatch.undo()
    written = run_command._write_run_report(load_report_data([results / OLD]), out_dir, OLD)
    assert [p.name for p in written] == ["cells.csv", "walltime.csv", "walltime.png", "report.html"]
    assert {"walltime.png", "slowdown.png", "summary.md"} <= {p.name for p in out_dir.iterdir()}
    assert all(p.parent == out_dir and p.is_file() for p in written)
    # `archbench report` of the run replaces that folder with the same set of files.
    before = sorted(p.name for p in out_dir.iterdir())
    assert main(["report", OLD, "--results", str(results), "--out", str(out_dir)]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == before
    assert f"replaced {out_dir}" in capsys.readouterr().err


def test_report_refuses_to_replace_a_folder_that_is_not_a_report(results, tmp_path, capsys):
    keep = tmp_path / "home"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "report", OLD, "--results", str(results), "--out", str(keep))
    assert code == 2 and "is not an archbench report" in err
    assert [p.name for p in keep.iterdir()] == ["notes.txt"]


def test_export_out_replaces_the_file_atomically_and_says_so(
    results, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "export.csv"
    r = ["--results", str(results), "--format", "csv", "--out", str(out)]
    code, _, err = run_cli(capsys, "export", NEW, *r)
    assert code == 0 and "replaced" not in err
    first = out.read_text()
    code, _, err = run_cli(capsys, "export", OLD, *r)
    assert code == 0 and f"replaced {out}" in err
    assert out.read_text() != first and OLD in out.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name != "results"] == ["export.csv"]
    # A write that fails (here: the disk fills as the file is synced) leaves the old file.
    second = out.read_text()

    def disk_full(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("bench.engine.results.os.fsync", disk_full)
    code, _, err = run_cli(capsys, "export", NEW, *r)
    assert code == 2 and f"cannot write {out}: No space left on device" in err
    assert out.read_text() == second
    assert [p.name for p in tmp_path.iterdir() if p.name != "results"] == ["export.csv"]


def test_the_loader_never_blocks_on_a_fifo_and_skips_a_run_without_a_records_folder(results):
    fifo = results / COPY / "records" / RECORD
    fifo.unlink()
    os.mkfifo(fifo)
    run = read_run(results / COPY)
    assert [(w.path, w.reason) for w in run.warnings] == [(fifo, "is not a regular file")]
    shutil.rmtree(results / COPY / "records")
    (results / COPY / "records").write_text("not a folder")
    with pytest.raises(DamagedRun, match="records: cannot be listed"):
        read_run(results / COPY)


def test_a_run_report_that_cannot_be_written_at_all_costs_nothing_else(
    results, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(charts, "wall_chart", _boom)  # the first chart, in both attempts
    out_dir = tmp_path / "reports" / OLD
    assert run_command._write_run_report(load_report_data([results / OLD]), out_dir, OLD) == []
    assert list((tmp_path / "reports").iterdir()) == []
    assert "no report could be written (chart failed half-way)" in capsys.readouterr().err
