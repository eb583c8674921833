"""Change detection: what happened to an account's OAuth clients between two good refreshes.

Between refreshes only a fingerprint of each client is kept, not the client: its id's 64-bit
digest, a 64-bit digest of its documented fields, and the few values an audit line needs (name,
visibility, auth method, URIs, grant and response types, findings), packed as compact JSON and
compressed in blocks. That is about 70 bytes a client, so 200,000 clients cost some 14 MB. A
client whose fields digest differs is unpacked to say which fields changed, and how.

Pure: no I/O, no clock. The poller feeds a `ChangeDetector` the clients of a refresh as they
arrive and, when the refresh succeeded, takes its `Detected` result and new `Baseline`.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.findings import FINDINGS
from exporter.model import MAX_LABEL_LENGTH, OAuthClient, shown, well_formed
from exporter.selection import shown_id

CHANGES = ("created", "deleted", "updated")
FIELDS = (
    "visibility",
    "token_endpoint_auth_method",
    "redirect_uris",
    "post_logout_redirect_uris",
    "allowed_cors_origins",
    "grant_types",
    "response_types",
    "scopes",
    "client_uri",
    "client_uri_verification",
    "has_rotated_secret",
    "client_name",
    "findings",
)
MAX_EVENTS = 20  # audit lines per account per refresh; the counters count every change
# Clients of one account that change detection follows: ~70 bytes each, so the largest baseline
# costs ~17 MB; an account past this (or an API inventing clients) is not compared, and says so.
MAX_CLIENTS = 250_000
_MAX_LISTED = 5  # URIs or values listed in one audit field; the rest are counted
_BLOCK = 256  # records compressed together
_MAX_TEXT = 300  # characters of one kept URI
_MORE = re.compile(r"\+\d+ #[A-Za-z0-9+/]{4}")  # the last item of a kept list that was cut
# Bytes of fingerprints one account may keep, and all accounts together (baselines kept and
# being built, an account's old and new counted once, see ByteBudget): whatever the API sends,
# change detection costs no more than this (the benchmark's 200,000 clients take ~14 MB).
MAX_ACCOUNT_BYTES = 24 << 20
MAX_TOTAL_BYTES = 48 << 20
_MASK64 = (1 << 64) - 1

# A record is a JSON array; its positions:
_ID, _NAME, _VISIBILITY, _AUTH, _REDIRECTS, _LOGOUTS, _ORIGINS = 0, 1, 2, 3, 4, 5, 6
_GRANTS, _RESPONSES, _ROTATED, _SCOPES, _CLIENT_URI, _VERIFICATION, _FINDINGS = range(7, 14)
# Which record position each field is read from.
_FIELD_AT = dict(zip(FIELDS, (_VISIBILITY, _AUTH, _REDIRECTS, _LOGOUTS, _ORIGINS, _GRANTS,
                              _RESPONSES, _SCOPES, _CLIENT_URI, _VERIFICATION, _ROTATED, _NAME,
                              _FINDINGS), strict=True))  # fmt: skip
Record = list[object]


def _digest(text: str) -> int:
    return (hash(text) & _MASK64) or 1


def _short(value: object) -> str:
    """A 24-bit digest, as 4 characters, for a field whose value no audit line shows: enough
    to tell that it changed (a change slips through once in 16 million), and cheap to keep."""
    return base64.b64encode((hash(value) & 0xFFFFFF).to_bytes(3, "big")).decode()


def make_record(client: OAuthClient, findings: frozenset[str]) -> Record:
    """What is kept of a client between refreshes: JSON-native, lists sorted, every value cut
    to a size (a record stays under ~2 KB whatever the client holds)."""
    return [
        shown_id(client.client_id),  # identity is the digest of the whole id
        _kept_text(client.client_name or ""),
        _kept_text(client.visibility),
        _kept_text(client.token_endpoint_auth_method or "") or None,
        _kept_list(client.redirect_uris),
        _kept_list(client.post_logout_redirect_uris),
        _kept_list(client.allowed_cors_origins),
        _kept_list(client.grant_types),
        _kept_list(client.response_types),
        client.has_rotated_secret,
        _short(tuple(sorted(set(client.scopes)))),
        _short(client.client_uri),
        _short((client.verification_status, client.verification_text)),
        sorted(findings),
    ]


def _kept_text(value: str) -> str:
    """The value as an audit line shows it, cut to MAX_LABEL_LENGTH; when that is not all of
    it (or it held a lone surrogate), a digest of the whole follows, so any change still shows
    — the same digest after a restart, and "…" only when something was cut."""
    kept = shown(value)
    if kept == value:
        return kept
    whole = zlib.crc32(value.encode("utf-8", "surrogatepass")) & 0xFFFFFF
    digest = base64.b64encode(whole.to_bytes(3, "big")).decode()
    return f"{kept}{'…' if len(value) > MAX_LABEL_LENGTH else ''} #{digest}"


def _kept_list(values: Iterable[str]) -> list[str]:
    """The sorted distinct values, the first few cut to _MAX_TEXT; when that is not all of
    them, a last item `+N #digest` stands for the whole, so any change still shows."""
    distinct = sorted(set(values))
    kept = [well_formed(value[:_MAX_TEXT]) for value in distinct[:_MAX_LISTED]]
    if len(distinct) > _MAX_LISTED or kept != distinct:
        kept.append(f"+{len(distinct) - len(kept)} #{_short(tuple(distinct))}")
    return kept


@dataclass(frozen=True)
class ClientChange:
    """One client that changed: an audit line's worth, values already shown as text."""

    change: str  # created, deleted or updated
    client_id: str
    client_name: str
    fields: tuple[str, ...]  # the documented fields that changed (updated only)
    details: tuple[tuple[str, str], ...]  # (key, text) for the security-relevant fields


