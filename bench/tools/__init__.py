"""External programs: one thin typed wrapper per tool, the one process choke point
(`proc`) and the reader of BuildKit's build trace (`buildtrace`)."""
