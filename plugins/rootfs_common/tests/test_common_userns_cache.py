"""The user namespaces kept per id map for idmapped mounts (idmapped.UsernsCache), on the
real kernel: a namespace's maps are read back from /proc/<pid>/uid_map of a process that
joins it, so a cache that handed out the wrong namespace would show."""

import errno
import os
import secrets
import subprocess
import sys

import pytest

from warden_framework.idmap import IdMap
from warden_rootfs_common.idmapped import UsernsCache

pytestmark = pytest.mark.integration

JOIN_AND_SHOW = ("import ctypes, os, sys; fd = int(sys.argv[1]); "
                 "assert ctypes.CDLL(None, use_errno=True).setns(fd, 0x10000000) == 0; "
                 "print(open('/proc/self/uid_map').read().split())")


@pytest.fixture
def cache():
    if os.geteuid() != 0:
        pytest.skip("needs root: user namespaces with a map of other ids")
    cache = UsernsCache(limit=4)
    yield cache
    cache.clear()


def ranges(count):
    base = (2000 + secrets.randbelow(1000)) * 65536
    return [IdMap(base + i * 65536, 65536) for i in range(count)]


def uid_map_of(fd):
    out = subprocess.run([sys.executable, "-c", JOIN_AND_SHOW, str(fd)], pass_fds=[fd],
                         capture_output=True, text=True, check=True).stdout
    return out.strip()


def test_a_map_gets_its_own_namespace_and_the_same_one_again(cache):
    first, second = ranges(2)
    fd = cache.fd(first)
    assert cache.fd(first) == fd and cache.fd(second) != fd
    assert uid_map_of(fd) == str(["0", str(first.host_base), "65536"])
    assert uid_map_of(cache.fd(second)) == str(["0", str(second.host_base), "65536"])


def test_warm_makes_them_ahead_and_raises_the_limit_to_their_number(cache):
    maps = ranges(6)
    cache.warm(maps).join(10)
    fds = [cache.fd(m) for m in maps]
    assert len(set(fds)) == 6  # none evicted: the limit rose from 4 to 6
    assert uid_map_of(fds[5]) == str(["0", str(maps[5].host_base), "65536"])


def test_past_the_limit_the_oldest_descriptor_is_closed(cache):
    maps = ranges(5)
    fds = [cache.fd(m) for m in maps]
    with pytest.raises(OSError) as closed:
        os.fstat(fds[0])
    assert closed.value.errno == errno.EBADF
    os.fstat(fds[4])
