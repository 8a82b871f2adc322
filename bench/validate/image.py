"""Validate a pushed multi-arch image for real.

1. the reference resolves to an index (a single manifest only where one platform is
   expected); 2. its image platforms are exactly the expected set (attestation manifests
   recognised and left out); 3. each platform's config agrees with its index entry;
4. each declared artifact, read out of the platform's layers without running anything,
   is an ELF for that platform; 5. each platform runs by digest through its own CMD and
   prints what is expected; 6. (several images) the same artifact is compared across
   images by sha256, reported but never failed.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from elftools.elf.elffile import ELFFile

from bench.errors import ArchbenchError
from bench.platforms import Platform
from bench.scenarios.loader import fill
from bench.tools import docker, qemu, registry
from bench.validate import elf as elfcheck
from bench.validate import layers as imagefs

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@dataclass(frozen=True)
class Check:
    """One check's outcome: which, for which platform ('' for the whole image), and what
    was found. A skipped check could not run here and is not a failure."""

    name: str
    platform: str
    passed: bool
    detail: str
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidationReport:
    """Every check on one image reference, and what was read on the way."""

    ref: str
    checks: list[Check] = field(default_factory=list)
    platform_digests: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    smoke_outputs: dict[str, str] = field(default_factory=dict)
    index_digest: str = ""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary (artifact bytes as sha256)."""
        return {
            "ref": self.ref,
            "passed": self.passed,
            "index_digest": self.index_digest,
            "platform_digests": self.platform_digests,
            "artifact_sha256": {
                p: {path: hashlib.sha256(b).hexdigest() for path, b in files.items()}
                for p, files in self.artifacts.items()
            },
            "checks": [c.as_dict() for c in self.checks],
        }


def is_attestation(entry: dict[str, Any]) -> bool:
    """Return whether an index entry is an attestation manifest, not an image."""
    annotations = entry.get("annotations") or {}
    plat = entry.get("platform") or {}
    return annotations.get("vnd.docker.reference.type") == "attestation-manifest" or (
        plat.get("os") == "unknown" and plat.get("architecture") == "unknown"
    )


def platform_name(plat: dict[str, Any]) -> str:
    """Return os/arch[/variant] of an OCI platform object."""
    name = f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"
    return name + (f"/{plat['variant']}" if plat.get("variant") else "")


def image_platforms(body: dict[str, Any]) -> dict[str, str]:
    """Return {platform: digest} of the image entries of an index (attestations left out)."""
    return {
        platform_name(e.get("platform") or {}): str(e.get("digest", ""))
        for e in body.get("manifests", [])
        if not is_attestation(e)
    }


def _config(host: str, repo: str, manifest: dict[str, Any]) -> dict[str, Any]:
    digest = manifest.get("config", {}).get("digest", "")
    data: dict[str, Any] = json.loads(registry.get_blob(host, repo, digest))
    return data


def _check_config(platform: str, config: dict[str, Any]) -> Check:
    cfg_platform = platform_name(config)
    if cfg_platform == platform:
        return Check("config", platform, True, f"config says {cfg_platform}")
    return Check(
        "config", platform, False, f"index entry says {platform}, image config says {cfg_platform}"
    )


def _check_artifact(platform: Platform, path: str, data: bytes | None) -> Check:
    if data is None:
        return Check("elf", platform.name, False, f"{path} is not in the {platform.name} image")
    try:
        facts = elfcheck.read_elf(data)
    except ValueError as exc:
        return Check("elf", platform.name, False, f"{path}: {exc}")
    wrong = elfcheck.mismatches(facts, platform)
    if wrong:
        return Check(
            "elf", platform.name, False, f"{path} is {facts.describe()}: " + "; ".join(wrong)
        )
    return Check("elf", platform.name, True, f"{path} is {facts.describe()}")


def smoke_run(
    ref: str,
    platform: Platform,
    expect: str,
    host: Platform,
    command: Sequence[str] = (),
    check: str = "smoke",
) -> Check:
    """Run `ref` (best by digest) for `platform` through its own CMD (or `command`) and
    compare its output.

    `expect` is a substring the output must contain; empty means exit 0 suffices. A
    foreign platform with no enabled binfmt_misc handler is skipped, not failed. `check`
    names the result: "smoke" for the CMD, "test" for the scenario's test command.
    """
    how = "natively" if platform == host else "under qemu-user"
    if platform != host:
        entry = qemu.read_binfmt(platform.qemu_name)
        if entry is None or not entry.enabled:
            # No emulator to run it: the image is not at fault, so this is not a failure.
            return Check(
                check,
                platform.name,
                True,
                f"not run: no enabled binfmt_misc handler qemu-{platform.qemu_name} on this host",
                skipped=True,
            )
    try:
        done = docker.run_image(ref, platform.name, args=list(command), pull="always")
    except ArchbenchError as exc:
        return Check(check, platform.name, False, f"could not run ({how}): {exc}")
    out = done.stdout.strip()
    shown = out if len(out) <= 300 else f"...{out[-300:]}"
    if not done.ok:
        return Check(check, platform.name, False, f"exit {done.returncode} {how}: {done.tail(3)}")
    if expect and expect not in out:
        return Check(
            check,
            platform.name,
            False,
            f"printed {shown!r} {how}; expected it to contain {expect!r}",
        )
    return Check(check, platform.name, True, f"printed {shown!r} {how}")


