"""Fixtures shared by the integration tests (the private instance itself is tests/conftest.py's)."""
import pytest

from window_support import Host


@pytest.fixture
def host(instance, tmp_path):
    """A private binfmt_misc instance with qemu-arm registered, and a run dir of its own."""
    h = Host(instance, tmp_path / "run")
    yield h
    h.close()
