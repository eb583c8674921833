"""What tests share: paths and tools, one way to run the exporter, the simulator, exposition reads.

Tests import from here, never from `tests.conftest` (which only declares pytest fixtures).
"""
