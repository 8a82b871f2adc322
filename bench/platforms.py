"""Target platforms archbench knows, in OCI terms and in the names each tool uses."""

from __future__ import annotations

import platform as _pyplatform
from dataclasses import dataclass

from bench.errors import UsageError

# The Debian release of base images and guests, unless a platform needs a newer one.
DEFAULT_SUITE = "bookworm"


@dataclass(frozen=True, order=True)
class Platform:
    """One OCI platform and its names in Debian, the kernel, QEMU and GNU triplets."""

    os: str
    architecture: str
    variant: str
    uname: str  # what `uname -m` prints on it
    debian_arch: str
    gnu_triplet: str
    qemu_name: str  # suffix of qemu-*-static and of the binfmt_misc entry
    elf_machine: str  # pyelftools' e_machine name
    elf_class: int
    little_endian: bool
    suite: str = DEFAULT_SUITE  # the Debian release its base image comes from

    @property
    def name(self) -> str:
        """The OCI string: linux/arm64, linux/arm/v7."""
        tail = f"/{self.variant}" if self.variant else ""
        return f"{self.os}/{self.architecture}{tail}"

    @property
    def slug(self) -> str:
        """A tag- and file-safe short name: amd64, arm-v7."""
        return self.architecture + (f"-{self.variant}" if self.variant else "")

    def __str__(self) -> str:
        return self.name


KNOWN: dict[str, Platform] = {
    p.name: p
    for p in (
        Platform(
            "linux",
            "amd64",
            "",
            "x86_64",
            "amd64",
            "x86_64-linux-gnu",
            "x86_64",
            "EM_X86_64",
            64,
            True,
        ),
        Platform(
            "linux",
            "arm64",
            "",
            "aarch64",
            "arm64",
            "aarch64-linux-gnu",
            "aarch64",
            "EM_AARCH64",
            64,
            True,
        ),
        Platform(
            "linux",
            "arm",
            "v7",
            "armv7l",
            "armhf",
            "arm-linux-gnueabihf",
            "arm",
            "EM_ARM",
            32,
            True,
        ),
        Platform(
            "linux",
            "ppc64le",
            "",
            "ppc64le",
            "ppc64el",
            "powerpc64le-linux-gnu",
            "ppc64le",
            "EM_PPC64",
            64,
            True,
        ),
        Platform(
            "linux", "s390x", "", "s390x", "s390x", "s390x-linux-gnu", "s390x", "EM_S390", 64, False
        ),
        Platform(
            "linux",
            "riscv64",
            "",
            "riscv64",
            "riscv64",
            "riscv64-linux-gnu",
            "riscv64",
            "EM_RISCV",
            64,
            True,
            # Not a release architecture of bookworm: Debian 13 is its first.
            "trixie",
        ),
    )
}

_ALIASES: dict[str, str] = {
    "x86_64": "linux/amd64",
    "aarch64": "linux/arm64",
    "linux/arm64/v8": "linux/arm64",
    "arm64/v8": "linux/arm64",
    "armhf": "linux/arm/v7",
    "arm": "linux/arm/v7",
    "linux/arm": "linux/arm/v7",
    "ppc64el": "linux/ppc64le",
}


def base_image_for(template: str, platform: Platform) -> str:
    """Return the base image `template` (may hold `{suite}`) for `platform`."""
    return template.replace("{suite}", platform.suite)


def parse_platform(text: str) -> Platform:
    """Return the Platform named by `text` (OCI form or buildx short form).

    Raises UsageError naming the bad value and the valid ones.
    """
    key = text.strip().lower()
    key = _ALIASES.get(key, key)
    if key in KNOWN:
        return KNOWN[key]
    if not key.startswith("linux/") and f"linux/{key}" in KNOWN:
        return KNOWN[f"linux/{key}"]
    raise UsageError(f"unknown platform {text!r}; valid: {', '.join(KNOWN)}")


def host_platform() -> Platform:
    """Return the platform of the machine archbench runs on."""
    machine = _pyplatform.machine().lower()
    for p in KNOWN.values():
        if p.uname == machine or p.debian_arch == machine:
            return p
    raise UsageError(f"host architecture {machine!r} is not one archbench knows")
