"""Guest CPU models: the `-cpu` value of each named model per QEMU architecture."""

from __future__ import annotations

from bench.errors import GuestError

# Named guest CPU models -> QEMU `-cpu` value per QEMU architecture. `pauth-impdef`
# swaps the architected pointer-authentication algorithm (QARMA, costly to emulate) for
# an implementation-defined one that is cheap under TCG; Debian's arm64 kernel and
# toolchain sign return addresses, so this decides much of the guest's speed.
CPU_MODELS: dict[str, dict[str, str]] = {
    "max": {"aarch64": "max", "x86_64": "max"},
    "max-pauth-impdef": {"aarch64": "max,pauth-impdef=on"},
    "cortex-a72": {"aarch64": "cortex-a72"},
}
DEFAULT_CPU: dict[str, str] = {"aarch64": "max-pauth-impdef", "x86_64": "max"}


def cpu_string(qemu_name: str, variant: str | None = None) -> str:
    """Return the `-cpu` value of `variant` (None: the architecture's default).

    Raises GuestError for a variant unknown or not offered for `qemu_name`.
    """
    name = variant or DEFAULT_CPU.get(qemu_name, "max")
    models = CPU_MODELS.get(name)
    if models is None or qemu_name not in models:
        offered = [n for n, m in CPU_MODELS.items() if qemu_name in m]
        raise GuestError(
            f"no guest CPU model {name!r} for {qemu_name}; valid: {', '.join(offered)}"
        )
    return models[qemu_name]
