"""When a private binfmt_misc can be had (pure parts of userns)."""
import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import userns


@pytest.mark.parametrize("release, version", [
    ("6.1.0-28-arm64", (6, 1)), ("6.7.0", (6, 7)), ("6.18.44-fc-v657", (6, 18)),
    ("5.15.0-1051-aws", (5, 15)), ("garbage", (0, 0)),
])
def test_kernel_version(release, version):
    assert userns.kernel_version(release) == version


@pytest.mark.parametrize("release", ["6.1.0-28-arm64", "6.6.30", "5.15.0", "4.19.0"])
def test_older_kernels_are_refused_with_the_reason(release):
    reason = userns.unsupported_reason(release, euid=0)
    assert release in reason and "6.7" in reason and "window" in reason


def test_non_root_is_refused():
    assert "root" in userns.unsupported_reason("6.8.0", euid=1000)


@pytest.mark.parametrize("release", ["6.7.0", "6.8.0-45-generic", "6.12.57+deb13-arm64"])
def test_new_kernels_as_root_are_fine(release):
    assert userns.unsupported_reason(release, euid=0) is None