@dataclass(frozen=True)
class Detected:
    """What one refresh found, compared with the baseline before it."""

    by_change: Counter[str]
    by_field: Counter[str]
    findings_gained: Counter[str]  # clients that came to hold each finding (created included)
    made_public: int  # clients whose visibility became public
    events: tuple[ClientChange, ...]  # the first MAX_EVENTS changes, in the order found
    total: int  # changes in all; more than len(events) when a burst was cut


@dataclass(frozen=True)
class ChangeTotals:
    """Counts since the exporter started, per account; every documented value is present."""

    by_change: tuple[tuple[str, int], ...] = tuple((c, 0) for c in CHANGES)
    by_field: tuple[tuple[str, int], ...] = tuple((f, 0) for f in FIELDS)
    findings_gained: tuple[tuple[str, int], ...] = tuple((f, 0) for f in FINDINGS)
    made_public: int = 0

    def plus(self, detected: Detected) -> ChangeTotals:
        return ChangeTotals(
            by_change=tuple((c, n + detected.by_change[c]) for c, n in self.by_change),
            by_field=tuple((f, n + detected.by_field[f]) for f, n in self.by_field),
            findings_gained=tuple(
                (f, n + detected.findings_gained[f]) for f, n in self.findings_gained
            ),
            made_public=self.made_public + detected.made_public,
        )


NO_CHANGES = ChangeTotals()  # shared by every account that has not changed yet


class Baseline:
    """The fingerprints of one account's clients after a good refresh; never changed after."""

    __slots__ = ("_blocks", "_cached", "_ids", "_prints", "_where")

    def __init__(self, ids: array[int], prints: array[int], where: array[int], blocks: list[bytes]):
        self._ids = ids  # id digests, sorted
        self._prints = prints  # fields digests, in the same order
        self._where = where  # each one's record number, in the order the records were packed
        self._blocks = blocks
        self._cached: tuple[int, list[Record]] = (-1, [])

    def __len__(self) -> int:
        return len(self._ids)

    def find(self, digest: int) -> int | None:
        index = bisect.bisect_left(self._ids, digest)
        return index if index < len(self._ids) and self._ids[index] == digest else None

    def fingerprint(self, index: int) -> int:
        return self._prints[index]

    def number(self, index: int) -> int:
        """Where the record of the client at `index` was packed."""
        return self._where[index]

    def record(self, number: int) -> Record:
        """A record by its number; reading numbers in order decodes each block once."""
        block, offset = divmod(number, _BLOCK)
        if self._cached[0] != block:
            self._cached = (block, _unpack(self._blocks[block]))
        return self._cached[1][offset]

    def size(self) -> int:
        """Bytes held, for the benchmark and tests."""
        arrays = (self._ids, self._prints, self._where)
        return sum(a.itemsize * len(a) for a in arrays) + sum(map(len, self._blocks))


