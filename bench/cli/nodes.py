"""`archbench nodes`: add, list and remove build nodes (docker contexts)."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from bench.cli.common import _LIST, _TEXT, EXIT_OK, Subcommands, _path, _platforms, _say, out
from bench.errors import UsageError


def add_parser(sub: Subcommands) -> None:
    """Add the `nodes` subcommand (add, ls, rm) and its flags to `sub`."""
    n = sub.add_parser("nodes", help="add, list and remove build nodes (docker contexts)")
    actions = n.add_subparsers(dest="nodes_action", required=True, parser_class=type(n))
    a = actions.add_parser("add", help="add a node: a docker context and its platforms")
    a.add_argument("name", type=_TEXT, metavar="NAME", help="a slug: a-z, 0-9, . _ -")
    a.add_argument(
        "endpoint",
        type=_TEXT,
        metavar="ENDPOINT",
        help="unix:///PATH, tcp://HOST:PORT (with --tls-dir) or ssh://[USER@]HOST[:PORT]",
    )
    a.add_argument(
        "--platform",
        action="append",
        default=[],
        type=_LIST,
        help="platform the node builds; repeatable or comma list (default: its own, "
        "read from the node)",
    )
    a.add_argument(
        "--push",
        type=_TEXT,
        choices=("registry", "archive"),
        help="how its builds reach the registry: registry (the node pushes; the default "
        "for unix://) or archive (an OCI archive pushed from here; the default otherwise)",
    )
    a.add_argument("--tls-dir", type=_path, help="ca.pem, cert.pem and key.pem of a tcp:// node")
    ls = actions.add_parser("ls", help="list nodes: declared platforms beside the real ones")
    ls.add_argument("--json", action="store_true", help="print JSON")
    rm = actions.add_parser("rm", help="remove a node (and its context, if archbench made it)")
    rm.add_argument("name", type=_TEXT, metavar="NAME")


def run(args: argparse.Namespace) -> int:
    """Run `archbench nodes ...` with the parsed `args`; return its exit code."""
    from bench.host import nodes

    if args.nodes_action == "add":
        nodes.check_name(args.name)
        nodes.check_endpoint(args.endpoint, args.tls_dir)
        platforms = list(_platforms(args.platform))
        node = nodes.add(args.name, args.endpoint, platforms, push=args.push, tls_dir=args.tls_dir)
        st = nodes.state(node)
        if not platforms:
            # Nothing declared: the node builds its own platform, read from the node.
            if st.platform is None:
                nodes.remove(args.name)
                raise UsageError(
                    f"node {args.name} did not say its architecture "
                    f"({st.error or (st.engine and st.engine.architecture)}); "
                    "name its platforms with --platform"
                )
            node = nodes.set_platforms(args.name, [st.platform])
            st = nodes.state(node)
        _say(
            f"node {node.name}: {node.endpoint}, platforms {', '.join(node.platforms)}, "
            f"pushes by {node.push}"
            + ("" if node.created_context else " (an existing docker context, kept on rm)")
        )
        for p in node.platforms:
            _say(f"  {p}: {st.verdict(p)}")
        return EXIT_OK
    if args.nodes_action == "rm":
        node = nodes.remove(args.name)
        _say(
            f"node {node.name} removed"
            + (" with its docker context" if node.created_context else "; its context stays")
        )
        return EXIT_OK
    return _list(args.json)


def _list(as_json: bool) -> int:
    from bench.host import nodes

    states = [nodes.state(n) for n in nodes.load().nodes.values()]
    if as_json:
        doc = [
            {
                "name": st.node.name,
                "endpoint": st.node.endpoint,
                "push": st.node.push,
                "architecture": st.engine.architecture if st.engine else None,
                "platform": st.platform.name if st.platform else None,
                "engine_id": st.engine.engine_id if st.engine else None,
                "error": st.error,
                "declared": {p: st.verdict(p) for p in st.node.platforms},
            }
            for st in states
        ]
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    if not states:
        _say("no nodes; add one with `archbench nodes add NAME ENDPOINT`")
        return EXIT_OK
    table = Table("node", "endpoint", "push", "real architecture", "declared platforms")
    for st in states:
        real = (
            f"{st.engine.architecture} ({st.platform.name if st.platform else 'unknown'})"
            if st.engine
            else f"unreachable: {st.error}"
        )
        table.add_row(
            escape(st.node.name),
            escape(st.node.endpoint),
            st.node.push,
            escape(real),
            escape("; ".join(f"{p} {st.verdict(p)}" for p in st.node.platforms)),
        )
    out.print(table)
    return EXIT_OK
