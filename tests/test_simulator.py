"""The simulator is faithful to the reference where the exporter depends on it."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter

import httpx
import pytest

from exporter.changes import ChangeDetector
from exporter.findings import client_findings
from exporter.model import parse_oauth_client
from exporter.simulator import Fault, SimAccount, Simulator, demo_accounts, make_account
from tests.support.simulator import TOKEN

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def accounts(n: int) -> list[SimAccount]:
    rng = random.Random(4)
    return [make_account(rng, f"A{i}", 3) for i in range(n)]


def test_envelope_and_result_info_follow_the_reference(serve_simulator):
    (only,) = accounts(1)
    url = serve_simulator(Simulator([only]))
    body = httpx.get(f"{url}/accounts/{only.id}/oauth_clients", headers=BEARER).json()
    assert set(body) == {"errors", "messages", "success", "result", "result_info"}
    assert body["success"] is True
    assert body["errors"] == body["messages"] == []
    assert body["result_info"] == {"page": 1, "per_page": 20, "count": 3, "total_count": 3}
    assert {"client_id", "visibility"} <= set(body["result"][0])


@pytest.mark.parametrize(("asked", "given"), [(100, 50), (1, 5), (20, 20), ("x", 20)])
def test_accounts_per_page_is_clamped_to_5_through_50(serve_simulator, asked, given):
    url = serve_simulator(Simulator(accounts(60)))
    body = httpx.get(f"{url}/accounts", params={"per_page": asked}, headers=BEARER).json()
    assert body["result_info"]["per_page"] == given
    assert len(body["result"]) == given
    assert body["result_info"]["total_count"] == 60


def test_errors_have_the_reference_shape(serve_simulator):
    url = serve_simulator(Simulator(accounts(1)))
    response = httpx.get(f"{url}/accounts/{'0' * 32}/oauth_clients", headers=BEARER)
    assert response.status_code == 404
    body = response.json()
    assert body["success"] is False
    assert body["result"] is None
    assert body["errors"][0]["code"] == 7003
    assert isinstance(body["errors"][0]["message"], str)
    assert httpx.get(f"{url}/nowhere", headers=BEARER).json()["errors"][0]["code"] == 7000


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 400, 6003),
        ({"Authorization": "Basic abc"}, 400, 6003),
        ({"Authorization": "Bearer wrong"}, 403, 9109),
        ({"X-Auth-Email": "ops@example.com"}, 400, 6003),
        ({"X-Auth-Email": "ops@example.com", "X-Auth-Key": "wrong"}, 403, 9103),
    ],
)
def test_authentication_failures(serve_simulator, headers, status, code):
    url = serve_simulator(Simulator(accounts(1), email="ops@example.com", key="right"))
    response = httpx.get(f"{url}/accounts", headers=headers)
    assert response.status_code == status
    assert response.json()["errors"][0]["code"] == code


def test_the_rate_limit_blocks_with_429_971_and_headers(serve_simulator):
    url = serve_simulator(sim := Simulator(accounts(1), rate_limit=2, rate_window=60,
                                           rate_block=120))  # fmt: skip
    first = httpx.get(f"{url}/accounts", headers=BEARER)
    assert first.headers["Ratelimit"] == '"default";r=1;t=60'
    assert first.headers["Ratelimit-Policy"] == '"burst";q=2;w=60'
    assert (
        httpx.get(f"{url}/accounts", headers=BEARER)
        .headers["Ratelimit"]
        .startswith('"default";r=0;')
    )
    blocked = httpx.get(f"{url}/accounts", headers=BEARER)
    assert blocked.status_code == 429
    assert blocked.json()["errors"][0]["code"] == 971
    assert 119 <= int(blocked.headers["Retry-After"]) <= 120
    assert sim.rate_limited == 1
    # another token has its own budget
    sim.tokens.add("other")
    assert httpx.get(f"{url}/accounts", headers={"Authorization": "Bearer other"}).is_success


def test_scripted_faults_are_used_once_and_persistent_ones_stay(serve_simulator):
    (only,) = accounts(1)
    only.faults.append(Fault.html(502))
    url = serve_simulator(Simulator([only]))
    path = f"{url}/accounts/{only.id}/oauth_clients"
    first = httpx.get(path, headers=BEARER)
    assert (first.status_code, first.headers["content-type"]) == (502, "text/html; charset=utf-8")
    assert httpx.get(path, headers=BEARER).status_code == 200
    only.fault = Fault.api_error(403, 10000, "Authentication error")
    assert httpx.get(path, headers=BEARER).status_code == 403
    assert httpx.get(path, headers=BEARER).status_code == 403


@pytest.mark.slow
def test_slow_fault_delays_the_answer(serve_simulator):
    (only,) = accounts(1)
    only.faults.append(Fault.slow(0.3))
    url = serve_simulator(Simulator([only]))
    started = time.monotonic()
    assert httpx.get(f"{url}/accounts/{only.id}/oauth_clients", headers=BEARER).is_success
    assert time.monotonic() - started >= 0.3


def test_demo_data_is_stable_and_covers_the_scenarios():
    first, second = demo_accounts(), demo_accounts()
    assert [a.id for a in first] == [a.id for a in second]
    assert sum(len(a.clients) for a in first) >= 200
    assert {a.paging for a in first} == {"pages", "ignore"}
    assert any(a.fault is not None for a in first)
    assert any(a.faults for a in first)


def test_the_demos_living_account_changes_in_every_way_change_detection_counts():
    from exporter.simulator import change_now_and_then, demo_accounts

    accounts = demo_accounts()
    living = accounts[1]
    simulator = Simulator(accounts)

    def refresh(baseline):
        detector = ChangeDetector(baseline)
        for raw in living.clients:
            client = parse_oauth_client(raw)
            detector.add(client, client_findings(client))
        return detector.finish()

    baseline, _ = refresh(None)
    by_change: Counter[str] = Counter()
    by_field: Counter[str] = Counter()
    gained: Counter[str] = Counter()
    steps = 0

    async def step(_: float) -> None:  # a refresh after every change
        nonlocal steps, baseline
        steps += 1
        if steps > 12:
            raise asyncio.CancelledError
        baseline, found = refresh(baseline)
        by_change.update(found.by_change)
        by_field.update(found.by_field)
        gained.update(found.findings_gained)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(change_now_and_then(simulator, living.id, every=20, sleep=step))
    assert set(by_change) == {"created", "updated", "deleted"}
    assert {"redirect_uris", "visibility", "has_rotated_secret"} <= set(by_field)
    assert gained["http_redirect_uri"] >= 1


def test_the_write_endpoints_answer_as_the_api_does(serve_simulator):
    account = make_account(random.Random(31), "Writable", 2)
    url = serve_simulator(simulator := Simulator([account]))
    base = f"/accounts/{account.id}/oauth_clients"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        made = http.post(base, json={"client_name": "New", "visibility": "public"}).json()
        client_id = made["result"]["client_id"]
        assert http.get(f"{base}/{client_id}").json()["result"]["client_name"] == "New"
        assert http.post(f"{base}/{client_id}/rotate_secret").json()["result"]["has_rotated_secret"]
        assert not http.delete(f"{base}/{client_id}/rotate_secret").json()["result"][
            "has_rotated_secret"
        ]
        assert http.patch(f"{base}/{client_id}", json={"client_id": "x"}).status_code == 400
        assert http.get(f"{base}/nope").status_code == 404
        assert http.delete(f"{base}/{client_id}").status_code == 200
        assert http.get(f"{base}/{client_id}").status_code == 404
    assert len(simulator.accounts[account.id].clients) == 2


def help_entries(text: str) -> dict[str, str]:
    """The `options:` section of argparse's help: each option's long flag -> its description, its
    wrapped lines joined."""
    entries: dict[str, str] = {}
    flag = ""
    for line in text.split("\noptions:\n", 1)[1].splitlines():
        if re.match(r"  -", line):  # an option's own line: its spelling, maybe its description
            spelling, _, description = line.strip().partition("  ")
            flag = [word.strip(",") for word in spelling.split() if word.startswith("-")][-1]
            entries[flag] = description.strip()
        elif line.startswith("   ") and flag:  # the description, wrapped or on a line of its own
            entries[flag] = f"{entries[flag]} {line.strip()}".strip()
    return entries


def test_the_simulator_help_describes_every_option_with_its_default(monkeypatch):
    from exporter.simulator.__main__ import build_parser

    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps at the terminal's width
    parser = build_parser()
    text = parser.format_help()
    # What it serves and how to point the exporter at it, before the options.
    assert "--cloudflare.api-url" in text.split("\noptions:\n")[0]
    assert "CLOUDFLARE_API_TOKEN=" in text.split("\noptions:\n")[0]
    entries = help_entries(text)
    options = [action for action in parser._actions if action.option_strings]
    assert set(entries) == {action.option_strings[-1] for action in options}
    for action in options:
        if action.dest == "help":
            continue
        entry = entries[action.option_strings[-1]]
        described = re.fullmatch(r"(.*\S) \(default: (.+)\)", entry)
        assert described, f"{action.option_strings[-1]}: {entry!r}"
        assert len(described.group(1).split()) >= 3, entry  # a description, not a word
        assert described.group(2) == str(action.default), entry
