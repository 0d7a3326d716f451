import ipaddress

import pytest

from warden_framework.errors import ConfigError, WardenError
from warden_framework.pools import NetworkPool, Pool, PortPool, UidPool


def test_network_pool_splits_into_30s():
    pool = NetworkPool(ipaddress.IPv4Network("127.0.0.0/29"), release_delay=0)
    assert str(pool.acquire()) == "127.0.0.0/30"
    assert str(pool.acquire()) == "127.0.0.4/30"
    assert pool.acquire() is None


@pytest.mark.parametrize("prefix,size", [(32, 0), (31, 0), (30, 1), (29, 2), (28, 4)])
def test_network_pool_sizes(prefix, size):
    assert NetworkPool(ipaddress.IPv4Network(f"10.0.0.0/{prefix}")).size == size


def test_release_delay_holds_entry_back():
    now = [0.0]
    pool = Pool([1], release_delay=5, clock=lambda: now[0])
    entry = pool.acquire()
    pool.release(entry)
    assert pool.acquire() is None
    now[0] = 5.0
    assert pool.acquire() == 1


def test_freed_entries_come_after_unused_ones():
    pool = Pool([1, 2, 3])
    first = pool.acquire()
    pool.release(first)
    assert [pool.acquire(), pool.acquire(), pool.acquire()] == [2, 3, 1]


def test_foreign_release_ignored():
    pool = PortPool(61001, 1000)
    pool.release(80)
    assert len(pool) == 1000


def test_port_pool_minimum_and_exhaustion():
    with pytest.raises(ConfigError, match=r"expected >= 1000, got: 999"):
        PortPool(61000, 999)
    pool = PortPool(61001, 1000)
    for _ in range(1000):
        pool.acquire_port()
    with pytest.raises(WardenError, match="^Warden::Pool::Port::NoPortAvailable$"):
        pool.acquire_port()


def test_uid_pool_overlap_and_exhaustion():
    with pytest.raises(ConfigError, match="overlaps"):
        UidPool(0, 10)
    pool = UidPool(2000000, 2)
    assert pool.acquire_uid() == 2000000
    pool.acquire_uid()
    with pytest.raises(WardenError, match="^Warden::Pool::Uid::NoUidAvailable$"):
        pool.acquire_uid()


def test_fetch_specific_network_once():
    pool = NetworkPool(ipaddress.IPv4Network("10.1.0.0/28"), release_delay=0)
    assert str(pool.acquire_network("10.1.0.5")) == "10.1.0.4/30"
    with pytest.raises(WardenError, match=r"^Could not acquire network: 10\.1\.0\.4$"):
        pool.acquire_network("10.1.0.6")


def test_an_entry_is_free_once_whatever_releases_it_and_in_use_once_taken():
    """Double releases (a retried destroy) and recovery's remove keep the set of free entries
    and the queue in step: each entry is handed out once."""
    pool = Pool([1, 2, 3])
    pool.release(1)  # free already
    taken = pool.acquire()
    pool.release(taken)
    pool.release(taken)
    pool.remove(2)
    pool.release(2)
    assert pool.fetch(2) == 2 and pool.fetch(2) is None
    assert sorted(x for x in iter(pool.acquire, None)) == [1, 3]
    assert len(pool) == 0
