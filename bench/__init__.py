"""archbench: build one project for several CPU architectures and measure each strategy."""

__version__ = "0.1.0"