class ByteBudget:
    """The bytes of fingerprints all accounts may keep together, shared by the detectors of one
    refresh as they pack, so the total holds however many accounts are refreshed at once.

    `used` starts as the bytes of the baselines already kept; a detector draws only what its new
    baseline grows past its account's previous one (an account's two are counted once), and
    gives back what it no longer keeps. (An account's previous baseline lives on while its new
    one is compared with it, so for a moment memory holds both, for at most as many accounts as
    are refreshed at once.)
    """

    __slots__ = ("total", "used")

    def __init__(self, total: int = MAX_TOTAL_BYTES, used: int = 0) -> None:
        self.total = total
        self.used = used

    def take(self, size: int) -> bool:
        if self.used + size > self.total:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        self.used -= size


class ChangeDetector:
    """Compares the clients of one refresh, fed as they arrive, with the previous baseline.

    While clients arrive it only notes which are new, which changed (their fields digest
    differs) and which were seen; `finish` then reads the records it needs block by block, in
    the order they were packed — the old ones, then the new — so a refresh in which every
    client changed decodes each block once, not once per client.
    """

    def __init__(
        self,
        previous: Baseline | None,
        limit: int = MAX_CLIENTS,
        max_bytes: int = MAX_ACCOUNT_BYTES,
        budget: ByteBudget | None = None,
    ) -> None:
        """`budget`, if any, already counts `previous`: it is shared with other accounts."""
        self._previous = previous
        self._limit = limit
        self._max_bytes = max_bytes
        self._budget = budget
        self._previous_bytes = previous.size() if previous is not None else 0
        self._held = self._previous_bytes  # of `budget`: the previous baseline, or the new one
        self.overflowed = False  # past `limit` clients or `max_bytes`: nothing kept or compared
        self._seen = bytearray(len(previous) if previous is not None else 0)
        self._ids = array("Q")
        self._prints = array("Q")
        self._blocks: list[bytes] = []
        self._packed_bytes = 0
        self._pending: list[str] = []
        self._updated_old = array("I")  # record numbers in the previous baseline...
        self._updated_new = array("I")  # ...and in this one, of the clients that changed
        self._by_change: Counter[str] = Counter()
        self._by_field: Counter[str] = Counter()
        self._gained: Counter[str] = Counter()
        self._made_public = 0
        self._events: list[ClientChange] = []

    def add(self, client: OAuthClient, findings: frozenset[str]) -> None:
        """One client of this refresh (each id once: the listing already removed repeats)."""
        if self.overflowed:
            return
        if len(self._ids) >= self._limit:
            self._overflow()
            return
        record = make_record(client, findings)
        fields_text = json.dumps(record[1:], separators=(",", ":"))
        text = f"[{json.dumps(record[_ID])},{fields_text[1:]}"
        digest = _digest(client.client_id)
        fingerprint = _digest(fields_text)
        number = len(self._ids)
        self._ids.append(digest)
        self._prints.append(fingerprint)
        self._pending.append(text)
        if len(self._pending) == _BLOCK:
            self._pack()
        previous = self._previous
        if previous is None:
            return
        index = previous.find(digest)
        if index is None:
            self._count("created", record, None)
            return
        self._seen[index] = 1
        if previous.fingerprint(index) != fingerprint:
            self._updated_old.append(previous.number(index))
            self._updated_new.append(number)

    def pending_work(self) -> int:
        """Records `finish` will read: a measure of whether to do it off the event loop."""
        return len(self._updated_old) + self._seen.count(0)

    def finish(self) -> tuple[Baseline | None, Detected]:
        """The new baseline, and what changed (nothing, when there was no baseline before);
        no baseline and nothing changed when the account was too large to follow."""
        if self._pending and not self.overflowed:
            self._pack()
        if self._previous is not None and not self.overflowed:
            self._compare(self._previous)
        baseline = None
        if not self.overflowed:
            order = sorted(range(len(self._ids)), key=self._ids.__getitem__)
            baseline = Baseline(
                array("Q", (self._ids[i] for i in order)),
                array("Q", (self._prints[i] for i in order)),
                array("I", order),
                self._blocks,
            )
        self._hold_exactly(baseline.size() if baseline is not None else 0)
        detected = Detected(
            by_change=self._by_change,
            by_field=self._by_field,
            findings_gained=self._gained,
            made_public=self._made_public,
            events=tuple(self._events),
            total=sum(self._by_change.values()),
        )
        return baseline, detected

    def cancel(self) -> None:
        """The refresh failed: the previous baseline stays, what was built since is let go."""
        self._hold_exactly(self._previous_bytes)

    def _hold_exactly(self, size: int) -> None:
        if self._budget is not None:
            self._budget.give_back(self._held - size)
        self._held = size

    def _compare(self, previous: Baseline) -> None:
        # Deleted: counted; only the first few are read, for their audit lines.
        deleted = [previous.number(i) for i in _zeros(self._seen)]
        self._by_change["deleted"] += len(deleted)
        room = max(0, MAX_EVENTS - len(self._events))
        # Updated: the old records' comparable values, read in packing order...
        count = len(self._updated_old)
        by_old = sorted(range(count), key=self._updated_old.__getitem__)
        listed = set(sorted(range(count), key=self._updated_new.__getitem__)[:room])
        before: list[_Comparable | None] = [None] * count
        kept_before: dict[int, Record] = {}
        for position in by_old:
            record = previous.record(self._updated_old[position])
            before[position] = _comparable(record)
            if position in listed:
                kept_before[position] = record
        # ...then the new ones, in the order they arrived.
        own = Baseline(array("Q"), array("Q"), array("I"), self._blocks)
        for position in sorted(range(count), key=self._updated_new.__getitem__):
            now = own.record(self._updated_new[position])
            old = before[position]
            assert old is not None
            fields = tuple(f for f, a, b in zip(FIELDS, old.fields, _field_digests(now),
                                                 strict=True) if a != b)  # fmt: skip
            self._count("updated", now, kept_before.get(position), fields, old)
        for number in sorted(deleted)[: max(0, MAX_EVENTS - len(self._events))]:
            record = previous.record(number)
            self._events.append(_event("deleted", record, None, ()))

    def _overflow(self) -> None:
        """Too many clients, or bytes, to follow: let go of everything kept, now."""
        self.overflowed = True
        self._hold_exactly(0)  # the previous baseline goes too: the account is not followed
        self._previous = None
        self._seen = bytearray()
        self._ids, self._prints, self._blocks, self._pending = array("Q"), array("Q"), [], []
        self._updated_old, self._updated_new = array("I"), array("I")
        self._by_change.clear()
        self._by_field.clear()
        self._gained.clear()
        self._made_public = 0
        self._events.clear()

    def _pack(self) -> None:
        block = zlib.compress("\n".join(self._pending).encode(), 9)
        # The block, and its clients' three entries (8 + 8 + 4 bytes): what Baseline.size()
        # will say, so an account whose clients did not change draws nothing past its own.
        self._packed_bytes += len(block) + 20 * len(self._pending)
        self._pending = []
        self._blocks.append(block)
        if self._packed_bytes > self._max_bytes or not self._hold(self._packed_bytes):
            self._overflow()

    def _hold(self, size: int) -> bool:
        """Whether the budget has room for `size` bytes of this account (taken if so)."""
        if self._budget is None or size <= self._held:
            return True
        if not self._budget.take(size - self._held):
            return False
        self._held = size
        return True

    def _count(
        self,
        change: str,
        now: Record,
        before: Record | None,
        fields: tuple[str, ...] = (),
        old: _Comparable | None = None,
    ) -> None:
        """A created client (no `old`) or an updated one (`old`, and `before` when listed)."""
        self._by_change[change] += 1
        self._by_field.update(fields)
        held_before = old.findings if old is not None else set()
        self._gained.update(set(_strings(now[_FINDINGS])) - held_before)
        if old is not None and not old.public and now[_VISIBILITY] == "public":
            self._made_public += 1
        if len(self._events) < MAX_EVENTS and (change == "created" or before is not None):
            self._events.append(_event(change, now, before, fields))


