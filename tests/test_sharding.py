"""Sharding: every account on exactly one replica, evenly, and two real replicas split a tenant."""

from __future__ import annotations

import hashlib
import random
import subprocess
from collections import Counter

import pytest

from exporter.settings import ConfigError, load_settings
from exporter.sharding import Shard, shard_of
from exporter.simulator import Simulator, make_account
from tests.support.exposition import label_values, samples
from tests.support.simulator import TOKEN
from tests.support.tools import clean_environ, exporter_command

IDS = [f"{random.Random(n).getrandbits(128):032x}" for n in range(10_000)]


def test_the_hash_is_the_documented_one():
    account = "0123456789abcdef0123456789abcdef"
    expected = int.from_bytes(hashlib.sha256(account.encode()).digest()[:8], "big")
    for total in (2, 3, 7, 100):
        assert shard_of(account, total) == expected % total
    assert shard_of(account.upper(), 7) == shard_of(account, 7)


@pytest.mark.parametrize("total", [1, 2, 3, 4, 7, 10])
def test_every_account_lands_on_exactly_one_shard_evenly(total):
    owners: Counter[int] = Counter()
    for account in IDS:
        holders = [index for index in range(total) if Shard(index, total).owns(account)]
        assert len(holders) == 1
        owners[holders[0]] += 1
    assert sum(owners.values()) == len(IDS)
    expected = len(IDS) / total
    for index in range(total):
        assert abs(owners[index] - expected) <= 0.10 * expected, (index, owners[index])


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EXPORTER_SHARD": "2", "EXPORTER_TOTAL_SHARDS": "2"},
         "EXPORTER_SHARD 2: must be between 0 and 1"),
        ({"EXPORTER_SHARD": "-1"}, "EXPORTER_SHARD -1: must be between 0 and 0"),
        ({"EXPORTER_TOTAL_SHARDS": "0"}, "EXPORTER_TOTAL_SHARDS 0: must be between 1"),
        ({"EXPORTER_SHARD": "pod-3", "EXPORTER_TOTAL_SHARDS": "4"}, "EXPORTER_SHARD 'pod-3'"),
    ],
)  # fmt: skip
def test_bad_shards_are_refused(environ, message):
    with pytest.raises(ConfigError) as raised:
        load_settings([], {"CLOUDFLARE_API_TOKEN": TOKEN, **environ})
    assert message in str(raised.value)


def test_flags_and_environment_set_the_shard():
    settings = load_settings(
        ["--shard", "1"], {"CLOUDFLARE_API_TOKEN": TOKEN, "EXPORTER_TOTAL_SHARDS": "3"}
    )
    assert (settings.shard, settings.total_shards) == (1, 3)


@pytest.mark.slow
@pytest.mark.parametrize("explicit", [False, True], ids=["discovered", "explicit"])
def test_two_replicas_export_disjoint_accounts_whose_union_is_all(serve_simulator, explicit):
    rng = random.Random(77)
    accounts = [make_account(rng, f"A{i}", 2) for i in range(24)]
    url = serve_simulator(sim := Simulator(accounts))
    ids = {a.id for a in accounts}
    args = ["--once", "--cloudflare.api-url", url, "--total-shards", "2"]
    if explicit:
        args += [arg for account in sorted(ids) for arg in ("--cloudflare.account-id", account)]
    replicas = [
        subprocess.Popen(exporter_command(*args, "--shard", str(index)),
                         env=clean_environ(CLOUDFLARE_API_TOKEN=TOKEN),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for index in (0, 1)
    ]  # fmt: skip
    outputs = []
    for replica in replicas:
        out, err = replica.communicate(timeout=60)
        assert replica.returncode == 0, err
        outputs.append(out)
    first, second = (label_values(out, "cloudflare_oauth_account_up", "account_id")
                     for out in outputs)  # fmt: skip
    assert first
    assert second
    assert first.isdisjoint(second)
    assert first | second == ids
    assert first == {a for a in ids if shard_of(a, 2) == 0}
    assert [list(samples(out)["cloudflare_oauth_exporter_shard_info"]) for out in outputs] == [
        [(("shard", "0"), ("total_shards", "2"))],
        [(("shard", "1"), ("total_shards", "2"))],
    ]
    # each replica read only its own accounts' clients
    client_reads = {path for path in sim.requests if path.endswith("/oauth_clients")}
    assert len(client_reads) == 24
    assert sim.requests["/accounts"] == (0 if explicit else 2)
