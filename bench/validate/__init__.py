"""Validation of pushed images: the index's platforms, each artifact's ELF header, the layers."""
