"""Full-system guests for the qemu-system strategy: prepared once per platform, booted per build."""
