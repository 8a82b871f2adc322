"""mmdebstrap: root file systems from Debian's archive, for base images and guests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.errors import ToolMissing
from bench.tools import proc


def bootstrap(
    arch: str,
    suite: str,
    out: Path,
    mirror: str,
    *,
    variant: str = "minbase",
    include: Sequence[str] = (),
    log_path: Path | None = None,
    timeout: float = 1800,
) -> None:
    """Build a root file system tarball for Debian `arch` at `out` (written atomically).

    A foreign `arch` runs its second stage under qemu-user through binfmt_misc.
    Raises CommandFailed or CommandTimeout.
    """
    # mmdebstrap picks its output format from the file name's ending: keep it.
    partial = out.with_name(out.stem + ".partial" + out.suffix)
    partial.unlink(missing_ok=True)
    argv = ["mmdebstrap", f"--variant={variant}", f"--arch={arch}"]
    if include:
        argv.append("--include=" + ",".join(include))
    argv += [suite, str(partial), mirror]
    try:
        proc.run(argv, timeout=timeout, check=True, log_path=log_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out)


def version() -> str:
    """Return mmdebstrap's version, or '' when it is not installed."""
    try:
        done = proc.run(["mmdebstrap", "--version"], timeout=20)
    except ToolMissing:
        return ""
    return done.stdout.strip()


def bootstrap_dir(
    arch: str,
    suite: str,
    target: Path,
    mirror: str,
    *,
    variant: str = "minbase",
    include: Sequence[str] = (),
    options: Sequence[str] = (),
    log_path: Path | None = None,
    timeout: float = 1800,
) -> None:
    """Build a root file system for Debian `arch` as the folder `target` (must not exist).

    With variant `extract` the packages are only unpacked: no maintainer script runs, so
    a foreign kernel package needs neither qemu-user nor the host's multiarch. `options`
    go to mmdebstrap as they are (`--dpkgopt=...`). The caller makes the result atomic.
    Raises CommandFailed or CommandTimeout.
    """
    argv = ["mmdebstrap", f"--variant={variant}", f"--arch={arch}", *options]
    if include:
        argv.append("--include=" + ",".join(include))
    argv += [suite, str(target), mirror]
    proc.run(argv, timeout=timeout, check=True, log_path=log_path)


def closure_argv(
    arch: str, suite: str, target: Path, include: Sequence[str], sources: Sequence[str]
) -> list[str]:
    """Return the mmdebstrap argv that unpacks `include` (`package=version`) and its whole
    dependency closure from `sources` (one-line `deb URI SUITE COMPONENT` entries) into the
    folder `target`, keeping the downloaded .debs and the archive's package lists in it
    (var/cache/apt/archives, var/lib/apt/lists) for the caller to check."""
    return [
        "mmdebstrap",
        # extract: the packages and their dependencies are only unpacked, no maintainer
        # script runs, so nothing of the host is touched and nothing needs root's chroot.
        "--variant=extract",
        f"--arch={arch}",
        "--include=" + ",".join(include),
        "--skip=cleanup/apt",
        suite,
        str(target),
        *sources,
    ]


def extract_closure(
    arch: str,
    suite: str,
    target: Path,
    include: Sequence[str],
    sources: Sequence[str],
    *,
    log_path: Path | None = None,
    timeout: float = 1800,
) -> None:
    """Unpack `include` with its dependency closure into `target` (see `closure_argv`);
    apt checks every .deb against the suite's signed index as it downloads.
    Raises ToolMissing, CommandFailed or CommandTimeout."""
    argv = closure_argv(arch, suite, target, include, sources)
    proc.run(argv, timeout=timeout, check=True, log_path=log_path)
