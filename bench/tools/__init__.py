"""One thin typed wrapper per external tool. Every call goes through `bench.tools.proc`."""
