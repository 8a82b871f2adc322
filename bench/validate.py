"""Checks on a pushed multi-arch image: the index and its platforms, and a smoke run of
each platform by digest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.errors import ArchbenchError
from bench.platforms import Platform
from bench.tools import docker, qemu, registry

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@dataclass(frozen=True)
class Check:
    """One check's outcome: which, for which platform ('' for the whole image), and what
    was found."""

    name: str
    platform: str
    passed: bool
    detail: str
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_attestation(entry: dict[str, Any]) -> bool:
    """Return whether an index entry is an attestation manifest, not an image."""
    annotations = entry.get("annotations") or {}
    plat = entry.get("platform") or {}
    return annotations.get("vnd.docker.reference.type") == "attestation-manifest" or (
        plat.get("os") == "unknown" and plat.get("architecture") == "unknown"
    )


def platform_name(entry: dict[str, Any]) -> str:
    """Return os/arch[/variant] of an index entry."""
    plat = entry.get("platform") or {}
    name = f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"
    return name + (f"/{plat['variant']}" if plat.get("variant") else "")


def image_platforms(body: dict[str, Any]) -> dict[str, str]:
    """Return {platform: digest} of the image entries of an index (attestations left out)."""
    return {
        platform_name(e): str(e.get("digest", ""))
        for e in body.get("manifests", [])
        if not is_attestation(e)
    }


def check_index(ref: str, expected: Sequence[Platform]) -> tuple[list[Check], dict[str, str]]:
    """Check that `ref` is an index whose image platforms are exactly `expected`.

    Returns the checks and the {platform: digest} map found.
    """
    try:
        manifest = registry.get_manifest(ref)
    except (LookupError, ArchbenchError) as exc:
        return [Check("index", "", False, str(exc))], {}
    if manifest.media_type not in INDEX_TYPES:
        return [
            Check(
                "index",
                "",
                False,
                f"{ref} is a single manifest ({manifest.media_type}), not an index",
            )
        ], {}
    found = image_platforms(manifest.body)
    attestations = sum(1 for e in manifest.body.get("manifests", []) if is_attestation(e))
    checks = [
        Check(
            "index",
            "",
            True,
            f"{manifest.media_type}, digest {manifest.digest}, "
            f"{attestations} attestation manifest(s) skipped",
        )
    ]
    want = {p.name for p in expected}
    missing = sorted(want - set(found))
    extra = sorted(set(found) - want)
    detail = f"found {', '.join(sorted(found)) or 'none'}"
    if missing:
        detail += f"; missing {', '.join(missing)}"
    if extra:
        detail += f"; unexpected {', '.join(extra)}"
    checks.append(Check("platforms", "", not missing and not extra, detail))
    return checks, found


def smoke_run(ref: str, platform: Platform, expect: str, host: Platform) -> Check:
    """Run `ref` (best by digest) for `platform` through its own CMD and compare output.

    `expect` is a substring the output must contain; empty means exit 0 suffices.
    """
    how = "natively" if platform == host else "under qemu-user"
    if platform != host:
        entry = qemu.read_binfmt(platform.qemu_name)
        if entry is None or not entry.enabled:
            # No emulator to run it: the image is not at fault, so this is not a failure.
            return Check(
                "smoke",
                platform.name,
                True,
                f"not run: no enabled binfmt_misc handler qemu-{platform.qemu_name} on this host",
                skipped=True,
            )
    try:
        done = docker.run_image(ref, platform.name, pull="always")
    except ArchbenchError as exc:
        return Check("smoke", platform.name, False, f"could not run ({how}): {exc}")
    out = done.stdout.strip()
    if not done.ok:
        return Check("smoke", platform.name, False, f"exit {done.returncode} {how}: {done.tail(3)}")
    if expect and expect not in out:
        return Check(
            "smoke",
            platform.name,
            False,
            f"printed {out!r} {how}; expected it to contain {expect!r}",
        )
    return Check("smoke", platform.name, True, f"printed {out!r} {how}")
