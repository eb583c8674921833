"""Basic auth under a flood: the right user is never told 401 and is not starved.

The queue's rules run against a credential store whose checks finish only when the test says so
(no timers); tests/test_webconfig.py floods the exporter process for real."""

from __future__ import annotations

import asyncio
import logging
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


class BrokenCredentials(GatedCredentials):
    """`Basic broken` makes the check raise, as a bug in bcrypt or its caller would."""

    def check(self, header: str) -> bool:
        if header == "Basic broken":
            raise RuntimeError("bcrypt fell over")
        return super().check(header)


def test_a_check_that_raises_is_busy_logged_with_a_count_and_not_held_against_the_client(caplog):
    now = [0.0]
    credentials = BrokenCredentials()
    checks = PasswordChecks(credentials, workers=1, queue_size=2, clock=lambda: now[0])

    async def body() -> None:
        client = ("192.0.2.1", 1)
        for _ in range(5):
            assert await checks.check("Basic broken", client) is Verdict.BUSY  # not 401
        # The failures did not count against the connection: its next check keeps its place in
        # a full queue, ahead of one that comes after it from a fresh connection.
        running = asyncio.create_task(checks.check("Basic e0", ("192.0.2.2", 2)))
        await settle()
        queued = [
            asyncio.create_task(checks.check("Basic c1", client)),
            asyncio.create_task(checks.check("Basic d1", ("192.0.2.3", 3))),
        ]
        await settle()
        later = asyncio.create_task(checks.check("Basic e1", ("192.0.2.4", 4)))
        await settle()
        assert later.done()
        assert later.result() is Verdict.BUSY
        credentials.release(3)
        assert await asyncio.gather(running, *queued) == [Verdict.DENIED] * 3
        now[0] += 11  # past the interval: the next failure says how many there were
        assert await checks.check("Basic broken", client) is Verdict.BUSY

    try:
        with caplog.at_level(logging.INFO, logger="exporter.password_checks"):
            asyncio.run(body())
    finally:
        credentials.release(100)
    lines = [r for r in caplog.records if r.name == "exporter.password_checks"]
    assert [r.times for r in lines] == [1, 5]  # the first at once, then the rest counted
    assert all(r.levelno == logging.ERROR for r in lines)
    assert lines[0].err == "RuntimeError: bcrypt fell over"
    assert "checking a basic-auth password failed" in lines[0].getMessage()
