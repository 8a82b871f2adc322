"""ELF headers checked against a platform: class, byte order, machine, ARM float ABI,
program interpreter. Built on pyelftools."""

from __future__ import annotations

import io
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from bench.platforms import Platform

EF_ARM_ABI_FLOAT_HARD = 0x400
EF_ARM_ABI_FLOAT_SOFT = 0x200

# Debian's program interpreters per platform (what a dynamically linked binary must ask
# for to start on that platform's glibc).
INTERPRETERS = {
    "linux/amd64": "/lib64/ld-linux-x86-64.so.2",
    "linux/arm64": "/lib/ld-linux-aarch64.so.1",
    "linux/arm/v7": "/lib/ld-linux-armhf.so.3",
    "linux/ppc64le": "/lib64/ld64.so.2",
    "linux/s390x": "/lib/ld64.so.1",
    "linux/riscv64": "/lib/ld-linux-riscv64-lp64d.so.1",
}

MACHINE_NAMES = {
    "EM_X86_64": "x86-64",
    "EM_AARCH64": "AArch64",
    "EM_ARM": "ARM",
    "EM_PPC64": "PowerPC64",
    "EM_S390": "s390x",
    "EM_RISCV": "RISC-V",
    "EM_386": "i386",
}


@dataclass(frozen=True)
class ElfFacts:
    """What an ELF header says."""

    elf_class: int
    little_endian: bool
    machine: str
    flags: int
    interpreter: str  # '' for a statically linked binary

    def describe(self) -> str:
        """Return e.g. 'ELF64 LSB AArch64, dynamic (/lib/ld-linux-aarch64.so.1)'."""
        order = "LSB" if self.little_endian else "MSB"
        link = f"dynamic ({self.interpreter})" if self.interpreter else "static"
        name = MACHINE_NAMES.get(self.machine, self.machine)
        return f"ELF{self.elf_class} {order} {name}, {link}"


def read_elf(data: bytes) -> ElfFacts:
    """Return the header facts of the ELF file `data`. Raises ValueError if not ELF."""
    try:
        elf = ELFFile(io.BytesIO(data))
        interpreter = ""
        for segment in elf.iter_segments():
            if isinstance(segment, InterpSegment):
                interpreter = segment.get_interp_name()
        return ElfFacts(
            elf_class=elf.elfclass,
            little_endian=elf.little_endian,
            machine=str(elf.header["e_machine"]),
            flags=int(elf.header["e_flags"]),
            interpreter=interpreter,
        )
    except (ELFError, ValueError, KeyError) as exc:
        raise ValueError(f"not an ELF file ({exc})") from exc


def mismatches(facts: ElfFacts, platform: Platform) -> list[str]:
    """Return how `facts` disagree with `platform` (empty when they agree)."""
    found: list[str] = []
    if facts.machine != platform.elf_machine:
        want = MACHINE_NAMES.get(platform.elf_machine, platform.elf_machine)
        got = MACHINE_NAMES.get(facts.machine, facts.machine)
        found.append(f"machine is {got}, expected {want}")
    if facts.elf_class != platform.elf_class:
        found.append(f"class is ELF{facts.elf_class}, expected ELF{platform.elf_class}")
    if facts.little_endian != platform.little_endian:
        want_order = "little" if platform.little_endian else "big"
        found.append(f"byte order is not {want_order}-endian")
    arm = platform.name == "linux/arm/v7" and facts.machine == "EM_ARM"
    if arm and not facts.flags & EF_ARM_ABI_FLOAT_HARD:
        found.append("ARM float ABI is not hard-float (armhf)")
    if facts.interpreter and facts.interpreter != INTERPRETERS.get(platform.name):
        found.append(
            f"interpreter is {facts.interpreter}, expected {INTERPRETERS.get(platform.name)}"
        )
    return found
