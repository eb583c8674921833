"""How to walk a list endpoint whatever its paging: which page to ask for next, and when to stop.

Cloudflare's spec declares no query parameters for the OAuth clients list (one answer), its
reference shows `result_info` with page/per_page/total_count, and other v4 lists page at a fixed
size, by cursor, or refuse options they do not know with HTTP 400. A `Pager` makes the decisions
for one listing, with no I/O; `EndpointHabits` is what an endpoint has shown it does, learned once
and kept for the life of the process so later refreshes do not pay for the lesson again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from exporter.model import ResultInfo

StopRule = Literal[
    "empty page",  # the API says there is no more
    "no new ids",  # every id was seen before: the API ignores paging
    "total_count reached",
    "no result_info",  # an answer with nothing to page by, from an endpoint that does not page
    "short page",  # fewer items than a page holds, and no total_count to say otherwise
    "last cursor",  # cursor paging ended
    "page refused",  # a 400 to page=N from an endpoint that takes no paging parameters
]


@dataclass
class EndpointHabits:
    """What an endpoint accepts and does, as learned from its answers."""

    takes_per_page: bool = True  # False once it answered 400 to a first page with per_page
    takes_page: bool = True  # False once it answered 400 to `page=N`
    # True once it answered `page=N` (N > 1): a 400 to a later page is then an error, not a habit.
    took_page: bool = False
    # Learned from a second page asked for after an answer without result_info: True when it
    # repeated the first (one answer is everything), False when it brought new ids.
    ignores_paging: bool | None = None
    # The size of a full page when the endpoint pages without saying so (no result_info): a
    # first page shorter than this is the only one.
    quiet_page_size: int = 0
    # True once a listing has ended or had a second answer: what its first request and page 2
    # teach is known, and listings no longer wait for one another to learn it.
    settled: bool = False


@dataclass(frozen=True)
class PageFacts:
    """What one answer held, as the pager needs it."""

    items: int  # items in the answer, repeats included
    fresh: int  # ids not seen before in this listing
    seen: int  # distinct ids in the listing so far, this answer included
    info: ResultInfo | None


class Pager:
    """The requests of one listing: `query()` for the next one, `advance()` after its answer."""

    def __init__(self, habits: EndpointHabits, page_size: int) -> None:
        self.habits = habits
        self.page_size = page_size
        self.page = 1
        self.cursor: str | None = None
        self.answers = 0
        self.total_count: int | None = None  # the last one reported
        self.stopped_by: StopRule | None = None
        self._longest = 0  # the longest answer so far: a page's size when the API keeps quiet
        self._cursor_paging = False
        self.probing = False  # the next request only checks whether an endpoint pages

    def query(self) -> dict[str, str]:
        """The query parameters of the next request (none at all for a spec-literal endpoint)."""
        params: dict[str, str] = {}
        if self.cursor is not None:
            params["cursor"] = self.cursor
        elif self.page > 1 or self.habits.takes_per_page:
            params["page"] = str(self.page)
        if self.habits.takes_per_page and (self.cursor is not None or "page" in params):
            params["per_page"] = str(self.page_size)
        return params

    def refused(self, params: dict[str, str]) -> StopRule | None:
        """A 400 to a later page: the rule that ends the listing there, or None when it is an
        error. An endpoint that refuses paging parameters (or was only being probed) and has
        never answered `page=N` does not page: what it gave is all it gives."""
        if not self.answers or "page" not in params or self.habits.took_page:
            return None
        if self.probing:
            rule: StopRule = "no result_info"
        elif not self.habits.takes_per_page:
            rule = "page refused"
        else:
            return None
        self.habits.takes_page = False
        self.probing = False
        self.stopped_by = rule
        return rule

    def advance(self, facts: PageFacts) -> StopRule | None:
        """Record an answer; the rule that ends the listing, or None to ask for the next page."""
        self.answers += 1
        if self.cursor is None and self.page > 1:
            self.habits.took_page = True
        info = facts.info
        if info is not None and info.total_count is not None:
            self.total_count = info.total_count
        was_probe, self.probing = self.probing, False
        longest_before, self._longest = self._longest, max(self._longest, facts.items)
        if info is None and facts.fresh and longest_before:
            # A quiet pager's earlier pages were full ones.
            self.habits.quiet_page_size = max(self.habits.quiet_page_size, longest_before)
        rule = self._stop_rule(facts, was_probe, longest_before)
        if rule is not None:
            self.stopped_by = rule
            return rule
        if info is not None and info.cursor:
            self.cursor = info.cursor
            self._cursor_paging = True
        else:
            self.page += 1
        return None

    def _stop_rule(self, facts: PageFacts, was_probe: bool, longest_before: int) -> StopRule | None:
        info = facts.info
        if facts.items == 0:
            return "empty page"
        if facts.fresh == 0:
            if was_probe:
                self.habits.ignores_paging = True
            return "no new ids"
        if was_probe:
            self.habits.ignores_paging = False
        if info is not None and info.cursor:
            return None
        if self._cursor_paging or (info is not None and info.cursor == ""):
            return "last cursor"
        if info is None:
            if self.habits.ignores_paging or not self.habits.takes_page:
                return "no result_info"
            full = max(longest_before, self.habits.quiet_page_size)
            if full and facts.items < full:
                return "short page"  # pages of a size it does not say: this one is the last
            self.probing = self.habits.ignores_paging is None
            return None
        if info.total_count is not None and facts.seen >= info.total_count:
            return "total_count reached"
        if not self.habits.takes_page:
            return "page refused"  # it said more remain, but answers 400 to any other page
        if info.total_count is not None:
            return None
        per_page = info.per_page or (self.page_size if self.habits.takes_per_page else None)
        if per_page is None or facts.items < per_page:
            return "short page"
        return None
