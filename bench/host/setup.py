"""`archbench setup`: provision the host idempotently.

Each capability is a step that checks itself by its effect and repairs what fails; a
second run on a provisioned host only checks.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.errors import ArchbenchError, CommandFailed, HostNotReady
from bench.host import record as hostrecord
from bench.host import services
from bench.paths import CACHE_DIR
from bench.platforms import DEFAULT_SUITE, Platform, host_platform, parse_platform
from bench.tools import apt, docker, mmdebstrap, net, proc, qemu, registry

DAEMON_JSON = Path("/etc/docker/daemon.json")
TRIXIE_SOURCES = Path("/etc/apt/sources.list.d/archbench-trixie.sources")
TRIXIE_PIN = Path("/etc/apt/preferences.d/archbench-trixie")
# Configuration that setup may create; teardown removes only those that it did create.
OWN_CONFIG_FILES = (DAEMON_JSON, TRIXIE_SOURCES, TRIXIE_PIN)
# State the engine's and registry's packages create on first start; `teardown --purge`
# removes those that did not exist before setup.
PACKAGE_STATE_DIRS = tuple(
    Path(p)
    for p in (
        "/var/lib/docker",
        "/var/lib/containerd",
        "/var/lib/docker-registry",
        "/etc/docker",
        "/etc/containerd",
        "/run/docker",
        "/run/containerd",
    )
)
BASE_REPO = "archbench/debian"
HUB_REPO = "library/debian"

ENGINE_PACKAGES = ("docker.io/trixie", "docker-buildx/trixie")
# Every program archbench, or a tool it calls, runs on the host, with the package that
# brings it and why. Setup installs by name: Recommends are never relied on (mmdebstrap
# only recommends arch-test, without which every foreign bootstrap stops).
HOST_PROGRAMS: dict[str, tuple[str, str]] = {
    "qemu-aarch64-static": ("qemu-user-static", "foreign binaries through binfmt_misc"),
    "update-binfmts": ("binfmt-support", "registers qemu-user with the F flag"),
    "docker-registry": ("docker-registry", "the private registry on loopback"),
    "mmdebstrap": ("mmdebstrap", "base images and guest roots from Debian's archive"),
    "arch-test": ("arch-test", "mmdebstrap's check before a foreign bootstrap"),
    "qemu-system-aarch64": ("qemu-system-arm", "arm64 full-system guests"),
    "qemu-system-x86_64": ("qemu-system-x86", "amd64 full-system guests"),
    "depmod": ("kmod", "module dependencies of a guest kernel"),
    "mkfs.ext4": ("e2fsprogs", "guest disks written without a mount"),
    "debugfs": ("e2fsprogs", "artifacts read out of a guest's disk"),
    "dpkg-deb": ("dpkg", "unpacking packages (mmdebstrap, guest kernels)"),
    "mount": ("mount", "binfmt_misc, and mmdebstrap's root mode"),
}
# Packages with no program to look for.
HOST_DATA_PACKAGES = ("ca-certificates",)
HOST_PACKAGES = tuple(
    dict.fromkeys([*(pkg for pkg, _ in HOST_PROGRAMS.values()), *HOST_DATA_PACKAGES])
)


def missing_host_packages() -> list[str]:
    """Return the host packages to install: those not installed, and those whose
    program is not on PATH (checked by effect, not by dpkg's word alone)."""
    wanted = [p for p in HOST_PACKAGES if not apt.installed_version(p)]
    for program, (package, _why) in HOST_PROGRAMS.items():
        if shutil.which(program) is None and package not in wanted:
            wanted.append(package)
    return wanted


Say = Callable[[str], None]


@dataclass(frozen=True)
class StepOutcome:
    """What one setup step found and did."""

    name: str
    ok: bool
    changed: bool
    detail: str


@dataclass(frozen=True)
class SetupOptions:
    """What `archbench setup` was asked for."""

    registry: str
    platforms: tuple[Platform, ...]
    builder_image: str | None = None


def base_image_ref(
    address: str, platform: Platform | None = None, suite: str = DEFAULT_SUITE
) -> str:
    """Return the base image reference in the local registry (per platform or the index)."""
    tag = suite if platform is None else f"{suite}-{platform.slug}"
    return f"{address}/{BASE_REPO}:{tag}"


def suites_wanted(platforms: Sequence[Platform], host: Platform) -> dict[str, list[Platform]]:
    """Return {Debian suite: platforms its base image index needs}: each platform's own
    suite, and in each suite the host's platform too, where cross builds run."""
    wanted: dict[str, list[Platform]] = {}
    for p in platforms:
        wanted.setdefault(p.suite, [])
        for q in (host, p):
            if q not in wanted[p.suite]:
                wanted[p.suite].append(q)
    return wanted


# ---- engine -----------------------------------------------------------------------------


def _engine_suitable() -> tuple[bool, str]:
    try:
        info = docker.engine_info(timeout=15)
    except ArchbenchError as exc:
        return False, str(exc)
    bx = docker.buildx_version()
    if not bx:
        return False, f"engine {info.server_version} has no buildx plugin"
    if not info.containerd_store:
        return False, f"engine {info.server_version} does not use the containerd image store"
    return True, f"engine {info.server_version}, {bx}, containerd image store"


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def ensure_trixie_source(say: Say) -> bool:
    """Add Debian trixie as a low-priority apt source (for docker.io 26 and buildx).

    Returns whether anything changed. Only the packages asked for with `/trixie` come
    from it; the pin keeps every other package on bookworm.
    """
    mirror = apt.debian_mirror()
    changed = _write_if_changed(
        TRIXIE_SOURCES,
        (
            "Types: deb\n"
            f"URIs: {mirror}\n"
            "Suites: trixie\n"
            "Components: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )
    changed |= _write_if_changed(
        TRIXIE_PIN, ("Package: *\nPin: release n=trixie\nPin-Priority: 100\n")
    )
    if changed:
        say(
            f"added Debian trixie ({mirror}) as an apt source pinned at priority 100: "
            "bookworm's docker.io 20.10 has no buildx and no multi-platform builds"
        )
    return changed


def ensure_packages(say: Say, log: Path) -> StepOutcome:
    """Install the host packages that are missing."""
    engine_ok, _ = _engine_suitable()
    wanted: list[str] = []
    if not engine_ok and not (
        apt.installed_version("docker.io").startswith(("26", "27", "28"))
        and shutil.which("dockerd")
    ):
        wanted.extend(ENGINE_PACKAGES)
    wanted.extend(missing_host_packages())
    if not wanted:
        return StepOutcome("packages", True, False, "all host packages installed")
    if any(p.endswith("/trixie") for p in wanted):
        ensure_trixie_source(say)
    why = {pkg: reason for pkg, reason in HOST_PROGRAMS.values()}
    why.update({p: "Docker Engine 26 with buildx: multi-platform builds" for p in ENGINE_PACKAGES})
    say("installing " + "; ".join(f"{p} ({why[p]})" if p in why else p for p in wanted))
    before = apt.installed_packages()
    apt.update(log_path=log)
    try:
        apt.install(wanted, log_path=log)
    finally:
        # dpkg's own difference, recorded even when the install stopped half-way, is
        # exactly what `teardown --purge` may remove: nothing that was there before.
        added = sorted(apt.installed_packages() - before)
        if added:
            hostrecord.add_packages(added)
    still = [
        f"{prog} ({pkg})" for prog, (pkg, _) in HOST_PROGRAMS.items() if not shutil.which(prog)
    ]
    if still:
        raise HostNotReady("installed, yet not on PATH: " + ", ".join(still))
    return StepOutcome("packages", True, True, "installed " + ", ".join(wanted))


def daemon_config(current: dict[str, object], address: str) -> dict[str, object]:
    """Return `current` daemon.json with what archbench needs merged in (pure)."""
    cfg = dict(current)
    features = dict(cfg.get("features") or {})  # type: ignore[call-overload]
    features["containerd-snapshotter"] = True
    cfg["features"] = features
    mirror = f"http://{address}"
    mirrors = list(cfg.get("registry-mirrors") or [])  # type: ignore[call-overload]
    if mirror not in mirrors:
        mirrors.append(mirror)
    cfg["registry-mirrors"] = mirrors
    insecure = list(cfg.get("insecure-registries") or [])  # type: ignore[call-overload]
    if address not in insecure:
        insecure.append(address)
    cfg["insecure-registries"] = insecure
    return cfg


def ensure_engine_running(say: Say, address: str) -> StepOutcome:
    """Write daemon.json (containerd store, the local registry as Docker Hub mirror) and
    make sure dockerd runs with it, restarting it when the file changed."""
    current: dict[str, object] = {}
    if DAEMON_JSON.exists():
        try:
            current = json.loads(DAEMON_JSON.read_text() or "{}")
        except json.JSONDecodeError as exc:
            raise HostNotReady(f"{DAEMON_JSON} is not valid JSON: {exc}") from exc
    wanted = daemon_config(current, address)
    changed = False
    if wanted != current:
        if DAEMON_JSON.exists() and not hostrecord.DAEMON_JSON_BEFORE.exists():
            # The host had its own daemon.json: keep it, so teardown puts it back as it was.
            hostrecord.DAEMON_JSON_BEFORE.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(DAEMON_JSON, hostrecord.DAEMON_JSON_BEFORE)
        _write_if_changed(DAEMON_JSON, json.dumps(wanted, indent=2) + "\n")
        say(
            f"wrote {DAEMON_JSON}: containerd image store (multi-platform images), "
            f"{address} as Docker Hub mirror and insecure (plain HTTP) registry"
        )
        if services.engine_answers():
            services.stop_engine(say)
        changed = True
    if not services.engine_answers():
        rules = net.saved_rules()
        hostrecord.keep_network_before(
            {"ip_forward": net.ip_forward(), "forward_policy": net.forward_policy(rules)}
        )
    services.ensure_engine(say)
    ok, detail = _engine_suitable()
    if not ok:
        raise HostNotReady(f"the Docker engine is not suitable: {detail}")
    return StepOutcome("engine", True, changed, detail)


# ---- binfmt ------------------------------------------------------------------------------


def ensure_binfmt(say: Say, platforms: Sequence[Platform]) -> StepOutcome:
    """Mount binfmt_misc and register qemu-user for each foreign platform with flag F."""
    changed = False
    if not qemu.binfmt_mounted():
        say("mounting binfmt_misc at /proc/sys/fs/binfmt_misc")
        subprocess_run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(qemu.BINFMT_DIR)])
        changed = True
    native = host_platform()
    details = []
    for p in platforms:
        if p == native:
            continue
        entry = qemu.read_binfmt(p.qemu_name)
        if entry is None or not entry.enabled:
            say(f"registering qemu-{p.qemu_name} in binfmt_misc (runs {p.name} binaries)")
            subprocess_run(["update-binfmts", "--import", f"qemu-{p.qemu_name}"], check=False)
            subprocess_run(["update-binfmts", "--enable", f"qemu-{p.qemu_name}"], check=False)
            entry = qemu.read_binfmt(p.qemu_name)
            changed = True
        if entry is None or not entry.enabled:
            raise HostNotReady(f"qemu-{p.qemu_name} could not be registered in binfmt_misc")
        if not entry.fix_binary:
            raise HostNotReady(
                f"qemu-{p.qemu_name} is registered without the F flag "
                f"(flags {entry.flags!r}); containers cannot use it"
            )
        details.append(f"{p.architecture}: {entry.interpreter} flags {entry.flags}")
    return StepOutcome("binfmt", True, changed, "; ".join(details) or "no foreign platform")


def subprocess_run(argv: Sequence[str], check: bool = True) -> None:
    """Run a short host administration command through the choke point."""
    proc.run(argv, timeout=120, check=check)


# ---- registry ----------------------------------------------------------------------------


def configure_registry(say: Say, address: str) -> StepOutcome:
    """Configure Debian's docker-registry on `address` (loopback only) and start it."""
    registry.require_loopback(address)
    config = services.config_path(address)
    storage = registry.storage_dir(address)
    changed = _write_if_changed(config, registry.config_text(address, storage))
    if changed:
        say(f"wrote {config}: plain-HTTP registry on {address}, storage {storage}")
    storage.mkdir(parents=True, exist_ok=True)
    was_up = registry.ping(address)
    services.ensure_registry(address, say)
    return StepOutcome("registry", True, changed or not was_up, f"GET http://{address}/v2/ -> 200")


# ---- base images -------------------------------------------------------------------------


def _index_platforms(ref: str) -> set[str]:
    try:
        manifest = registry.get_manifest(ref)
    except LookupError:
        return set()
    found = set()
    for entry in manifest.body.get("manifests", []):
        plat = entry.get("platform", {})
        name = f"{plat.get('os')}/{plat.get('architecture')}"
        if plat.get("variant"):
            name += f"/{plat['variant']}"
        found.add(name)
    return found


def ensure_base_images(
    say: Say, address: str, platforms: Sequence[Platform], log: Path
) -> StepOutcome:
    """Bootstrap Debian per platform in its suite (bookworm; trixie for riscv64), push
    it, and join each suite's platforms into one index under archbench's name and under
    Docker Hub's `library/debian:<suite>`."""
    details, changed = [], False
    for suite, members in suites_wanted(platforms, host_platform()).items():
        did, detail = _ensure_suite(say, address, suite, members, log)
        changed |= did
        details.append(detail)
    return StepOutcome("base-images", True, changed, "; ".join(details))


def _ensure_suite(
    say: Say, address: str, suite: str, platforms: Sequence[Platform], log: Path
) -> tuple[bool, str]:
    wanted = {p.name for p in platforms}
    hub_ref = f"{address}/{HUB_REPO}:{suite}"
    own_ref = base_image_ref(address, suite=suite)
    indexed = _index_platforms(own_ref)
    have = indexed & _index_platforms(hub_ref)
    if wanted <= have:
        return False, f"{own_ref} and {hub_ref}: {', '.join(sorted(have))}"
    mirror = apt.debian_mirror()
    cache = CACHE_DIR / "base"
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{mirror}|{suite}|minbase".encode()).hexdigest()[:12]
    # Platforms already in the index stay in it: setup only ever adds.
    everything = sorted(wanted | indexed)
    members = [parse_platform(n) for n in everything]
    for p in members:
        tarball = cache / f"debian-{suite}-{p.debian_arch}-{key}.tar"
        if not tarball.exists():
            say(
                f"bootstrapping Debian {suite} for {p.name} with mmdebstrap "
                f"(no public registry here; {'emulated' if p != host_platform() else 'native'})"
            )
            mmdebstrap.bootstrap(p.debian_arch, suite, tarball, mirror, log_path=log)
        tag = base_image_ref(address, p, suite)
        if p.name not in indexed or not _has_manifest(tag):
            say(f"importing and pushing {tag}")
            docker.image_import(tarball, p.name, tag)
            docker.push(tag)
    sources = [base_image_ref(address, p, suite) for p in members]
    for ref in (own_ref, hub_ref):
        say(f"joining {len(sources)} platform(s) into the index {ref}")
        docker.imagetools_create(ref, sources)
    return True, f"{own_ref} and {hub_ref}: " + ", ".join(everything)


def _has_manifest(ref: str) -> bool:
    try:
        registry.get_manifest(ref)
    except LookupError:
        return False
    return True


def check_foreign_run(address: str, platforms: Sequence[Platform]) -> StepOutcome:
    """Run `uname -m` in the base image of every platform: proves engine, registry,
    base image and binfmt together. Raises HostNotReady when one prints the wrong arch."""
    seen = []
    for p in platforms:
        done = docker.run_image(
            base_image_ref(address, suite=p.suite), p.name, args=["uname", "-m"], pull="always"
        )
        got = done.stdout.strip()
        if not done.ok or got != p.uname:
            raise HostNotReady(
                f"a {p.name} container printed {got!r} (exit {done.returncode}), "
                f"expected {p.uname!r}: {done.tail(3)}"
            )
        seen.append(f"{p.architecture}={got}")
    return StepOutcome("foreign-run", True, False, "uname -m: " + ", ".join(seen))


def setup(options: SetupOptions, say: Say) -> list[StepOutcome]:
    """Provision the host for `options` and return what each step found and did.

    Raises HostNotReady or CommandFailed when a step cannot be repaired.
    """
    log = services.LOG_DIR / "setup.log"
    handlers_before = qemu.binfmt_names()
    config_before = {p for p in OWN_CONFIG_FILES if p.exists()}
    dirs_before = {p for p in PACKAGE_STATE_DIRS if p.exists()}
    try:
        outcomes = [ensure_packages(say, log)]
        outcomes.append(ensure_binfmt(say, options.platforms))
        outcomes += _setup_services(options, say, log)
    finally:
        # Handlers and files that appeared during setup (a package's postinst,
        # update-binfmts, our own writes) are setup's to remove; the host's own are not.
        added = qemu.binfmt_names() - handlers_before
        if added:
            hostrecord.add_binfmt(added)
        created = {p for p in OWN_CONFIG_FILES if p.exists()} - config_before
        if created:
            hostrecord.add_files(created)
        appeared = {p for p in PACKAGE_STATE_DIRS if p.exists()} - dirs_before
        if appeared:
            hostrecord.add_dirs(appeared)
    return outcomes


def _setup_services(options: SetupOptions, say: Say, log: Path) -> list[StepOutcome]:
    outcomes = []
    outcomes.append(configure_registry(say, options.registry))
    outcomes.append(ensure_engine_running(say, options.registry))
    outcomes.append(ensure_base_images(say, options.registry, options.platforms, log))
    outcomes.append(check_foreign_run(options.registry, options.platforms))
    if options.builder_image:
        outcomes.append(ensure_container_builder(say, options.registry, options.builder_image))
    return outcomes


BUILDER_NAME = "archbench-container"


def buildkitd_toml(address: str) -> str:
    """Return the buildkitd configuration of the reference workflow for `address`."""
    return (
        f'[registry."docker.io"]\n  mirrors = ["{address}"]\n  http = true\n  insecure = true\n\n'
        f'[registry."{address}"]\n  http = true\n  insecure = true\n'
    )


def ensure_container_builder(say: Say, address: str, image: str) -> StepOutcome:
    """Create the docker-container builder `archbench-container` from BuildKit `image`."""
    toml = CACHE_DIR / "buildkitd.toml"
    _write_if_changed(toml, buildkitd_toml(address))
    existing = proc.run([docker.DOCKER, "buildx", "inspect", BUILDER_NAME], timeout=30)
    if existing.ok:
        return StepOutcome("builder", True, False, f"{BUILDER_NAME} exists")
    say(f"creating buildx builder {BUILDER_NAME} (docker-container driver, image {image})")
    try:
        proc.run(
            [
                docker.DOCKER,
                "buildx",
                "create",
                "--name",
                BUILDER_NAME,
                "--driver",
                "docker-container",
                "--driver-opt",
                f"image={image}",
                "--driver-opt",
                "network=host",
                "--config",
                str(toml),
                "--bootstrap",
            ],
            timeout=300,
            check=True,
        )
    except CommandFailed as exc:
        raise HostNotReady(
            f"builder {BUILDER_NAME} could not start with {image}: {exc.tail[-300:]}"
        ) from exc
    return StepOutcome("builder", True, True, f"{BUILDER_NAME} created from {image}")
