"""What runs inside a guest: its /init, the build script, and the console markers they
print for the host to watch."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

MARK = "archbench-guest:"
_MARK_RE = re.compile(re.escape(MARK) + r" (booted|build-start|build-end rc=(\d+)|fatal (.*))")

INIT_TEMPLATE = """#!/bin/sh
# archbench guest /init: load the disk modules, mount the root and work disks, run the
# build in a chroot, report through markers on the console, power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mark() {{ echo "{mark} $*"; }}
# poweroff -f powers off at once; the sysrq write is the fallback. Were both to fail,
# /init ends, the kernel panics and panic=-1 with -no-reboot ends QEMU all the same.
halt_now() {{ sync; poweroff -f; echo o > /proc/sysrq-trigger; sleep 10; }}
fatal() {{ mark "fatal $*"; halt_now; }}
for m in {modules}; do
    insmod "/modules/$m.ko" || fatal "insmod $m failed"
done
if grep -q archbench.probe /proc/cmdline; then
    mark booted
    halt_now
fi
n=0
while [ ! -b /dev/vdb ]; do
    n=$((n + 1))
    [ "$n" -gt 300 ] && fatal "no /dev/vdb after 30 s"
    sleep 0.1
done
mount -t ext4 /dev/vda /newroot || fatal "cannot mount the root disk /dev/vda"
mkdir -p /newroot/work
mount -t ext4 /dev/vdb /newroot/work || fatal "cannot mount the work disk /dev/vdb"
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -o bind /dev /newroot/dev
mark booted
mark build-start
chroot /newroot /bin/sh /work/build.sh
rc=$?
mark "build-end rc=$rc"
umount /newroot/work
halt_now
"""


def parse_marker(line: str) -> tuple[str, int | None, str] | None:
    """Return (event, exit code, message) for a console line holding an /init marker.

    Events are `booted`, `build-start`, `build-end` (with the build's exit code) and
    `fatal` (with /init's message). Returns None for any other line.
    """
    found = _MARK_RE.search(line)
    if found is None:
        return None
    word = found.group(1)
    if word.startswith("build-end"):
        return "build-end", int(found.group(2)), ""
    if word.startswith("fatal"):
        return "fatal", None, found.group(3).strip()
    return word, None, ""


def init_script(modules: Sequence[str]) -> str:
    """Return the initramfs /init for modules (names, in load order)."""
    return INIT_TEMPLATE.format(mark=MARK, modules=" ".join(modules))


def build_script(
    build_command: str,
    size: int,
    artifacts: Sequence[tuple[str, str]],
    env: Sequence[str],
) -> str:
    """Return the guest's /work/build.sh: the scenario's build in /work/src with the
    environment every strategy gives it (`env`: the shell lines of
    strategies.dockerfile.build_env), then each artifact copied
    to /work/out/<name>."""
    lines = [
        "#!/bin/sh",
        "set -e",
        "cd /work/src",
        f"export SIZE={shlex.quote(str(size))} HOME=/root LANG=C.UTF-8 XDG_CACHE_HOME=/root/.cache",
        *env,
        # In a subshell so that `a && b` failing in `a` still ends the script non-zero.
        f"( {build_command}\n) || exit $?",
        "mkdir -p /work/out",
    ]
    for built, name in artifacts:
        lines.append(f"cp {shlex.quote(built)} /work/out/{shlex.quote(name)}")
    return "\n".join(lines) + "\n"