def validate_image(
    ref: str,
    expected: Sequence[Platform],
    *,
    host: Platform,
    artifacts: Sequence[str] = (),
    expect_output: str | None = None,
    smoke: bool = True,
    test_command: Sequence[str] = (),
    test_expect: str = "",
    smoke_command: Sequence[str] = (),
) -> ValidationReport:
    """Run every check on `ref` for the `expected` platforms and return the report.

    `expect_output` may hold `{arch}` (the platform's `uname -m`) and the other fields of
    `scenario.fill`; None means a smoke run passes on exit 0. `smoke_command` (docker run
    arguments) runs instead of the image's CMD. With `test_command` (and
    `smoke`), that command also runs in each platform's image (the project's own tests)
    and must exit 0 and print `test_expect`. Raises RegistryUnavailable when the
    registry does not answer.
    """
    report = ValidationReport(ref)
    reg_host, repo, _ = registry.split_ref(ref)
    try:
        top = registry.get_manifest(ref)
    except LookupError as exc:
        report.checks.append(Check("index", "", False, str(exc)))
        return report
    report.index_digest = top.digest
    by_name = {p.name: p for p in expected}
    manifests: dict[str, dict[str, Any]] = {}
    if top.media_type in INDEX_TYPES:
        found = image_platforms(top.body)
        attest = sum(1 for e in top.body.get("manifests", []) if is_attestation(e))
        report.checks.append(
            Check(
                "index",
                "",
                True,
                f"index {top.digest} with {len(found)} image(s), "
                f"{attest} attestation manifest(s) recognised and skipped",
            )
        )
    else:
        config = _config(reg_host, repo, top.body)
        single = platform_name(config)
        found = {single: top.digest}
        manifests[single] = top.body
        if len(expected) > 1:
            report.checks.append(
                Check(
                    "index",
                    "",
                    False,
                    f"{ref} is a single-platform manifest ({single}), not an index; "
                    f"expected {len(expected)} platforms",
                )
            )
        else:
            report.checks.append(Check("index", "", True, f"single manifest for {single}"))
    report.platform_digests = found
    missing = sorted(set(by_name) - set(found))
    extra = sorted(set(found) - set(by_name))
    detail = f"found {', '.join(sorted(found)) or 'none'}"
    if missing:
        detail += f"; missing {', '.join(missing)}"
    if extra:
        detail += f"; unexpected {', '.join(extra)}"
    report.checks.append(Check("platforms", "", not missing and not extra, detail))
    for name, digest in sorted(found.items()):
        platform = by_name.get(name)
        if platform is None:
            continue
        body = manifests.get(name) or registry.get_manifest(f"{reg_host}/{repo}@{digest}").body
        report.checks.append(_check_config(name, _config(reg_host, repo, body)))
        files: dict[str, bytes] = {}
        for path in artifacts:
            data = imagefs.read_image_file(reg_host, repo, body, path)
            report.checks.append(_check_artifact(platform, path, data))
            if data is not None:
                files[path] = data
        report.artifacts[name] = files
        if smoke:
            want = "" if expect_output is None else fill(expect_output, platform)
            check = smoke_run(
                f"{reg_host}/{repo}@{digest}", platform, want, host, command=smoke_command
            )
            report.checks.append(check)
            report.smoke_outputs[name] = check.detail
            if test_command:
                report.checks.append(
                    smoke_run(
                        f"{reg_host}/{repo}@{digest}",
                        platform,
                        fill(test_expect, platform),
                        host,
                        command=test_command,
                        check="test",
                    )
                )
    return report


def elf_section_digests(data: bytes) -> dict[str, str]:
    """Return {section name: sha256 of its bytes} of an ELF file ({} if not ELF)."""
    try:
        elf = ELFFile(io.BytesIO(data))
        return {
            s.name: hashlib.sha256(s.data()).hexdigest()
            for s in elf.iter_sections()
            if s.name and s["sh_type"] != "SHT_NOBITS"
        }
    except Exception:  # noqa: BLE001 - any parse failure means "no sections to compare"
        return {}


def compare_artifacts(reports: dict[str, ValidationReport]) -> list[Check]:
    """Compare each artifact of each platform across the labelled reports by sha256.

    Returns informational checks (always passed): identical, or which ELF sections
    differ and both smoke outputs.
    """
    checks: list[Check] = []
    labels = sorted(reports)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            ra, rb = reports[a], reports[b]
            for platform in sorted(set(ra.artifacts) & set(rb.artifacts)):
                for path in sorted(set(ra.artifacts[platform]) & set(rb.artifacts[platform])):
                    da, db = ra.artifacts[platform][path], rb.artifacts[platform][path]
                    if da == db:
                        detail = f"{path}: {a} and {b} identical (sha256 {_short(da)})"
                    else:
                        sa, sb = elf_section_digests(da), elf_section_digests(db)
                        differ = sorted(n for n in set(sa) | set(sb) if sa.get(n) != sb.get(n))
                        detail = (
                            f"{path}: {a} ({_short(da)}) and {b} ({_short(db)}) differ in "
                            f"sections {', '.join(differ) or '(none: headers only)'}; "
                            f"smoke {a}: {ra.smoke_outputs.get(platform, '-')}; "
                            f"smoke {b}: {rb.smoke_outputs.get(platform, '-')}"
                        )
                    checks.append(Check("same-artifact", platform, True, detail))
    return checks


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]
