"""`archbench gc`: free what no stored run refers to: registry images and warm-build caches."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.engine.matrix import cell_of
from bench.engine.results import Record, list_runs, load_run
from bench.errors import RegistryUnavailable
from bench.host import services
from bench.host.setup import BASE_REPO, HUB_REPO
from bench.platforms import parse_platform
from bench.strategies.dockerfile import cache_mount_id
from bench.tools import docker, registry

Say = Callable[[str], None]


@dataclass
class Collection:
    """What gc found unreferenced, and what it kept."""

    manifests: list[tuple[str, str]] = field(default_factory=list)  # (repo, digest)
    cache_mounts: list[str] = field(default_factory=list)
    kept_manifests: int = 0


def referred(records: Iterable[Record]) -> tuple[set[str], set[str]]:
    """Return (manifest digests, cache mount ids) the `records` refer to."""
    digests: set[str] = set()
    mounts: set[str] = set()
    for r in records:
        if r.digest:
            digests.add(r.digest)
        digests.update(d for d in r.platform_digests.values() if d)
        if r.kind == "cell" and r.strategy and r.platform and r.platform != "all":
            try:
                p = parse_platform(r.platform)
            except Exception:  # a record of a platform this archbench no longer knows
                continue
            mounts.add(
                cache_mount_id(
                    r.scenario,
                    r.strategy,
                    r.cpu,
                    r.size,
                    p.architecture + p.variant,
                    cell_of(r).emulator,
                )
            )
    return digests, mounts


def _is_base(repo: str) -> bool:
    return repo == BASE_REPO or repo.startswith(HUB_REPO.split("/")[0] + "/")


def _children(address: str, repo: str, digest: str) -> set[str]:
    try:
        manifest = registry.get_manifest(f"{address}/{repo}@{digest}")
    except LookupError:
        return set()
    return {str(m.get("digest")) for m in manifest.body.get("manifests", []) if m.get("digest")}


def collect(results: Path, address: str, storage: Path | None = None) -> Collection:
    """Return the registry manifests and cache mounts no run under `results` refers to.

    Base images are always kept. An index that is kept keeps the manifests it lists.
    Raises RegistryUnavailable.
    """
    storage = storage or registry.storage_dir(address)
    records: list[Record] = []
    for run in list_runs(results):
        records.extend(load_run(run)[1])
    digests, mounts = referred(records)
    found = Collection()
    for repo in registry.repositories(storage):
        if _is_base(repo):
            continue
        stored = registry.stored_manifests(repo, storage)
        keep = {d for d in stored if d in digests}
        for d in list(keep):
            keep |= _children(address, repo, d)
        for d in stored:
            if d in keep:
                found.kept_manifests += 1
            else:
                found.manifests.append((repo, d))
    found.cache_mounts = sorted(m for m in docker.cache_mounts("archbench-") if m not in mounts)
    return found


def gc(results: Path, address: str, dry_run: bool, say: Say) -> Collection:
    """Remove what `collect` finds (unless `dry_run`), then free the registry's blobs.

    Raises RegistryUnavailable when the registry does not answer.
    """
    services.ensure_registry(address, say)
    found = collect(results, address)
    verb = "would remove" if dry_run else "removing"
    say(
        f"{verb} {len(found.manifests)} registry manifest(s) no stored run refers to "
        f"(keeping {found.kept_manifests}, and the base images)"
    )
    for repo, digest in found.manifests:
        say(f"  {address}/{repo}@{digest}")
    say(f"{verb} {len(found.cache_mounts)} warm-build cache mount(s) of cells no stored run holds")
    for mount in found.cache_mounts:
        say(f"  {mount}")
    if dry_run:
        return found
    for repo, digest in found.manifests:
        registry.delete_manifest(address, repo, digest)
    records = docker.cache_mounts("archbench-")
    for mount in found.cache_mounts:
        docker.prune_cache_records(records.get(mount, []))
    if found.manifests:
        config = services.config_path(address)
        if not config.exists():
            raise RegistryUnavailable(f"no configuration for the registry at {address}: {config}")
        say("freeing the deleted images' layers (registry garbage-collect)")
        registry.garbage_collect(config, log_path=services.LOG_DIR / "gc.log")
    return found
