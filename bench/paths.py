"""Where archbench keeps things on the host, outside the working folder."""

from __future__ import annotations

from pathlib import Path

# Prepared guests, fetched sources, base image tarballs and the KVM verdict: all can be
# rebuilt, so they live under /var/cache.
CACHE_DIR = Path("/var/cache/archbench")
# What setup changed on the host and the registry's storage: not to be thrown away.
STATE_DIR = Path("/var/lib/archbench")
