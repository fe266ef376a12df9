"""The package version, read by setup.cfg and re-exported by ``backendapi``."""

__version__ = "0.1.0"
