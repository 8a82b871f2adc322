"""e2fsprogs: make ext4 images from a folder and read files out of them, unmounted.

Neither needs a loop device or a mount, so both work in containers and never leave
a mount behind when interrupted.
"""

from __future__ import annotations

from pathlib import Path

from bench.tools import proc


def mkfs_ext4(
    image: Path,
    source_dir: Path,
    size_mb: int,
    *,
    label: str = "",
    log_path: Path | None = None,
    timeout: float = 1800,
) -> None:
    """Write a (sparse) ext4 image of `size_mb` MiB at `image` holding `source_dir`'s tree.

    Ownership and modes are copied as they are. Raises CommandFailed (for instance when
    the tree does not fit) or CommandTimeout.
    """
    argv = ["mkfs.ext4", "-F", "-q", "-m", "0", "-d", str(source_dir)]
    if label:
        argv += ["-L", label]
    argv += [str(image), f"{size_mb}M"]
    proc.run(argv, timeout=timeout, check=True, log_path=log_path)


def dump(image: Path, guest_path: str, dest: Path, timeout: float = 120) -> bool:
    """Copy the file `guest_path` (absolute, in the image) out of the ext4 `image` to `dest`,
    keeping its mode. Returns whether the file was there and was copied.

    Raises ToolMissing when debugfs is not installed.
    """
    dest.unlink(missing_ok=True)
    # debugfs exits 0 even when the file is missing; it says so on stderr and writes
    # nothing, so the copy's presence is the verdict.
    proc.run(["debugfs", "-R", f"dump -p {guest_path} {dest}", str(image)], timeout=timeout)
    return dest.is_file()
