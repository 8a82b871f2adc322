"""Build nodes: docker contexts archbench builds on, what each one declares and really is.

A node is a docker context (one engine, docker driver) with the platforms declared for
it. What the node *is* comes from the node itself (`docker info`): it is native for a
platform only when its own architecture is that platform; for any other declared
platform its builds run under qemu-user there, and say so. What `nodes add` created is
kept in STATE_DIR/nodes.json, so that `archbench teardown` removes those contexts, and
only those.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from bench import inputs
from bench.errors import ArchbenchError, EngineUnavailable, UsageError
from bench.paths import STATE_DIR
from bench.platforms import KNOWN, Platform, parse_platform
from bench.tools import contexts

NODES_FILE = STATE_DIR / "nodes.json"
NODES_FILE_ENV = "ARCHBENCH_NODES_FILE"
"""Names another node list than NODES_FILE (a test's own, say)."""
SCHEMA_VERSION = 1
DESCRIPTION = "archbench node"
# docker's own context; never archbench's to add or remove.
RESERVED = frozenset({"default"})

PushPath = Literal["registry", "archive"]
PUSH_PATHS: tuple[PushPath, ...] = ("registry", "archive")

_SSH_USER = re.compile(r"[A-Za-z0-9._-]+")
_SOCKET = re.compile(r"/[A-Za-z0-9._/+@-]+")


@dataclass(frozen=True)
class Node:
    """One node as archbench keeps it: its context name, endpoint, declared platforms,
    how its builds reach the registry, and whether archbench created its context."""

    name: str
    endpoint: str
    platforms: tuple[str, ...] = ()
    push: PushPath = "registry"
    created_context: bool = True
    tls_dir: str = ""

    @property
    def local(self) -> bool:
        """Whether the node's engine runs on this machine (a unix socket)."""
        return self.endpoint.startswith("unix://")


@dataclass
class NodeBook:
    """What nodes.json holds: the nodes, and the buildx builders archbench created."""

    nodes: dict[str, Node] = field(default_factory=dict)
    builders: list[str] = field(default_factory=list)


def check_name(value: str) -> str:
    """Return `value` when it can name a node (a slug, not docker's own `default`).

    Raises UsageError naming the value and what is valid."""
    try:
        inputs.slug(value)
    except ValueError as exc:
        raise UsageError(f"bad node NAME: {exc}") from None
    if value in RESERVED:
        raise UsageError(f"bad node NAME {value!r}: docker's own context; choose another name")
    return value


def check_endpoint(value: str, tls_dir: Path | None = None) -> str:
    """Return `value` when it is an engine endpoint a node can have: unix:///PATH,
    tcp://HOST:PORT (with `tls_dir` holding ca.pem, cert.pem, key.pem: never plain TCP)
    or ssh://[USER@]HOST[:PORT].

    Raises UsageError naming the value and what is valid.
    """
    valid = "unix:///PATH, tcp://HOST:PORT (with --tls-dir) or ssh://[USER@]HOST[:PORT]"
    if inputs.has_control(value) or "," in value or '"' in value:
        raise UsageError(f"bad ENDPOINT {value!r}; expected {valid}")
    parts = urlsplit(value)
    if parts.scheme == "unix":
        if parts.netloc or not _SOCKET.fullmatch(parts.path) or "/../" in parts.path + "/":
            raise UsageError(f"bad ENDPOINT {value!r}; expected unix:///ABSOLUTE/PATH")
        if tls_dir is not None:
            raise UsageError("--tls-dir is for a tcp:// ENDPOINT only")
        return value
    if parts.scheme not in ("tcp", "ssh") or parts.path not in ("", "/") or parts.query:
        raise UsageError(f"bad ENDPOINT {value!r}; expected {valid}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise UsageError(f"bad ENDPOINT {value!r}: port must be 1 to 65535") from None
    if not host or not inputs.host_name(host):
        raise UsageError(f"bad ENDPOINT {value!r}: no valid host name")
    if parts.scheme == "ssh":
        if parts.password or (parts.username and not _SSH_USER.fullmatch(parts.username)):
            raise UsageError(f"bad ENDPOINT {value!r}: ssh://[USER@]HOST[:PORT], no password")
        if tls_dir is not None:
            raise UsageError("--tls-dir is for a tcp:// ENDPOINT only")
        return value
    if parts.username or port is None:
        raise UsageError(f"bad ENDPOINT {value!r}: tcp://HOST:PORT (2376 by convention)")
    if tls_dir is None:
        raise UsageError(
            f"ENDPOINT {value!r} needs --tls-dir DIR (ca.pem, cert.pem, key.pem): "
            "an engine on plain TCP gives root to anyone who reaches it"
        )
    missing = [n for n in ("ca.pem", "cert.pem", "key.pem") if not (tls_dir / n).is_file()]
    if missing or inputs.has_control(str(tls_dir)) or "," in str(tls_dir):
        raise UsageError(
            f"bad --tls-dir {str(tls_dir)!r}: "
            + (f"lacks {', '.join(missing)}" if missing else "no commas or control characters")
        )
    return value


def default_push(endpoint: str) -> PushPath:
    """Return how a node's builds reach archbench's registry by default: a local node
    (unix://) pushes to it directly; a remote one cannot reach the host's loopback."""
    return "registry" if endpoint.startswith("unix://") else "archive"


def nodes_file() -> Path:
    """Return where archbench keeps its nodes: $ARCHBENCH_NODES_FILE, else NODES_FILE."""
    return Path(os.environ.get(NODES_FILE_ENV) or NODES_FILE)


def load(path: Path | None = None) -> NodeBook:
    """Return the nodes archbench keeps, empty when none (or the file cannot be read)."""
    path = path or nodes_file()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return NodeBook()
    if not isinstance(doc, dict):
        return NodeBook()
    book = NodeBook(builders=[str(b) for b in doc.get("builders") or []])
    for name, entry in dict(doc.get("nodes") or {}).items():
        if not isinstance(entry, dict):
            continue
        push = entry.get("push", "registry")
        book.nodes[str(name)] = Node(
            name=str(name),
            endpoint=str(entry.get("endpoint", "")),
            platforms=tuple(str(p) for p in entry.get("platforms") or ()),
            push=push if push in PUSH_PATHS else "registry",
            created_context=bool(entry.get("created_context", True)),
            tls_dir=str(entry.get("tls_dir", "")),
        )
    return book


def save(book: NodeBook, path: Path | None = None) -> None:
    """Write `book` atomically."""
    path = path or nodes_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "nodes": {
            n.name: {k: v for k, v in asdict(n).items() if k != "name"} for n in book.nodes.values()
        },
        "builders": sorted(set(book.builders)),
    }
    fd, tmp = tempfile.mkstemp(prefix=".nodes.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def add(
    name: str,
    endpoint: str,
    platforms: Sequence[Platform],
    *,
    push: PushPath | None = None,
    tls_dir: Path | None = None,
    path: Path | None = None,
) -> Node:
    """Add the node `name`: create its docker context (or adopt an existing context
    that names the same endpoint, which teardown then leaves alone) and keep it.

    Returns the node. Raises UsageError for a bad name or endpoint, a name archbench
    already keeps, or an existing context that names another endpoint.
    """
    check_name(name)
    check_endpoint(endpoint, tls_dir)
    book = load(path)
    if name in book.nodes:
        raise UsageError(f"node {name!r} exists; `archbench nodes rm {name}` first")
    existing = contexts.inspect(name)
    if existing is not None and existing.endpoint != endpoint:
        raise UsageError(
            f"a docker context {name!r} exists for {existing.endpoint}, not {endpoint}; "
            "choose another NAME"
        )
    if existing is None:
        contexts.create(name, endpoint, DESCRIPTION, tls_dir)
    node = Node(
        name=name,
        endpoint=endpoint,
        platforms=tuple(p.name for p in platforms),
        push=push or default_push(endpoint),
        created_context=existing is None,
        tls_dir=str(tls_dir or ""),
    )
    book.nodes[name] = node
    save(book, path)
    return node


def remove(name: str, path: Path | None = None) -> Node:
    """Forget the node `name` and remove its context if archbench created it.

    Returns the node. Raises UsageError when archbench keeps no node of that name.
    """
    book = load(path)
    node = book.nodes.get(name)
    if node is None:
        known = ", ".join(sorted(book.nodes)) or "none"
        raise UsageError(f"no node {name!r}; nodes: {known}")
    if node.created_context and contexts.inspect(name) is not None:
        contexts.remove(name)
    del book.nodes[name]
    save(book, path)
    return node


def set_platforms(name: str, platforms: Sequence[Platform], path: Path | None = None) -> Node:
    """Declare `platforms` for the kept node `name`; return it. Raises UsageError when
    archbench keeps no node of that name."""
    book = load(path)
    if name not in book.nodes:
        raise UsageError(f"no node {name!r}")
    node = replace(book.nodes[name], platforms=tuple(p.name for p in platforms))
    book.nodes[name] = node
    save(book, path)
    return node


def platform_of_arch(architecture: str) -> Platform | None:
    """Return the platform whose `uname -m` is `architecture` (x86_64: linux/amd64)."""
    for platform in KNOWN.values():
        if platform.uname == architecture:
            return platform
    return None


@dataclass(frozen=True)
class NodeState:
    """A node as it is now: its engine's own account, or why it did not answer."""

    node: Node
    engine: contexts.NodeEngine | None
    error: str = ""

    @property
    def platform(self) -> Platform | None:
        """The node's real platform, read from the node (None when it did not answer
        or its architecture is not one archbench knows)."""
        return platform_of_arch(self.engine.architecture) if self.engine else None

    def native_for(self, platform: str) -> bool:
        """Whether building `platform` on this node runs on its own CPU."""
        real = self.platform
        return real is not None and real.name == parse_platform(platform).name

    def verdict(self, platform: str) -> str:
        """Return 'native', 'emulated (qemu-user on NODE)' or 'unknown (...)' for
        building `platform` on this node."""
        if self.engine is None:
            return f"unknown (node does not answer: {self.error})"
        if self.native_for(platform):
            return "native"
        return f"emulated (qemu-user on {self.node.name}, a {self.engine.architecture} node)"


def state(node: Node, timeout: float = 20) -> NodeState:
    """Return what `node` is now, asked of the node itself (never raises)."""
    try:
        return NodeState(node, contexts.engine(node.name, timeout=timeout))
    except EngineUnavailable as exc:
        return NodeState(node, None, str(exc))
    except ArchbenchError as exc:
        return NodeState(node, None, str(exc))


def host_class(cpu_model: str, cpus: int, memory_bytes: int, kernel: str) -> str:
    """Return a host's hardware class: CPU model, cores, memory (whole GiB) and kernel
    series (major.minor), as one line. Not its name: fresh CI runners of one class
    compare freely."""
    series = ".".join(re.split(r"[.-]", kernel)[:2]) if kernel else "?"
    gib = round(memory_bytes / 2**30) if memory_bytes else 0
    return f"{cpu_model or 'unknown CPU'}, {cpus} cores, {gib} GiB, Linux {series}"


def node_class(st: NodeState, host_cpu_model: str) -> str:
    """Return the hardware class of a node that answered: its engine's cores, memory and
    kernel; the CPU model only for a local node (the engine does not report it; a unix
    socket's engine runs on this machine's CPU). '' for a node that did not answer."""
    if st.engine is None:
        return ""
    model = host_cpu_model if st.node.local else f"unknown {st.engine.architecture} CPU"
    return host_class(model, st.engine.cpus, st.engine.memory_bytes, st.engine.kernel)


def resolve(names: Sequence[str], path: Path | None = None) -> list[Node]:
    """Return the kept nodes `names`, in order. Raises UsageError naming an unknown one."""
    book = load(path)
    found = []
    for name in names:
        if name not in book.nodes:
            known = ", ".join(sorted(book.nodes)) or "none (archbench nodes add NAME ENDPOINT)"
            raise UsageError(f"unknown node {name!r} in --nodes; nodes: {known}")
        found.append(book.nodes[name])
    return found
