"""Whether a guest boots under KVM on this host, judged by booting one and kept per host
kernel and QEMU version."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from bench import paths
from bench.errors import ArchbenchError, CommandTimeout
from bench.platforms import Platform, host_platform
from bench.strategies.guest.image import CACHE_DIR, GuestImage, find_prepared
from bench.strategies.guest.scripts import parse_marker
from bench.tools import qemu_system
from bench.tools.qemu_system import Launcher, VmSpec

KVM_VERDICT_FILE = paths.CACHE_DIR / "kvm-verdict.json"


def kvm_works(
    platform: Platform,
    image: GuestImage | None = None,
    *,
    cache_dir: Path = CACHE_DIR,
    verdict_file: Path = KVM_VERDICT_FILE,
    timeout: float = 25.0,
    launcher: Launcher | None = None,
) -> bool:
    """Return whether a guest of `platform` boots under KVM here, judged by effect.

    Only a guest of the host's own architecture on a host with /dev/kvm is tried: its
    kernel and initramfs (from `image`, else any prepared guest of `platform`) are booted
    under KVM with `timeout`, and the verdict is that /init reported in. A device that
    opens is not enough: on some hosts an x86_64 guest hangs right after the kernel's
    decompressor. The verdict is kept in `verdict_file`, per host kernel and QEMU
    version (the host's, or the pinned one `launcher` starts, which boots the probe).
    Never raises for a failed boot: that is the verdict False.
    """
    if platform.name != host_platform().name or not Path("/dev/kvm").exists():
        return False
    qemu_name = platform.qemu_name
    key = f"{qemu_name}|{os.uname().release}|{qemu_system.version(qemu_name, launcher)}"
    verdicts: dict[str, bool] = {}
    if verdict_file.is_file():
        try:
            verdicts = json.loads(verdict_file.read_text())
        except (OSError, ValueError):
            verdicts = {}
    if key in verdicts:
        return bool(verdicts[key])
    image = image or find_prepared(platform, cache_dir)
    if image is None:
        # Nothing to boot yet: answer TCG now and try again once a guest exists.
        return False
    spec = VmSpec(
        qemu_name=qemu_name,
        kernel=image.kernel,
        initrd=image.initrd,
        append="archbench.probe=1",
        cpu="host",
        vcpus=1,
        memory_mb=512,
        accel="kvm",
        launcher=launcher,
    )
    booted = threading.Event()

    def watch(line: str) -> None:
        marker = parse_marker(line)
        if marker is not None and marker[0] == "booted":
            booted.set()

    try:
        qemu_system.run(spec, timeout=timeout, on_line=watch)
    except CommandTimeout:
        pass
    except ArchbenchError:
        return False
    verdicts[key] = booted.is_set()
    verdict_file.parent.mkdir(parents=True, exist_ok=True)
    partial = verdict_file.with_suffix(".partial")
    partial.write_text(json.dumps(verdicts, indent=2) + "\n")
    os.replace(partial, verdict_file)
    return booted.is_set()
