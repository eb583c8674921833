"""Basic auth under a flood: the right user is never told 401 and is not starved.

The queue's rules run against a credential store whose checks finish only when the test says so
(no timers); tests/test_webconfig.py floods the exporter process for real."""

from __future__ import annotations

import asyncio
import threading

from exporter.password_checks import PasswordChecks, Verdict

RIGHT = "Basic right"


class GatedCredentials:
    """`check` blocks until released; only RIGHT is right. Records the order of checks."""

    def __init__(self) -> None:
        self.gate = threading.Semaphore(0)
        self.checked: list[str] = []
        self.remembered_headers: dict[str, bool] = {}

    def remembered(self, header: str) -> bool | None:
        return self.remembered_headers.get(header)

    def check(self, header: str) -> bool:
        self.gate.acquire(timeout=10)
        self.checked.append(header)
        return header == RIGHT

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self.gate.release()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def scenario(body):
    credentials = GatedCredentials()
    checks = PasswordChecks(credentials, workers=1, queue_size=2)
    try:
        return asyncio.run(body(credentials, checks))
    finally:
        credentials.release(100)


def test_remembered_credentials_need_no_check():
    async def body(credentials, checks):
        credentials.remembered_headers = {"Basic known": True, "Basic bad": False}
        assert await checks.check("Basic known", ("10.0.0.1", 1)) is Verdict.ALLOWED
        assert await checks.check("Basic bad", ("10.0.0.1", 1)) is Verdict.DENIED
        assert credentials.checked == []

    scenario(body)


def test_a_full_queue_answers_busy_never_denied():
    async def body(credentials, checks):
        flood = [
            asyncio.create_task(checks.check(f"Basic wrong{n}", ("10.0.0.9", 5000 + n)))
            for n in range(3)  # one running, two queued
        ]
        await settle()
        assert await checks.check("Basic wrong3", ("10.0.0.9", 6000)) is Verdict.BUSY
        credentials.release(3)
        assert await asyncio.gather(*flood) == [Verdict.DENIED] * 3

    scenario(body)


def test_a_connection_that_sent_a_wrong_password_goes_behind_a_fresh_one():
    async def body(credentials, checks):
        flooder = ("127.0.0.1", 40000)
        first = asyncio.create_task(checks.check("Basic wrong0", flooder))
        await settle()
        credentials.release()
        assert await first is Verdict.DENIED  # now this connection has failed once
        queued = [
            asyncio.create_task(checks.check(f"Basic wrong{n}", flooder)) for n in (1, 2, 3)
        ]  # one runs, two fill the queue
        await settle()
        # the right user, same address, a new connection: takes a flooder's place in the queue
        right = asyncio.create_task(checks.check(RIGHT, ("127.0.0.1", 40001)))
        await settle()
        credentials.release(3)
        assert await right is Verdict.ALLOWED
        verdicts = await asyncio.gather(*queued)
        assert verdicts.count(Verdict.BUSY) == 1  # the last-ranked flooder made room
        assert credentials.checked[:3] == ["Basic wrong0", "Basic wrong1", RIGHT]

    scenario(body)


def test_an_address_that_sent_wrong_passwords_goes_behind_a_clean_one():
    async def body(credentials, checks):
        first = asyncio.create_task(checks.check("Basic wrong0", ("203.0.113.7", 1)))
        await settle()
        credentials.release()
        assert await first is Verdict.DENIED
        # new connections each time, from the same address: ranked by the address
        flood = [
            asyncio.create_task(checks.check(f"Basic wrong{n}", ("203.0.113.7", 100 + n)))
            for n in (1, 2, 3)
        ]
        await settle()
        right = asyncio.create_task(checks.check(RIGHT, ("198.51.100.2", 2)))
        await settle()
        credentials.release(3)
        assert await right is Verdict.ALLOWED
        assert (await asyncio.gather(*flood)).count(Verdict.BUSY) == 1

    scenario(body)


def test_equal_ranks_wait_their_turn_and_the_latest_is_busy():
    async def body(credentials, checks):
        early = [
            asyncio.create_task(checks.check(f"Basic e{n}", ("192.0.2.1", n))) for n in range(3)
        ]
        await settle()
        assert await checks.check(RIGHT, ("192.0.2.2", 9)) is Verdict.BUSY  # no place to take
        credentials.release(3)
        assert await asyncio.gather(*early) == [Verdict.DENIED] * 3
        assert credentials.checked == ["Basic e0", "Basic e1", "Basic e2"]

    scenario(body)


def test_a_keep_alive_flood_does_not_sink_its_address_below_a_connection_per_try_flood():
    async def body(credentials, checks):
        async def fail(header, client):
            task = asyncio.create_task(checks.check(header, client))
            await settle()
            credentials.release()
            assert await task is Verdict.DENIED

        for n in range(5):  # one keep-alive connection, five wrong passwords
            await fail(f"Basic ka{n}", ("127.0.0.1", 40000))
        for n in range(2):  # two connections from elsewhere, one wrong password each
            await fail(f"Basic nc{n}", ("127.0.0.2", 1000 + n))
        flood = [
            asyncio.create_task(checks.check(f"Basic nc{n}", ("127.0.0.2", 2000 + n)))
            for n in range(3)
        ]
        await settle()
        # the right user shares the keep-alive flooder's address: 1 failed connection there,
        # against 2 from the other address
        right = asyncio.create_task(checks.check(RIGHT, ("127.0.0.1", 40001)))
        await settle()
        credentials.release(3)
        assert await right is Verdict.ALLOWED
        assert (await asyncio.gather(*flood)).count(Verdict.BUSY) == 1

    scenario(body)
