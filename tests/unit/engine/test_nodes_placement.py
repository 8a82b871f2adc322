"""Native cells on build nodes: placement (pure), each node's verdict, where a build ran
according to its own metadata, and the node as part of a cell's identity."""

import json
from dataclasses import replace

import pytest

from bench.engine import runner
from bench.engine.matrix import Cell, NodeSpec, cell_of, place_on_nodes, schedule
from bench.engine.placement import node_line, probe_on_node, push_problem
from bench.engine.results import Record, record_from_dict
from bench.host import nodes
from bench.host.facts import Host
from bench.platforms import parse_platform
from bench.report.frame import frame
from bench.scenarios.loader import resolve_scenario
from bench.tools import contexts, docker

AMD64, ARM64 = "linux/amd64", "linux/arm64"


def engine_of(arch: str) -> contexts.NodeEngine:
    return contexts.NodeEngine("id-" + arch, "box", arch, 2, 8 * 2**30, "6.1.0", "26.1.5")


def cells(*platforms: str, strategies=("native", "cross")) -> list[Cell]:
    return [Cell("cbench", 1, s, p) for s in strategies for p in platforms]


def test_native_cells_move_to_the_nodes_that_declare_their_platform():
    placed = place_on_nodes(
        cells(AMD64, ARM64),
        [NodeSpec("x86", AMD64, (AMD64,)), NodeSpec("pi", ARM64, (ARM64,))],
    )
    assert Cell("cbench", 1, "native", AMD64, node="x86") in placed
    assert Cell("cbench", 1, "native", ARM64, node="pi") in placed
    # No native cell is left on this host, and other strategies stay where they were.
    assert [c for c in placed if c.strategy == "native" and not c.node] == []
    assert Cell("cbench", 1, "cross", ARM64) in placed
    assert len(placed) == len(set(placed)) == 4


def test_a_node_of_another_architecture_gets_a_qemu_user_cell_never_a_native_one():
    placed = place_on_nodes(cells(ARM64, strategies=("native",)), [NodeSpec("n2", AMD64, (ARM64,))])
    assert placed == [
        Cell("cbench", 1, "native", ARM64, node="n2"),  # reported unavailable by its probe
        Cell("cbench", 1, "qemu-user", ARM64, node="n2"),
    ]


def test_undeclared_platforms_stay_on_this_host_and_silent_nodes_keep_their_cells():
    placed = place_on_nodes(
        cells(AMD64, ARM64, strategies=("native",)), [NodeSpec("gone", "", (ARM64,))]
    )
    assert placed == [
        Cell("cbench", 1, "native", AMD64),
        Cell("cbench", 1, "native", ARM64, node="gone"),
    ]


def test_no_nodes_changes_nothing():
    before = cells(AMD64, ARM64, strategies=("native", "qemu-user"))
    assert place_on_nodes(before, []) == before


def test_the_node_is_part_of_the_key_tag_and_record_identity():
    here = Cell("cbench", 1, "native", AMD64)
    there = replace(here, node="n2")
    assert here.key == "cbench-s1-native-linux-amd64"
    assert there.key == "cbench-s1-native-linux-amd64-nn2"
    repo = "127.0.0.1:5000/archbench/cbench"
    assert runner.cell_tag(repo, there, parse_platform(AMD64)) == f"{repo}:native-amd64-on-n2"
    assert runner.cell_tag(repo, here, parse_platform(AMD64)) == f"{repo}:native-amd64"
    rec = Record("cell", "r", "cbench", 1, "native", AMD64, 1, "ok", 1.0, "t", node="n2")
    assert cell_of(rec) == there
    # Stored and read back, the node, where it was built and the host class survive.
    data = json.loads(json.dumps(runner_record_dict(rec)))
    back = record_from_dict(data)
    assert (back.node, back.built_on, back.host_class) == ("n2", "n2/n2", "cls")
    # An older record has none of them, and reads as this host's.
    for key in ("node", "built_on", "host_class"):
        data.pop(key)
    assert cell_of(record_from_dict(data)) == here


def runner_record_dict(rec: Record) -> dict:
    from dataclasses import asdict

    return asdict(replace(rec, built_on="n2/n2", host_class="cls"))


