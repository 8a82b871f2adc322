"""Cells on build nodes: whether a node can build a cell, and how its image is pushed."""

from __future__ import annotations

from dataclasses import replace

from bench import inputs
from bench.engine.matrix import Cell
from bench.host.facts import Host
from bench.host.nodes import NodeState
from bench.platforms import parse_platform
from bench.scenarios.loader import Scenario
from bench.strategies import probe_cells
from bench.strategies.base import Availability


def push_problem(st: NodeState, registry: str) -> str:
    """Return why the node of `st` cannot get its builds into `registry`, or ''.

    A local node (unix://) reaches this host's loopback registry; a remote node pushing
    by itself (`registry`) needs a registry every node reaches, never this host's
    loopback. A node that exports an OCI archive (`archive`) needs nothing: this host
    pushes it.
    """
    if st.node.push == "registry" and not st.node.local and inputs.is_loopback(registry):
        return (
            f"node {st.node.name} ({st.node.endpoint}) cannot reach the registry {registry} "
            "on this host's loopback; pass --registry HOST:PORT that every node reaches"
        )
    return ""


def push_line(st: NodeState, registry: str) -> str:
    """Return how the node's builds reach `registry`, as a run says it per node."""
    problem = push_problem(st, registry)
    if problem:
        return f"cannot push: {problem}"
    if st.node.push == "archive":
        return f"exports an OCI archive, pushed to {registry} from this host"
    return f"pushes to {registry} itself" + (" (a local node)" if st.node.local else "")


def node_line(st: NodeState, registry: str) -> str:
    """Return one line saying what a node is and does: its real architecture, each
    declared platform's verdict (native or emulated), and its push path."""
    if st.engine is None:
        return f"does not answer ({st.error}); its cells fail as node-unreachable"
    verdicts = ", ".join(f"{p} {st.verdict(p)}" for p in st.node.platforms)
    return f"{st.engine.architecture}; {verdicts}; {push_line(st, registry)}"


def probe_on_node(
    scenario: Scenario, cell: Cell, st: NodeState, host: Host, registry: str
) -> Availability:
    """Return whether `cell` can run on its node, `st`, as the strategies judge it there.

    A native cell is available only on a node whose own architecture is the cell's
    platform; on any other it is unavailable and says that it would be emulation (its
    qemu-user cell on that node measures it). A node that did not answer leaves its
    cells available: they fail as node-unreachable when they run. A local node shares
    this host's kernel and so its binfmt_misc handlers; a remote node's are not known
    from here (a missing one fails the build as exec-format-error).
    """
    if st.engine is None:
        return Availability(True)
    real = st.platform
    if real is None:
        return Availability(
            False, f"node {st.node.name}'s architecture {st.engine.architecture} is unknown"
        )
    if cell.strategy == "native" and not st.native_for(cell.platform):
        return Availability(
            False,
            f"node {st.node.name} is {real.name}: {cell.platform} there is emulation "
            f"(its qemu-user cell on {st.node.name}), not native",
            f"add a node whose own architecture is {parse_platform(cell.platform).name}",
        )
    problem = push_problem(st, registry)
    if problem:
        return Availability(False, problem)
    if not st.node.local and cell.strategy == "qemu-user":
        return Availability(True)
    return probe_cells([cell], {scenario.name: scenario}, replace(host, platform=real))[cell]