@dataclass(frozen=True)
class _Comparable:
    """What comparing an old record with a new one needs of the old one."""

    fields: tuple[int, ...]  # a digest per field of FIELDS
    findings: set[str]
    public: bool


def _comparable(record: Record) -> _Comparable:
    return _Comparable(
        _field_digests(record),
        set(_strings(record[_FINDINGS])),
        record[_VISIBILITY] == "public",
    )


def _field_digests(record: Record) -> tuple[int, ...]:
    return tuple(hash(repr(record[_FIELD_AT[f]])) & 0xFFFFFFFF for f in FIELDS)


def _event(
    change: str, record: Record, before: Record | None, fields: tuple[str, ...]
) -> ClientChange:
    """`record` is the client as it is now, or as it was when it was deleted."""
    return ClientChange(
        change=change,
        client_id=well_formed(str(record[_ID])),
        client_name=well_formed(str(record[_NAME])),
        fields=fields,
        details=_details(record, before),
    )


def _unpack(block: bytes) -> list[Record]:
    return [json.loads(line) for line in zlib.decompress(block).decode().split("\n")]


def _zeros(flags: bytearray) -> Iterable[int]:
    position = flags.find(0)
    while position != -1:
        yield position
        position = flags.find(0, position + 1)


def _details(now: Record, before: Record | None) -> tuple[tuple[str, str], ...]:
    """The security-relevant values an audit line shows: before and after, or what was added
    and removed, or (no `before`: a client created or deleted) what it holds."""
    if before is None:
        held = now
        shown = [
            ("visibility", str(held[_VISIBILITY])),
            ("token_endpoint_auth_method", str(held[_AUTH] or "unspecified")),
            ("redirect_uris", _listed(held[_REDIRECTS])),
            ("findings", _listed(held[_FINDINGS])),
        ]
        return tuple((key, value) for key, value in shown if value)
    details: list[tuple[str, str]] = []
    for key, at in (("visibility", _VISIBILITY), ("token_endpoint_auth_method", _AUTH),
                    ("grant_types", _GRANTS), ("response_types", _RESPONSES)):  # fmt: skip
        if now[at] != before[at]:
            details.append((key, f"{_plain(before[at])} -> {_plain(now[at])}"))
    for key, at in (("redirect_uris", _REDIRECTS), ("post_logout_redirect_uris", _LOGOUTS),
                    ("allowed_cors_origins", _ORIGINS), ("findings", _FINDINGS)):  # fmt: skip
        old_values, old_more = _split(before[at])
        new_values, new_more = _split(now[at])
        old, new = set(old_values), set(new_values)
        name = "findings_" if key == "findings" else f"{key}_"
        if new - old:
            details.append((f"{name}{'gained' if key == 'findings' else 'added'}",
                            _listed(sorted(new - old))))  # fmt: skip
        if old - new:
            details.append((f"{name}{'lost' if key == 'findings' else 'removed'}",
                            _listed(sorted(old - new))))  # fmt: skip
        if (old_more or new_more) and (old_more != new_more or old != new):
            details.append((f"{key}_count", f"{len(old) + old_more} -> {len(new) + new_more}"))
    if now[_ROTATED] != before[_ROTATED]:
        details.append(("secret", "rotated" if now[_ROTATED] else "rotated secret deleted"))
    return tuple(details)


