"""The local Redis Cluster harness (tests/redis_cluster.py) does what the cluster tests rely
on: a healthy 3-master cluster with a replica each, slot migration with the keys, and a
failover after a master is killed, then the old master back as a replica."""

from __future__ import annotations

import time

import pytest
import redis
import redis.cluster
from redis.crc import key_slot

from .redis_cluster import RedisCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = time.monotonic()
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    cluster.start_seconds = time.monotonic() - started
    yield cluster
    cluster.stop()


@pytest.fixture
def client(cluster):
    client = redis.cluster.RedisCluster.from_url(cluster.url, decode_responses=True)
    yield client
    client.close()


def direct(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True)


def key_on(cluster: RedisCluster, master: int, prefix: str) -> str:
    return next(k for k in (f"{prefix}:{i}" for i in range(10_000)) if cluster.node_for_key(k) == master)


def test_healthy_cluster_with_a_replica_per_master(cluster, client):
    print(f"start() took {cluster.start_seconds:.2f}s")
    assert len(cluster.ports) == 6 and cluster.url == f"redis://127.0.0.1:{cluster.ports[0]}/0"
    masters = cluster.masters()
    assert len(masters) == 3
    replicas = [cluster.replica_of(m) for m in masters]
    assert None not in replicas and len(set(replicas)) == 3 and not set(replicas) & set(masters)
    for replica in replicas:
        with direct(replica) as node:
            info = node.info("replication")
        assert info["role"] == "slave" and info["master_link_status"] == "up"
    cluster.wait_healthy(timeout=5)

    for master in masters:
        key = key_on(cluster, master, "healthy")
        assert client.set(key, master)
        assert client.get(key) == str(master)
        with direct(master) as node:
            assert node.get(key) == str(master)  # it really lives on that master


def test_migrate_slot_moves_the_keys(cluster, client):
    keys = [f"{{alice}}:tweet:{i}" for i in range(25)]
    slot = key_slot(keys[0].encode())
    for key in keys:
        client.set(key, key.upper())
    source = cluster.node_for_key(keys[0])
    target = next(m for m in cluster.masters() if m != source)

    cluster.migrate_slot(slot, target)

    assert cluster.node_for_key(keys[0]) == target
    with direct(source) as node:
        assert node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    with direct(target) as node:
        assert node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(keys)
    assert [client.get(k) for k in keys] == [k.upper() for k in keys]  # the old client follows MOVED
    with redis.cluster.RedisCluster.from_url(cluster.url, decode_responses=True) as fresh:
        assert [fresh.get(k) for k in keys] == [k.upper() for k in keys]
        fresh.set(keys[0], "after")
        assert fresh.get(keys[0]) == "after"
    cluster.wait_healthy(timeout=10)


@pytest.mark.slow
def test_failover_after_a_master_is_killed_and_it_comes_back_as_replica(cluster):
    victim = cluster.masters()[0]
    replica = cluster.replica_of(victim)
    assert replica is not None
    key = key_on(cluster, victim, "survives")
    with direct(victim) as node:
        node.set(key, "before-the-crash")
        assert node.execute_command("WAIT", 1, 1000) == 1  # the replica has it

    cluster.kill(victim)
    assert victim not in cluster.masters()
    promoted = cluster.wait_failover(victim)

    assert promoted == replica
    assert promoted in cluster.masters()
    assert cluster.node_for_key(key) == promoted
    with redis.cluster.RedisCluster.from_url(f"redis://127.0.0.1:{promoted}/0", decode_responses=True) as client:
        assert client.get(key) == "before-the-crash"

    cluster.restart(victim)
    assert victim not in cluster.masters()
    assert cluster.replica_of(promoted) == victim
    with direct(victim) as node:
        info = node.info("replication")
    assert info["role"] == "slave" and info["master_link_status"] == "up"
    assert info["master_port"] == promoted
    cluster.wait_healthy(timeout=10)
    with redis.cluster.RedisCluster.from_url(cluster.url, decode_responses=True) as client:
        assert client.get(key) == "before-the-crash"
