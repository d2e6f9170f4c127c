"""Real components for tests: the Kubernetes API emulator and a Prometheus server.

The fixtures that wrap them are in :mod:`tests.support.fixtures` and registered by
``tests/conftest.py``.
"""

__all__: list[str] = []