def _strings(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _plain(value: object) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return "unspecified" if value is None else str(value)


def _split(values: object) -> tuple[list[str], int]:
    """A kept list's values, and how many more the client held than were kept."""
    items = _strings(values)
    if items and _MORE.fullmatch(items[-1]):
        return items[:-1], int(items[-1][1:].partition(" ")[0])
    return items, 0


def _listed(values: object) -> str:
    items, more = _split(values)
    more += max(0, len(items) - _MAX_LISTED)
    text = ", ".join(items[:_MAX_LISTED])
    return f"{text} (+{more} more)" if more else text


@dataclass(frozen=True)
class NotListed:
    """Stands, in the recent changes, for the changes of a refresh past the first MAX_EVENTS."""

    count: int


RecentChange = tuple[float, str, str | None, ClientChange | NotListed]  # when, account, what


@dataclass
class RecentChanges:
    """The last changes across accounts, newest first, for the status page."""

    limit: int = 100
    items: list[RecentChange] = field(default_factory=list)

    def add(self, when: float, account_id: str, account_name: str | None,
            changes: Iterable[ClientChange], not_listed: int = 0) -> None:  # fmt: skip
        """`changes` in the order found, and how many more that refresh found (a burst)."""
        fresh: list[RecentChange] = [(when, account_id, account_name, c) for c in changes]
        if not_listed:
            fresh.append((when, account_id, account_name, NotListed(not_listed)))
        self.items = (fresh[::-1] + self.items)[: self.limit]