def test_reports_keep_node_rows_apart():
    a = Record("cell", "r", "cbench", 1, "native", AMD64, 1, "ok", 1.0, "t")
    b = replace(a, node="n2", built_on="n2/n2")
    df = frame([a, b])
    assert list(df["variant"]) == ["native", "native@n2"]
    assert list(df["built_on"]) == ["", "n2/n2"]


def test_repetitions_of_a_node_cell_stay_one_cell():
    c = Cell("cbench", 1, "native", AMD64, node="n2")
    plan = schedule([c], reps=3)
    assert {cell for _, _, cell in plan} == {c}


@pytest.mark.parametrize(
    "ref,expected",
    [
        ("n2/n2/abcdef123", "n2/n2"),
        ("fleet/fleet0/xyz", "fleet/fleet0"),
        ("", ""),
        ("only/two", ""),
        ("a//c", ""),
    ],
)
def test_where_a_build_ran_comes_from_its_own_metadata(ref, expected):
    assert docker.built_on({"buildx.build.ref": ref} if ref else {}) == expected


def test_a_cell_built_on_another_node_is_named_wrong_node():
    c = Cell("cbench", 1, "native", AMD64, node="n2")
    assert runner.wrong_node(c, "n2/n2") == ""
    assert runner.wrong_node(c, "default/default") == (
        "placed on node n2, but the build's metadata names default/default"
    )
    assert "names no builder/node" in runner.wrong_node(c, "")
    # This host's own cells are not placed on a node: nothing to check.
    assert runner.wrong_node(replace(c, node=""), "") == ""


def node_state(name: str, endpoint: str, arch: str | None, declared=(AMD64,), push=None):
    node = nodes.Node(name, endpoint, tuple(declared), push or nodes.default_push(endpoint))
    return nodes.NodeState(node, engine_of(arch) if arch else None, "" if arch else "down")


@pytest.fixture
def cbench():
    return resolve_scenario("cbench")


def host_facts() -> Host:
    return Host(platform=parse_platform(AMD64))


def test_native_on_a_node_of_its_own_architecture_is_available(cbench):
    st = node_state("n2", "unix:///run/n2/docker.sock", "x86_64")
    cell = Cell("cbench", 1, "native", AMD64, node="n2")
    assert probe_on_node(cbench, cell, st, host_facts(), "127.0.0.1:5000").available


def test_native_on_a_node_of_another_architecture_says_emulation(cbench):
    st = node_state("n2", "unix:///run/n2/docker.sock", "x86_64", declared=(ARM64,))
    cell = Cell("cbench", 1, "native", ARM64, node="n2")
    found = probe_on_node(cbench, cell, st, host_facts(), "127.0.0.1:5000")
    assert not found.available
    assert found.reason == (
        "node n2 is linux/amd64: linux/arm64 there is emulation (its qemu-user cell on n2), "
        "not native"
    )


def test_a_silent_node_leaves_its_cells_to_fail_as_unreachable(cbench):
    st = node_state("gone", "unix:///run/gone/docker.sock", None)
    cell = Cell("cbench", 1, "native", AMD64, node="gone")
    assert probe_on_node(cbench, cell, st, host_facts(), "127.0.0.1:5000").available
    assert "does not answer" in node_line(st, "127.0.0.1:5000")


def test_push_paths_are_said_per_node(cbench):
    local = node_state("n2", "unix:///run/n2/docker.sock", "x86_64")
    remote = node_state("far", "ssh://me@far", "x86_64", push="registry")
    archive = node_state("arc", "ssh://me@arc", "x86_64")
    assert push_problem(local, "127.0.0.1:5000") == ""
    assert "pushes to 127.0.0.1:5000 itself (a local node)" in node_line(local, "127.0.0.1:5000")
    assert "cannot reach the registry 127.0.0.1:5000" in push_problem(remote, "127.0.0.1:5000")
    assert push_problem(remote, "registry.lan:5000") == ""
    # A remote node's build comes back as an OCI archive that this host pushes.
    assert archive.node.push == "archive" and push_problem(archive, "127.0.0.1:5000") == ""
    assert "exports an OCI archive, pushed to 127.0.0.1:5000 from this host" in node_line(
        archive, "127.0.0.1:5000"
    )
    cell = Cell("cbench", 1, "native", AMD64, node="far")
    found = probe_on_node(cbench, cell, remote, host_facts(), "127.0.0.1:5000")
    assert not found.available and "--registry" in found.reason
