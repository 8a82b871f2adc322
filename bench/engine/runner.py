"""The run pipeline: load scenarios -> expand matrix -> probe -> provision -> run cells
-> validate -> join indexes -> combined builds -> store -> summarize.

A failed cell returns a record; it never raises through the matrix. Only a Ctrl-C or
SIGTERM (KeyboardInterrupt) ends a run early, after the manifest says so, or a results
folder that cannot take another record (ResultsUnwritable).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.engine import attribution, stats
from bench.engine.manifest import ManifestCell, RequestInfo, RunManifest
from bench.engine.matrix import (
    EMULATOR_STRATEGIES,
    Cell,
    NodeSpec,
    cell_of,
    expand,
    place_on_nodes,
    schedule,
)
from bench.engine.placement import node_line, probe_on_node
from bench.engine.results import (
    EmulatorFacts,
    Record,
    RunStore,
    Status,
    cache_mode,
    now_iso,
    typed_fields,
)
from bench.errors import ArchbenchError, RegistryUnavailable, ResultsUnwritable
from bench.host import facts, provenance, services
from bench.host import nodes as hostnodes
from bench.host.nodes import Node
from bench.platforms import KNOWN, Platform, parse_platform
from bench.scenarios.loader import Scenario
from bench.strategies import REGISTRY, probe_cells, userfile
from bench.strategies.base import (
    LOG_TAIL_CHARS,
    Availability,
    BuildOutcome,
    BuildSettings,
    image_repo,
    join_index,
)
from bench.strategies.qemu_user import emulator_limit
from bench.tools import contexts, proc, registry, system_emulators
from bench.tools.emulators import Emulator, EmulatorUnavailable
from bench.tools.system_emulators import SystemEmulator
from bench.validate.image import ValidationReport, compare_artifacts, validate_image

Say = Callable[[str], None]


@dataclass(frozen=True)
class RunRequest:
    """What `archbench run` was asked for."""

    scenarios: tuple[Scenario, ...]
    strategies: tuple[str, ...]
    platforms: tuple[Platform, ...]
    sizes: tuple[int, ...]
    reps: int
    results_root: Path
    registry: str
    base_image: str | None = None
    builder: str | None = None
    timeout: float = 3600.0
    combined: bool = True
    warmup: int = 0
    order: str = "interleaved"
    caches: tuple[str, ...] = ("cold",)
    cpus: tuple[str, ...] = ()
    retries: int = 0
    # The emulator axis: each qemu-user (and qemu-system) cell runs once per emulator. Empty:
    # the host's alone, unnamed in records (as before the axis).
    emulators: tuple[Emulator, ...] = ()
    # The pinned emulators' system emulators (one per emulator and guest target) that
    # qemu-system cells run under; the engine fetches them (`pinned_system_emulators`).
    system_emulators: tuple[SystemEmulator, ...] = ()
    nodes: tuple[Node, ...] = ()  # build nodes (docker contexts) native cells move to
    attribute: str = "auto"  # which cells' CPU time is attributed (attribution.ATTRIBUTE_MODES)

    def emulator_of(self, cell: Cell) -> Emulator | None:
        """Return the emulator `cell` runs under: the one its emulator axis value names
        (the host's, when the run named it, for ''), or None for the host's unnamed."""
        for e in self.emulators:
            if e.axis == cell.emulator:
                return e
        return None

    def system_emulator_of(self, cell: Cell) -> SystemEmulator | None:
        """Return the system emulator a qemu-system `cell` on a pinned emulator runs under
        (its emulator's, for its platform's QEMU target), or None (the host's)."""
        # A merge or combined record's platform is '' (or several): no one target.
        if cell.strategy != "qemu-system" or not cell.emulator or cell.platform not in KNOWN:
            return None
        qemu_name = KNOWN[cell.platform].qemu_name
        return next(
            (
                s
                for s in self.system_emulators
                if s.axis == cell.emulator and s.qemu_name == qemu_name
            ),
            None,
        )


RETRYABLE = frozenset({"emulator-crash", "push-failed"})
"""Failure classes known to flake: `--retries` builds them again and counts the flakes."""

ALWAYS_RETRIED = {"push-failed": 1}
"""Flaky classes built again even under `--retries 0`, that many times: a push the
registry refused while answering is a race between runs, not the build's doing."""


def retry_limit(failure_class: str, retries: int) -> int:
    """Return how many times a repetition that failed as `failure_class` is built again
    in all, given `--retries`: none for a class not known to flake."""
    if failure_class not in RETRYABLE:
        return 0
    return max(retries, ALWAYS_RETRIED.get(failure_class, 0))


NODE_UNREACHABLE = "node-unreachable"
"""The failure class of a cell whose build node did not answer (before or after its build)."""

WRONG_NODE = "wrong-node"
"""The failure class of a cell that BuildKit's own metadata says another node built (or
names no node at all): buildx can fall back to another node silently."""

REGISTRY_FAILURE = "registry"
"""The failure class of a cell whose registry stopped answering: its build could not pull
or push, or its image could not be read back to validate."""

# Failure classes that name their own cause: a registry found down afterwards does not
# explain them.
_OWN_CAUSE = frozenset(
    {"compile-error", "emulator-crash", "exec-format-error", "out-of-memory", "timeout"}
)


def registry_failure(address: str, failure_class: str) -> str:
    """Return REGISTRY_FAILURE when the registry at `address` no longer answers (so a
    failed push, pull or join is the registry's doing), else `failure_class`. A failure
    that names its own cause (a compile error, an emulator crash) keeps its class."""
    if failure_class in _OWN_CAUSE or registry.ping(address):
        return failure_class
    return REGISTRY_FAILURE


def _pinned(record: Record) -> str:
    """Return the reference of the image `record` pushed: by digest when known, so that
    a tag moved by another run on the same registry is never read in its place."""
    if record.digest:
        return f"{record.tag.rsplit(':', 1)[0]}@{record.digest}"
    return record.tag


@dataclass
class RunSummary:
    """What a finished (or interrupted) run did."""

    store: RunStore
    records: list[Record] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        return any(r.status in ("failed", "timeout") for r in self.records)


def cell_tag(repo: str, cell: Cell, platform: Platform) -> str:
    """Return the per-cell tag: `<repo>:<strategy>[-<cpu>]-<arch>[-warm][-on-<node>][-s<N>]`
    (each node pushes under its own tag: buildx's docker driver cannot push by digest)."""
    size = f"-s{cell.size}" if cell.size != 1 else ""
    cache = "" if cell.cache == "cold" else f"-{cell.cache}"
    node = f"-on-{cell.node}" if cell.node else ""
    return f"{repo}:{cell.variant}-{platform.slug}{cache}{node}{size}"


def strategy_tag(repo: str, variant: str, size: int, suffix: str = "") -> str:
    """Return the strategy's index tag: `<repo>:<strategy>[-<cpu>][-<suffix>][-s<N>]`."""
    parts = [variant] + ([suffix] if suffix else []) + ([f"s{size}"] if size != 1 else [])
    return f"{repo}:{'-'.join(parts)}"


def wrong_node(cell: Cell, built_on: str) -> str:
    """Return why a build of `cell` that BuildKit's metadata says ran on `built_on`
    (builder/node) was not built where the cell was placed, or '' when it was (or the
    cell is this host's own). A docker-driver node's builder is named after its context.

    buildx can fall back to another node silently: the build's own metadata says where
    it ran, and a cell built elsewhere, or nowhere said, is not this cell."""
    if not cell.node or built_on.split("/")[0] == cell.node:
        return ""
    named = built_on or "no builder/node"
    return f"placed on node {cell.node}, but the build's metadata names {named}"


NODE_PING_S = 10.0
"""How long a node may take to answer `docker info` before its cell fails unreachable."""


def request_cells(req: RunRequest) -> list[Cell]:
    """Return the matrix `req` asks for, in run order (no I/O)."""
    return expand(
        [(s.name, [p.name for p in s.platforms]) for s in req.scenarios],
        req.strategies,
        req.sizes,
        [p.name for p in req.platforms],
        [cache_mode(c) for c in req.caches],
        req.cpus,
        [e.axis for e in req.emulators],
    )


def emulator_facts(emulator: Emulator) -> EmulatorFacts:
    """Return what a record keeps of the emulator a cell ran under."""
    return EmulatorFacts(
        spec=emulator.spec,
        package=emulator.package,
        version=emulator.version,
        suite=emulator.suite,
        sha256=emulator.sha256,
        reported=emulator.reported,
        tag=emulator.tag,
    )


def system_emulator_facts(system: SystemEmulator) -> EmulatorFacts:
    """Return what a record keeps of the system emulator a qemu-system cell ran under."""
    return EmulatorFacts(
        spec=system.spec,
        package=system.package,
        version=system.version,
        suite=system.suite,
        sha256=system.sha256,
        reported=system.reported,
        tag=system.tag,
    )


def system_emulator_provenance(system: SystemEmulator) -> dict[str, Any]:
    """Return what a run's provenance keeps of a pinned system emulator: its facts, how
    it is started and the closure it runs from (every package, version and sha256)."""
    return {
        **asdict(system_emulator_facts(system)),
        "qemu_name": system.qemu_name,
        "command": system.launcher.command(),
        "env": system.launcher.env(),
        "data_dirs": [str(d) for d in system.launcher.data_dirs],
        "closure_bytes": system.closure_bytes,
        "closure": [list(p) for p in system.packages],
    }


def pinned_system_emulators(
    cells: list[Cell],
    req: RunRequest,
    availability: dict[Cell, Availability],
    say: Say,
    provide: Callable[..., SystemEmulator] = system_emulators.provide,
) -> tuple[tuple[SystemEmulator, ...], dict[Cell, str]]:
    """Return the system emulators that the available qemu-system cells on a pinned
    emulator run under (each fetched, or found in the cache, once per emulator and guest
    target), and why each such cell whose system emulator cannot run here is
    unavailable."""
    found: dict[tuple[str, str], SystemEmulator | str] = {}
    unavailable: dict[Cell, str] = {}
    for c in cells:
        if c.strategy != "qemu-system" or not c.emulator or not availability[c].available:
            continue
        emulator = req.emulator_of(c)
        if emulator is None or emulator.is_host:
            continue
        qemu_name = parse_platform(c.platform).qemu_name
        key = (c.emulator, qemu_name)
        if key not in found:
            try:
                found[key] = provide(emulator, qemu_name, say=say)
            except EmulatorUnavailable as exc:
                found[key] = str(exc)
        got = found[key]
        if isinstance(got, str):
            unavailable[c] = (
                f"{emulator.tag}'s qemu-system-{qemu_name} ({emulator.spec}) cannot run here: {got}"
            )
    return tuple(v for v in found.values() if not isinstance(v, str)), unavailable


def emulator_provenance(emulator: Emulator) -> dict[str, Any]:
    """Return what a run's provenance keeps of a pinned emulator."""
    return {**asdict(emulator_facts(emulator)), "binaries": dict(emulator.binaries)}


def _settings(
    req: RunRequest, scenario: Scenario, cell: Cell, host: Platform, nonce: str = ""
) -> BuildSettings:
    return BuildSettings(
        registry=req.registry,
        size=cell.size,
        base_image=req.base_image or scenario.base_image,
        timeout=req.timeout,
        # A node is a docker context: its builds run through `docker --context NODE`.
        builder=cell.node or req.builder,
        node=cell.node,
        push_archive=any(n.name == cell.node and n.push == "archive" for n in req.nodes),
        host=host,
        cpu=cell.cpu or None,
        cache="warm" if cell.cache == "warm" else "cold",
        nonce=nonce,
        emulator=req.emulator_of(cell) if cell.strategy in EMULATOR_STRATEGIES else None,
        system_emulators=tuple(
            s
            for s in req.system_emulators
            if cell.strategy == "qemu-system" and cell.emulator and s.axis == cell.emulator
        ),
    )


def _record(
    c: Cell,
    run_id: str,
    rep: int,
    status: Status,
    wall: float,
    *,
    extra: dict[str, Any] | None = None,
    **kw: Any,
) -> Record:
    """Return the record of a build of `c`: a strategy's outcome `extra` becomes the
    typed fields (`typed_fields`), then `kw` sets or overrides fields by name. A cell on
    a pinned emulator whose record names none (unavailable, provisioning failed) names
    its axis value, so that `cell_of` finds the cell again."""
    kw = {**typed_fields(extra or {}), **kw}
    if c.emulator and kw.get("emulator") is None:
        kw["emulator"] = EmulatorFacts(tag=c.emulator)
    kw.setdefault("node", c.node)
    return Record(
        kind=kw.pop("kind", "cell"),
        run_id=run_id,
        scenario=c.scenario,
        size=c.size,
        strategy=c.strategy,
        platform=kw.pop("platform", c.platform),
        rep=rep,
        status=status,
        wall_s=wall,
        started_at=kw.pop("started_at", now_iso()),
        cache=c.cache,
        cpu=c.cpu,
        **kw,
    )


def recipe_digest(scenario: Scenario, cell: Cell, settings: BuildSettings) -> str:
    """Return a sha256 of what defines a cell's build: the strategy's recipe (its
    Dockerfile, or its guest recipe) and the scenario's files, so results of a changed
    recipe are never compared as if equal."""
    strategy = REGISTRY[cell.strategy]
    h = hashlib.sha256(scenario.digest().encode())
    h.update(strategy.dockerfile(scenario, settings).encode())
    return h.hexdigest()


def harness_recipe_digest(scenario: Scenario, cell: Cell, settings: BuildSettings) -> str:
    """Return a sha256 of the harness's own recipe for a cell: the generated Dockerfile
    (base image, toolchain packages, build steps) without the project's sources, so a
    compare can tell a recipe change (fails the gate) from a source change (measured)."""
    dockerfile = REGISTRY[cell.strategy].dockerfile(scenario, settings)
    return hashlib.sha256(dockerfile.encode()).hexdigest()


class Engine:
    """The one measuring engine, used by `archbench run` and by pytest-benchmark alike.

    Creating it probes the matrix, starts the engine and registry when needed, opens the
    run's folder and writes its manifest. `provision`, `measure` and `join_and_combine`
    then do the work, each storing its records as they complete; `finish` closes the run.
    """

    def __init__(
        self, req: RunRequest, say: Say, mode: str = "cli", host: facts.Host | None = None
    ) -> None:
        self.req = req
        self.say = say
        # Cells on several nodes run at once, one thread per node: storing is serial.
        self._keeping = threading.Lock()
        # What the strategies probe, read once; `host` (the platform) is what builds use.
        self.host_facts = host or facts.gather()
        self.host = self.host_facts.platform
        self.scenarios = {s.name: s for s in req.scenarios}
        # Each node is asked what it is, once: its architecture decides native or not.
        self.node_states = {n.name: hostnodes.state(n) for n in req.nodes}
        for st in self.node_states.values():
            say(f"node {st.node.name} ({st.node.endpoint}): " + node_line(st, req.registry))
        self.cells = place_on_nodes(
            request_cells(req),
            [
                NodeSpec(n, st.platform.name if st.platform else "", st.node.platforms)
                for n, st in self.node_states.items()
            ],
        )
        self.availability = probe_cells(
            [c for c in self.cells if not c.node], self.scenarios, self.host_facts
        )
        for c in self.cells:
            if c.node:
                self.availability[c] = probe_on_node(
                    self.scenarios[c.scenario],
                    c,
                    self.node_states[c.node],
                    self.host_facts,
                    req.registry,
                )
        for c in self.cells:
            limit = emulator_limit(c, req.emulator_of(c), self.host)
            if limit and self.availability[c].available:
                self.availability[c] = Availability(False, limit)
        systems, unrunnable = pinned_system_emulators(
            self.cells, req, self.availability, lambda m: say(f"  {m}")
        )
        for c, reason in unrunnable.items():
            self.availability[c] = Availability(False, reason)
        for s in systems:
            say(
                f"emulator {s.tag} for qemu-system-{s.qemu_name}: {s.package} {s.version} "
                f"({s.suite}, sha256 {s.sha256[:12]}..., {len(s.packages)} packages "
                f"unpacked beside it, {s.closure_bytes / 1e6:.0f} MB): {s.reported}"
            )
        if systems:
            self.req = req = replace(req, system_emulators=systems)
        self.runnable = [c for c in self.cells if self.availability[c].available]
        if self.runnable:
            # Downloads first: a bad URL or checksum stops the run before any cell.
            for scenario in req.scenarios:
                scenario.check_touch(scenario.tree(say=lambda m: say(f"  {m}")))
            services.ensure_engine(say)
            services.ensure_registry(req.registry, say)
            for scenario in req.scenarios:
                if scenario.kind == "dockerfile":
                    # A base the mirror lacks fails now, by name, not minutes into a build.
                    userfile.check_bases(
                        scenario, list(req.platforms or scenario.platforms), self.host, req.registry
                    )
        try:
            self.store = RunStore(req.results_root)
        except OSError as exc:
            raise ResultsUnwritable(
                f"cannot create a run folder under {req.results_root}: {exc.strerror or exc}"
            ) from exc
        self.summary = RunSummary(self.store)
        self.prov = provenance.collect(sorted({parse_platform(c.platform) for c in self.cells}))
        pinned = [emulator_provenance(e) for e in req.emulators if not e.is_host]
        if pinned:
            self.prov["qemu_user_emulators"] = pinned
            if len(pinned) == 1:
                # The key runs of one pinned emulator wrote before the axis.
                self.prov["qemu_user_emulator"] = pinned[0]
        if req.system_emulators:
            self.prov["qemu_system_emulators"] = [
                system_emulator_provenance(s) for s in req.system_emulators
            ]
        self.host_class = hostnodes.host_class(
            str(self.prov.get("cpu_model", "")),
            int(self.prov.get("cpu_count") or 0),
            int(self.prov.get("memory_bytes") or 0),
            str(self.prov.get("kernel", "")),
        )
        self.node_classes = {
            n: hostnodes.node_class(st, str(self.prov.get("cpu_model", "")))
            for n, st in self.node_states.items()
        }
        if self.node_states:
            self.prov["nodes"] = {
                n: {
                    "endpoint": st.node.endpoint,
                    "declared": list(st.node.platforms),
                    "push": st.node.push,
                    "architecture": st.engine.architecture if st.engine else "",
                    "platform": st.platform.name if st.platform else "",
                    "engine_id": st.engine.engine_id if st.engine else "",
                    "server_version": st.engine.server_version if st.engine else "",
                    "host_class": self.node_classes[n],
                    "error": st.error,
                }
                for n, st in self.node_states.items()
            }
        self.broken: dict[Cell, str] = {}
        self.manifest = RunManifest(
            status="running",
            started_at=now_iso(),
            mode=mode,
            request=RequestInfo(
                scenarios=[s.name for s in req.scenarios],
                scenario_digests={s.name: s.digest() for s in req.scenarios},
                strategies=list(req.strategies),
                platforms=[p.name for p in req.platforms],
                sizes=list(req.sizes),
                reps=req.reps,
                warmup=req.warmup,
                order=req.order,
                caches=list(req.caches),
                cpus=list(req.cpus),
                emulators=[e.spec for e in req.emulators],
                retries=req.retries,
                registry=req.registry,
                base_image=req.base_image,
                builder=req.builder,
                timeout=req.timeout,
                attribute=req.attribute,
                needs_target_code=[s.name for s in req.scenarios if s.needs_target_code],
                nodes=list(self.node_states),
            ),
            cells=[
                ManifestCell(
                    cell=c.key,
                    scenario=c.scenario,
                    size=c.size,
                    strategy=c.strategy,
                    platform=c.platform,
                    cache=c.cache,
                    cpu=c.cpu,
                    emulator=c.emulator,
                    node=c.node,
                    available=self.availability[c].available,
                    reason=self.availability[c].reason,
                    recipe_sha256=recipe_digest(self.scenarios[c.scenario], c, self.settings(c)),
                )
                for c in self.cells
            ],
            provenance=self.prov,
        )
        self.write_manifest()

    def write_manifest(self) -> None:
        """Write the manifest as it stands. Raises ResultsUnwritable (the old manifest,
        if any, is left whole)."""
        try:
            self.store.write_manifest(self.manifest.to_json())
        except OSError as exc:
            raise ResultsUnwritable(
                f"cannot write {self.store.path / 'manifest.json'}: {exc.strerror or exc}"
            ) from exc

    def settings(self, cell: Cell, nonce: str = "") -> BuildSettings:
        """Return the build settings of `cell`."""
        return _settings(self.req, self.scenarios[cell.scenario], cell, self.host, nonce)

    def named(self, record: Record) -> Record:
        """Return `record` naming in full the emulator its cell ran under: the pinned one
        (package, version, sha256, what it reports; a guest cell's qemu-system package),
        or the host's qemu-user when the run named it as a side of the emulator axis."""
        cell = cell_of(record)
        if record.strategy == "qemu-system" and cell.emulator:
            system = self.req.system_emulator_of(cell)
            if system is not None:
                return replace(record, emulator=system_emulator_facts(system))
            emulator = self.req.emulator_of(cell)
            if emulator is None:
                return record
            # A guest build of several targets ran under several packages of one version.
            return replace(
                record,
                emulator=EmulatorFacts(
                    spec=emulator.spec,
                    version=emulator.version,
                    suite=emulator.suite,
                    tag=emulator.tag,
                ),
            )
        if cell.emulator or (record.strategy == "qemu-user" and record.emulator is None):
            emulator = self.req.emulator_of(cell)
            if emulator is not None:
                return replace(record, emulator=emulator_facts(emulator))
        return record

    def keep(self, record: Record) -> Record:
        """Store `record` now (naming its emulator, see `named`), remember it for the
        summary and return it as stored.

        Raises ResultsUnwritable when the results folder cannot take it (a full disk):
        the record is not stored at all, never in part, and the records before it stay.
        """
        record = self.named(record)
        try:
            with self._keeping:
                self.store.add(record)
                self.summary.records.append(record)
        except OSError as exc:
            raise ResultsUnwritable(
                f"cannot store a {record.kind} record of {record.strategy} "
                f"{record.platform or 'all'} in {self.store.path / 'records'}: "
                f"{exc.strerror or exc}; the records stored before it are kept"
            ) from exc
        return record

    def record_unavailable(self) -> None:
        """Store one `unavailable` record per cell that cannot run here, with the reason."""
        for c in self.cells:
            a = self.availability[c]
            if not a.available:
                self.say(f"  {c.variant} {c.platform} {c.cache}: unavailable ({a.reason})")
                self.keep(
                    _record(
                        c,
                        self.store.run_id,
                        1,
                        "unavailable",
                        0.0,
                        reason=a.reason,
                        provenance=self.prov,
                    )
                )

    def provision(self, cells: list[Cell] | None = None) -> None:
        """Provision `cells` (default: every runnable cell), timed apart from builds."""
        self.broken.update(self._provision_cells(cells if cells is not None else self.runnable))

    def node_answers(self, node: str) -> bool:
        """Return whether the build node `node` answers `docker info` now."""
        try:
            contexts.engine(node, timeout=NODE_PING_S)
        except ArchbenchError:
            return False
        return True

    def class_of(self, cell: Cell) -> str:
        """Return the hardware class `cell` is measured on: its node's, or this host's."""
        return self.node_classes.get(cell.node, "") if cell.node else self.host_class

    def measure(self, cell: Cell, rep: int, warmup: bool = False) -> Record:
        """Build, push and validate one repetition of `cell`; store and return its record."""
        if cell.node and not self.node_answers(cell.node):
            self.say(f"    failed ({NODE_UNREACHABLE}): node {cell.node} does not answer")
            record = _record(
                cell,
                self.store.run_id,
                rep,
                "failed",
                0.0,
                failure_class=NODE_UNREACHABLE,
                log_tail=f"node {cell.node} does not answer `docker info`",
                warmup=warmup,
                provenance=self.prov,
                host_class=self.class_of(cell),
            )
        elif cell in self.broken:
            record = _record(
                cell,
                self.store.run_id,
                rep,
                "failed",
                0.0,
                failure_class="provision",
                log_tail=self.broken[cell],
                warmup=warmup,
                provenance=self.prov,
            )
        elif not registry.ping(self.req.registry):
            # Every build pulls its base from and pushes to the registry: with it gone,
            # the cell fails at once instead of waiting on a build's retries.
            self.say(f"    failed ({REGISTRY_FAILURE}): no registry answers at {self.req.registry}")
            record = _record(
                cell,
                self.store.run_id,
                rep,
                "failed",
                0.0,
                failure_class=REGISTRY_FAILURE,
                log_tail=f"the registry at {self.req.registry} does not answer",
                warmup=warmup,
                provenance=self.prov,
            )
        else:
            record = self._run_cell(cell, rep, warmup)
        return self.keep(record)

    def join_and_combine(self) -> None:
        """Join each strategy's cells into its index and time the combined builds."""
        self.manifest.artifact_comparison = self._join_and_combine(self.runnable)

    def _provision_cells(self, runnable: list[Cell]) -> dict[Cell, str]:
        """Provision each (scenario, strategy, platform): its toolchain stage (or guest image)
        built and cached, timed apart from builds; then prime every warm cell's build cache
        with one untimed build. Returns the cells whose provisioning failed, with the log."""
        broken: dict[Cell, str] = {}
        done: dict[tuple[str, str, str, str, str, str], BuildOutcome] = {}
        for c in runnable:
            # A node builds its own toolchain stage: build caches are per engine.
            key = (c.scenario, c.strategy, c.platform, c.cpu, c.emulator, c.node)
            strategy = REGISTRY[c.strategy]
            scenario = self.scenarios[c.scenario]
            platform = parse_platform(c.platform)
            if key not in done:
                where = f" on node {c.node}" if c.node else ""
                self.say(f"  provisioning {c.variant} toolchain for {c.platform}{where}")
                outcome = strategy.provision(
                    scenario,
                    [platform],
                    _settings(self.req, scenario, c, self.host),
                    self.store.log_path(f"provision-{c.scenario}-{c.variant}-{platform.slug}"),
                )
                done[key] = outcome
                self._keep_provision(c, outcome, "toolchain")
                self.say(f"    {outcome.status} in {outcome.wall_s:.1f} s")
            if done[key].status != "ok":
                broken[c] = done[key].log_tail
            elif c.cache == "warm":
                self.say(f"  priming the warm build cache of {c.variant} {c.platform}")
                settings = _settings(
                    self.req, scenario, c, self.host, nonce=f"{c.key}-prime-{self.store.run_id}"
                )
                tag = cell_tag(image_repo(settings, scenario), c, platform)
                outcome = strategy.build(
                    scenario, [platform], settings, tag, self.store.log_path(f"prime-{c.key}")
                )
                self._keep_provision(c, outcome, "warm-prime")
                if outcome.status not in ("ok", "no-op"):
                    broken[c] = outcome.log_tail
        return broken

    def _keep_provision(self, cell: Cell, outcome: BuildOutcome, phase: str) -> None:
        """Store a provisioning record (`phase`: toolchain or warm-prime) of `cell`."""
        self.keep(
            _record(
                cell,
                self.store.run_id,
                1,
                outcome.status,
                outcome.wall_s,
                kind="provision",
                failure_class=self._failure_of(cell, outcome),
                log_tail=outcome.log_tail,
                extra=outcome.extra,
                phase=phase,
                provenance=self.prov,
                built_on=outcome.built_on,
                host_class=self.class_of(cell),
            )
        )

    def _failure_of(self, cell: Cell, outcome: BuildOutcome) -> str:
        """Return the failure class of a provisioning `outcome`: node-unreachable when
        the cell's node no longer answers, registry when the registry does not."""
        if outcome.status not in ("failed", "timeout"):
            return outcome.failure_class
        if cell.node and not self.node_answers(cell.node):
            return NODE_UNREACHABLE
        if outcome.status == "failed":
            return registry_failure(self.req.registry, outcome.failure_class)
        return outcome.failure_class

    def _join_and_combine(self, runnable: list[Cell]) -> list[dict[str, Any]]:
        """Per (scenario, size, strategy, CPU variant, cache mode): join the cells' images
        into one index (timed and validated); for cold cells also time the one-command
        multi-platform build users run.

        Returns the cross-strategy artifact comparison of cold builds (informational)."""
        reports: dict[tuple[str, int], dict[str, ValidationReport]] = {}
        groups: dict[tuple[str, int, str, str, str, str, str], list[Cell]] = {}
        for c in runnable:
            # Native cells join across nodes (each platform built on its node); an
            # emulating node's qemu-user cells form their own index, apart from this host's.
            node = "" if c.strategy == "native" else c.node
            groups.setdefault(
                (c.scenario, c.size, c.strategy, c.cpu, c.emulator, c.cache, node), []
            ).append(c)
        for (name, size, strategy_name, _cpu, _emulator, cache, node), group in groups.items():
            scenario = self.scenarios[name]
            strategy = REGISTRY[strategy_name]
            first = group[0]
            settings = _settings(self.req, scenario, replace(first, node=""), self.host)
            repo = image_repo(settings, scenario)
            members = set(group)
            last = {
                r.platform: r
                for r in self.summary.records
                if r.kind == "cell" and not r.warmup and cell_of(r) in members
            }
            expected = list(dict.fromkeys(parse_platform(c.platform) for c in group))
            ok = [p for p in expected if p.name in last and last[p.name].status in ("ok", "no-op")]
            suffix = "-".join(x for x in ("" if cache == "cold" else cache, node) if x)
            target = strategy_tag(repo, first.variant, size, suffix)
            if ok:
                record, report = self._join(
                    replace(first, node=node),
                    target,
                    # By digest: another run on the same registry may have moved the tags.
                    [_pinned(last[p.name]) for p in ok],
                    expected,
                )
                self.keep(record)
                if report is not None and cache == "cold":
                    reports.setdefault((name, size), {})[first.variant] = report
            if self.req.combined and cache == "cold" and any(c.node for c in group):
                # One builder with several nodes needs the docker-container driver; with
                # docker-driver nodes (one context each) no single command builds them all.
                self.say(f"  no combined build of {first.variant}: its cells are on nodes")
            elif self.req.combined and cache == "cold":
                platforms = [parse_platform(c.platform) for c in group]
                tag = strategy_tag(repo, first.variant, size, "combined")
                self.say(f"  combined build {first.variant} {','.join(p.name for p in platforms)}")
                log = self.store.log_path(replace(first, platform="combined").key)
                started = now_iso()
                outcome = strategy.build(scenario, platforms, settings, tag, log)
                self.say(f"    {outcome.status} in {outcome.wall_s:.1f} s")
                self.keep(
                    _record(
                        first,
                        self.store.run_id,
                        1,
                        outcome.status,
                        outcome.wall_s,
                        kind="combined",
                        platform="",
                        started_at=started,
                        tag=tag,
                        digest=outcome.digest,
                        failure_class=registry_failure(self.req.registry, outcome.failure_class)
                        if outcome.status == "failed"
                        else outcome.failure_class,
                        log_tail=outcome.log_tail,
                        log_file=str(log),
                        extra=outcome.extra,
                        platforms=tuple(p.name for p in platforms),
                        provenance=self.prov,
                    )
                )
        self._join_fleet(runnable)
        comparison = []
        for (name, size), by_strategy in reports.items():
            for check in compare_artifacts(by_strategy):
                comparison.append({"scenario": name, "size": size, **check.as_dict()})
        return comparison

    def _join_fleet(self, runnable: list[Cell]) -> None:
        """Join what several nodes built into one index per (scenario, size, cache):
        each platform from its node, native where a node is native for it, else its
        qemu-user cell on an emulating node. Pushed as `<repo>:nodes[-warm][-s<N>]` and
        validated like every index; its record (strategy `nodes`) names in `extra`
        which node built each platform. Only runs whose cells span two nodes or more."""
        on_nodes = [c for c in runnable if c.node]
        if len({c.node for c in on_nodes}) < 2:
            return
        groups: dict[tuple[str, int, str], list[Cell]] = {}
        for c in on_nodes:
            groups.setdefault((c.scenario, c.size, c.cache), []).append(c)
        for (name, size, cache), group in groups.items():
            members = set(group)
            chosen: dict[str, Record] = {}
            for r in self.summary.records:
                if r.kind != "cell" or r.warmup or r.status not in ("ok", "no-op"):
                    continue
                if cell_of(r) not in members:
                    continue
                held = chosen.get(r.platform)
                # Native over emulated; of equals, the last repetition, as the
                # strategies' own indexes take it.
                if held is None or r.strategy == "native" or held.strategy != "native":
                    chosen[r.platform] = r
            if len({r.node for r in chosen.values()}) < 2:
                continue
            first = replace(group[0], strategy="nodes", cpu="", node="")
            scenario = self.scenarios[name]
            settings = _settings(self.req, scenario, replace(group[0], node=""), self.host)
            target = strategy_tag(
                image_repo(settings, scenario), "nodes", size, "" if cache == "cold" else cache
            )
            platforms = sorted(chosen)
            record, _ = self._join(
                first,
                target,
                [_pinned(chosen[p]) for p in platforms],
                [parse_platform(p) for p in platforms],
            )
            built = {p: f"{chosen[p].strategy} on {chosen[p].node}" for p in platforms}
            self.keep(replace(record, extra={**record.extra, "built_on": built}))

    def finish(self, status: str | None = None) -> None:
        """Write the manifest's statistics and final status (ok, failed or `status`)."""
        self.manifest.statistics = manifest_statistics(self.summary.records)
        self.manifest.status = status or ("failed" if self.summary.failed else "ok")
        self.manifest.finished_at = now_iso()
        self.write_manifest()

    def _run_cell(self, c: Cell, rep: int, warmup: bool) -> Record:
        """Build one cell once (again, for a flaky failure class, up to --retries times),
        push it, validate it; return its record."""
        scenario = self.scenarios[c.scenario]
        strategy = REGISTRY[c.strategy]
        platform = parse_platform(c.platform)
        # The edit names the cell: BuildKit leaves cache mounts out of a step's cache key, so
        # two cells whose Dockerfiles differ only in their mount (native and qemu-user on the
        # host's platform) would otherwise share one cached warm build.
        nonce = f"{c.key}-{self.store.run_id}-{'w' if warmup else 'r'}{rep}"
        # Only a cell's own build is attributed: not its provisioning, not the combined
        # multi-platform build.
        settings = replace(
            self.settings(c, nonce=nonce),
            attribute=attribution.attributes(self.req.attribute, c.strategy),
        )
        tag = cell_tag(image_repo(settings, scenario), c, platform)
        log = self.store.log_path(f"{c.key}-{'w' if warmup else 'r'}{rep}")
        flakes: list[str] = []
        while True:
            started = now_iso()
            outcome = strategy.build(scenario, [platform], settings, tag, log)
            limit = retry_limit(outcome.failure_class, self.req.retries)
            if len(flakes) < limit:
                flakes.append(outcome.failure_class)
                fault = outcome.extra.get("emulator_fault")
                self.say(
                    f"    {outcome.failure_class}: retrying ({len(flakes)}/{limit})"
                    + (f"; under {fault}" if fault else "")
                )
                continue
            break
        status = outcome.status
        failure = outcome.failure_class
        note = ""
        if status in ("failed", "timeout") and c.node and not self.node_answers(c.node):
            status, failure = "failed", NODE_UNREACHABLE
            note = f"node {c.node} stopped answering during the build"
        elif status == "failed":
            failure = registry_failure(self.req.registry, failure)
        if status in ("ok", "no-op") and (elsewhere := wrong_node(c, outcome.built_on)):
            status, failure, note = "failed", WRONG_NODE, elsewhere
        validation: dict[str, Any] = {}
        report: ValidationReport | None = None
        if status in ("ok", "no-op"):
            ref = f"{tag.rsplit(':', 1)[0]}@{outcome.digest}" if outcome.digest else tag
            try:
                report = validate_image(
                    ref,
                    [platform],
                    host=self.host,
                    artifacts=[a.path for a in scenario.artifacts],
                    expect_output=scenario.smoke_expect,
                    test_command=scenario.test_command,
                    test_expect=scenario.test_expect,
                    # A user's image runs its smoke command, if any, never its own CMD (a
                    # server would not return).
                    smoke=scenario.kind != "dockerfile" or bool(scenario.smoke_command),
                    smoke_command=scenario.smoke_command if scenario.kind == "dockerfile" else (),
                )
            except RegistryUnavailable as exc:
                status, failure, note = "failed", REGISTRY_FAILURE, str(exc)
        if status in ("ok", "no-op") and report is not None:
            validation = report.as_dict()
            if report.passed:
                note = next((x.detail for x in report.checks if x.name == "smoke"), "")
            else:
                # An image that fails validation is a failed cell, whatever its time.
                status = "failed"
                note = "; ".join(f"{x.name}: {x.detail}" for x in report.failures())
        failure = failure or ("validation" if status == "failed" else "")
        self.say(
            f"    {status} in {outcome.wall_s:.1f} s"
            + (f" ({failure})" if failure else "")
            + (f": {note}" if note else "")
        )
        return _record(
            c,
            self.store.run_id,
            rep,
            status,
            outcome.wall_s,
            started_at=started,
            tag=tag,
            digest=outcome.digest,
            failure_class=failure,
            log_tail=outcome.log_tail
            or (note if failure in (REGISTRY_FAILURE, WRONG_NODE, NODE_UNREACHABLE) else ""),
            log_file=str(log),
            validation=validation,
            extra=outcome.extra,
            recipe_sha256=recipe_digest(scenario, c, settings),
            harness_recipe_sha256=harness_recipe_digest(scenario, c, settings),
            flakes=tuple(flakes),
            provenance=self.prov,
            warmup=warmup,
            built_on=outcome.built_on,
            host_class=self.class_of(c),
        )

    def _join(
        self, cell: Cell, target: str, sources: list[str], expected: list[Platform]
    ) -> tuple[Record, ValidationReport | None]:
        """Join the cells' images `sources` (by digest) into the index `target` (timed),
        then validate the index this call pushed, by its digest (the tag may have moved
        since), against every requested and available platform, without smoke runs (each
        cell's image was already run by digest). Returns the record and the validation
        report."""
        scenario = self.scenarios[cell.scenario]
        self.say(f"  joining {cell.variant} into {target}")
        started = now_iso()
        joined = join_index(target, sources)
        if joined.status != "ok":
            failed = _record(
                cell,
                self.store.run_id,
                1,
                "failed",
                joined.wall_s,
                kind="merge",
                platform="",
                started_at=started,
                tag=target,
                failure_class=registry_failure(self.req.registry, joined.failure_class),
                log_tail=joined.log_tail,
                provenance=self.prov,
            )
            return failed, None
        wall = joined.wall_s
        pinned = f"{target.rsplit(':', 1)[0]}@{joined.digest}" if joined.digest else target
        try:
            report = validate_image(
                pinned,
                expected,
                host=self.host,
                artifacts=[a.path for a in scenario.artifacts],
                smoke=False,
            )
        except RegistryUnavailable as exc:
            self.say(f"    failed ({REGISTRY_FAILURE}): {exc}")
            failed = _record(
                cell,
                self.store.run_id,
                1,
                "failed",
                wall,
                kind="merge",
                platform="",
                started_at=started,
                tag=target,
                digest=joined.digest,
                failure_class=REGISTRY_FAILURE,
                log_tail=str(exc)[-LOG_TAIL_CHARS:],
                provenance=self.prov,
            )
            return failed, None
        problems = "; ".join(f"{c.name} {c.platform}: {c.detail}" for c in report.failures())
        self.say(
            f"    {'ok' if report.passed else 'failed'} in {wall:.1f} s"
            + (f": {problems}" if problems else f": {', '.join(sorted(report.platform_digests))}")
        )
        record = _record(
            cell,
            self.store.run_id,
            1,
            "ok" if report.passed else "failed",
            wall,
            kind="merge",
            platform="",
            started_at=started,
            tag=target,
            digest=report.index_digest,
            platform_digests=report.platform_digests,
            failure_class="" if report.passed else "validation",
            validation=report.as_dict(),
            provenance=self.prov,
        )
        return record, report


def execute(req: RunRequest, say: Say) -> RunSummary:
    """Run the whole matrix of `req`, storing every record as it completes.

    Returns the summary. Raises HostNotReady before anything runs when the engine or
    registry is missing; KeyboardInterrupt goes on up after the manifest is written.
    """
    engine = Engine(req, say)
    say(
        f"run {engine.store.run_id}: {len(engine.runnable)} of {len(engine.cells)} cells "
        f"available, {req.reps} repetition(s), {req.warmup} warm-up, {req.order}; "
        f"results in {engine.store.path}"
    )
    try:
        engine.record_unavailable()
        engine.provision()
        plan = schedule(engine.runnable, req.reps, req.warmup, req.order)
        queues = node_queues(plan)
        if len(queues) > 1:
            say(
                f"spreading over {len(queues)} queues at once, one cell at a time each: "
                + ", ".join(f"{n or 'this host'} ({len(q)})" for n, q in queues.items())
            )
            _spread(engine, queues, len(plan))
        else:
            started = time.monotonic()
            last_wall: dict[Cell, float] = {}
            for i, (rep, warm, c) in enumerate(plan, 1):
                kind = f"warm-up {rep}/{req.warmup}" if warm else f"rep {rep}/{req.reps}"
                say(
                    f"[{i}/{len(plan)}] {c.scenario} {c.variant} {c.platform} {c.cache} "
                    f"size {c.size} {kind}; elapsed {_clock(time.monotonic() - started)}"
                    f"{_estimate(plan[i - 1 :], last_wall)}"
                )
                record = engine.measure(c, rep, warm)
                last_wall[c] = record.wall_s
        engine.join_and_combine()
    except KeyboardInterrupt:
        engine.summary.interrupted = True
        engine.finish("interrupted")
        raise
    except ResultsUnwritable as exc:
        # Most likely the manifest cannot be written either; then the last one stays.
        engine.manifest.error = str(exc)
        with contextlib.suppress(ResultsUnwritable):
            engine.finish("failed")
        raise
    engine.finish()
    for key, st in (engine.manifest.statistics or {}).items():
        for warning in st["warnings"]:
            say(f"  warning: {key}: {warning}")
    return engine.summary


Plan = list[tuple[int, bool, Cell]]


def node_queues(plan: Plan) -> dict[str, Plan]:
    """Return `plan` split into one queue per build node ('' for this host's engine),
    each in the plan's order, queues in order of first appearance. A cell's repetitions
    all land in its node's queue: a node is part of the cell, so they never mix machines."""
    queues: dict[str, Plan] = {}
    for step in plan:
        queues.setdefault(step[2].node, []).append(step)
    return queues


def _spread(engine: Engine, queues: dict[str, Plan], total: int) -> None:
    """Run each queue in its own thread, one cell at a time per queue, all queues at once.

    Raises what a queue raised (ResultsUnwritable) once every queue stopped; on Ctrl-C
    or SIGTERM (in the main thread), stops every queue, ends the builds running in them
    and raises KeyboardInterrupt.
    """
    stop = threading.Event()
    errors: list[BaseException] = []
    counter = iter(range(1, total + 1))
    counting = threading.Lock()
    started = time.monotonic()

    def work(node: str, queue: Plan) -> None:
        try:
            for rep, warm, c in queue:
                if stop.is_set():
                    return
                with counting:
                    i = next(counter)
                kind = f"warm-up {rep}/{engine.req.warmup}" if warm else f"rep {rep}"
                engine.say(
                    f"[{i}/{total}] {node or 'this host'}: {c.scenario} {c.variant} "
                    f"{c.platform} {c.cache} size {c.size} {kind}; "
                    f"elapsed {_clock(time.monotonic() - started)}"
                )
                engine.measure(c, rep, warm)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=work, args=(n, q), name=f"archbench-{n or 'host'}", daemon=True)
        for n, q in queues.items()
    ]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
    except KeyboardInterrupt:
        stop.set()
        proc.terminate_all()
        for t in threads:
            t.join(timeout=proc.GRACE_SECONDS * 2)
        raise
    if errors:
        raise errors[0]


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def _estimate(remaining: list[tuple[int, bool, Cell]], last_wall: dict[Cell, float]) -> str:
    """Return ', about XmYYs left' from each remaining cell's last build time (cells not
    built yet count as the mean of those built), or '' before any build finished."""
    if not last_wall:
        return ""
    mean = sum(last_wall.values()) / len(last_wall)
    left = sum(last_wall.get(c, mean) for _, _, c in remaining)
    return f", about {_clock(left)} left"


def manifest_statistics(records: list[Record]) -> dict[str, dict[str, Any]]:
    """Return what the manifest's `statistics` holds: `stats.describe` of the measured ok
    repetitions of each cell, as a dict keyed by the cell's key. (Reports build their own
    table of the stored records, `bench.report.frame.cell_statistics`.)"""
    samples: dict[str, list[float]] = {}
    for r in records:
        if r.kind == "cell" and r.status == "ok" and not r.warmup:
            samples.setdefault(cell_of(r).key, []).append(r.wall_s)
    return {key: stats.describe(xs).as_dict() for key, xs in samples.items()}
