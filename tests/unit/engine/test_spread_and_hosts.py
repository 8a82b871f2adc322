"""Cells spread over nodes (a queue per node, one cell at a time each), and results of
different host classes kept apart by compare unless --across-hosts."""

import threading
import time
from dataclasses import replace

import pytest

from bench.analysis.compare import host_class_differences
from bench.cli import main
from bench.engine import runner
from bench.engine.matrix import Cell, schedule
from bench.engine.results import Record, RunStore
from bench.tools import proc

A = Cell("cbench", 1, "native", "linux/amd64", node="n1")
B = Cell("cbench", 1, "native", "linux/arm64", node="n2")
H = Cell("cbench", 1, "cross", "linux/arm64")


def test_each_node_gets_its_own_queue_with_all_repetitions_of_its_cells():
    plan = schedule([A, B, H], reps=3)
    queues = runner.node_queues(plan)
    assert list(queues) == ["n1", "n2", ""]
    assert [(rep, c) for rep, _, c in queues["n1"]] == [(1, A), (2, A), (3, A)]
    assert {c for _, _, c in queues[""]} == {H}
    assert sum(len(q) for q in queues.values()) == len(plan)


class FakeEngine:
    """Only what `_spread` uses of an Engine: measure (here a sleep, recorded), req, say."""

    class Req:
        warmup = 0

    def __init__(self, fail_on=None):
        self.req = self.Req()
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.most_at_once: dict[str, int] = {}
        self.overlap = False
        self.done: list[tuple[str, int]] = []
        self.fail_on = fail_on
        self.said: list[str] = []

    def say(self, line):
        self.said.append(line)

    def measure(self, cell, rep, warm):
        node = cell.node
        if (cell, rep) == self.fail_on:
            raise runner.ResultsUnwritable("disk full")
        with self.lock:
            self.running[node] = self.running.get(node, 0) + 1
            self.most_at_once[node] = max(self.most_at_once.get(node, 0), self.running[node])
            if sum(self.running.values()) > 1:
                self.overlap = True
        time.sleep(0.05)
        with self.lock:
            self.running[node] -= 1
            self.done.append((node, rep))


def test_queues_run_at_once_but_each_node_one_cell_at_a_time():
    plan = schedule([A, B], reps=3)
    engine = FakeEngine()
    runner._spread(engine, runner.node_queues(plan), len(plan))
    assert sorted(engine.done) == [("n1", 1), ("n1", 2), ("n1", 3), ("n2", 1), ("n2", 2), ("n2", 3)]
    assert engine.most_at_once == {"n1": 1, "n2": 1}
    assert engine.overlap  # the two nodes did build at the same time
    # Each node's repetitions kept their order.
    assert [r for n, r in engine.done if n == "n1"] == [1, 2, 3]
    assert any(line.startswith("[1/6] n") for line in engine.said)


def test_a_queue_that_cannot_store_stops_all_and_the_error_reaches_the_caller():
    plan = schedule([A, B], reps=3)
    engine = FakeEngine(fail_on=(A, 2))
    with pytest.raises(runner.ResultsUnwritable, match="disk full"):
        runner._spread(engine, runner.node_queues(plan), len(plan))
    assert ("n1", 3) not in engine.done


def test_terminate_all_ends_children_that_other_threads_wait_on():
    results: list[proc.Completed] = []
    t = threading.Thread(target=lambda: results.append(proc.run(["sleep", "60"], timeout=120)))
    t.start()
    deadline = time.monotonic() + 5
    while not proc._LIVE and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.terminate_all() == 1
    t.join(timeout=15)
    assert not t.is_alive()
    assert results and results[0].returncode != 0 and results[0].seconds < 30
    assert not proc._LIVE


def rec(run_id, rep, wall, host_class, strategy="cross", platform="linux/arm64"):
    return Record(
        "cell",
        run_id,
        "cbench",
        1,
        strategy,
        platform,
        rep,
        "ok",
        wall,
        "2026-01-01T00:00:00+00:00",
        host_class=host_class,
        harness_recipe_sha256="r1",
    )


XEON = "Intel Xeon, 2 cores, 8 GiB, Linux 6.1"
EPYC = "AMD EPYC 7B13, 16 cores, 64 GiB, Linux 6.8"


def test_cells_of_different_host_classes_are_named():
    base = [rec("b", i, 10.0, XEON) for i in (1, 2, 3)]
    same = [rec("n", i, 10.0, XEON) for i in (1, 2, 3)]
    other = [rec("n", i, 10.0, EPYC) for i in (1, 2, 3)]
    older = [replace(r, host_class="") for r in other]
    assert host_class_differences(base, same) == []
    assert host_class_differences(base, other) == [f"cbench-s1-cross-linux-arm64: {XEON} -> {EPYC}"]
    assert host_class_differences(base, older) == []  # nothing to judge


def store(root, run_id, host_class):
    s = RunStore(root, run_id)
    s.write_manifest(
        {
            "started_at": "2026-01-01T00:00:00+00:00",
            "request": {"scenario_digests": {"cbench": "src"}},
            "provenance": {},
            "cells": [{"cell": "cbench-s1-cross-linux-arm64"}],
        }
    )
    for i, wall in enumerate((10.0, 10.2, 9.9, 10.1, 10.0), start=1):
        s.add(rec(run_id, i, wall, host_class))
    return s.path


def test_compare_refuses_different_host_classes_unless_across_hosts(tmp_path, capsys):
    base = store(tmp_path, "base", XEON)
    new = store(tmp_path, "new", EPYC)
    assert main(["compare", str(base), str(new), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "different host classes" in err and "--across-hosts" in err
    assert len(err.splitlines()) == 1
    assert main(["compare", str(base), str(new), "--results", str(tmp_path), "--across-hosts"]) == 0
    err = capsys.readouterr().err
    assert (
        f"comparing across host classes (--across-hosts): cbench-s1-cross-linux-arm64: {XEON}"
        in err
    )


def test_compare_of_one_host_class_needs_no_flag(tmp_path, capsys):
    base = store(tmp_path, "base", XEON)
    new = store(tmp_path, "new", XEON)
    assert main(["compare", str(base), str(new), "--results", str(tmp_path)]) == 0
    assert "across host classes" not in capsys.readouterr().err
