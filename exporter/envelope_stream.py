"""The v4 response envelope parsed as its text arrives, handing over `result` items one by one.

Cloudflare answers a list as one JSON object, `{"result": [...], "success": ..., "errors": [...],
"result_info": {...}}`, in any key order, and a spec-literal answer holds every client of an
account. So the body is never held whole: a small state machine walks the object's top level,
and every value — each `result` item, or a whole other member — is decoded by the standard
library's C scanner (`JSONDecoder.raw_decode`) as soon as its text is complete. What is kept is
the unfinished value only, bounded by `max_value_size`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_JSON_STARTS = frozenset('{["-0123456789tfn')
_NUMBER_GOES_ON = re.compile(r"[0-9eE.+\-]*")
_NEAR_END = 8  # the longest cut-short token that fails before its end: "\\u12", "fals", "1e+"
# An unfinished value is decoded again only once this much more, or as much again as it holds
# (whichever is more), has arrived: each attempt decodes it from its start, so retrying on every
# small read would make a large value's cost quadratic in the number of reads; this way the
# attempts' lengths grow geometrically and their sum is linear in the value's size.
_RETRY_GROWTH = 64 * 1024
_decode = json.JSONDecoder().raw_decode
# Members kept for the caller; any other member is decoded (to find its end) and dropped.
_KEPT = frozenset({"success", "errors", "result_info"})


class EnvelopeError(ValueError):
    """The text is not a JSON object of the envelope's shape; the message is one line.

    `not_json` is set when the text does not even start like JSON (an HTML error page, say).
    """

    def __init__(self, message: str, *, not_json: bool = False) -> None:
        super().__init__(message)
        self.not_json = not_json


@dataclass
class Members:
    """The envelope's members other than `result`, once the object has ended."""

    values: dict[str, object] = field(default_factory=dict)  # success, errors, result_info


class EnvelopeStream:
    """`feed(text)` returns the `result` items completed by that text, `finish()` the rest;
    `members` holds the other members once the object has ended."""

    def __init__(self, *, max_value_size: int) -> None:
        self._max = max_value_size
        self._buffer = ""
        self._pos = 0
        self._dropped = 0  # characters dropped from the front of the buffer, for positions
        # start -> key | end -> colon -> value -> (item -> item_sep)* -> after -> key | end
        self._state = "start"
        self._key = ""
        self._seen_keys: set[str] = set()
        # An unfinished value at the position is tried again once the text from there holds
        # `_need` characters; until then what arrives waits in `_waiting`, not even joined.
        self._need = 0
        self._waiting: list[str] = []
        self._waiting_size = 0
        self.members = Members()

    def feed(self, text: str) -> list[object]:
        self._waiting.append(text)
        self._waiting_size += len(text)
        if len(self._buffer) - self._pos + self._waiting_size < self._need:
            return []
        self._take_waiting()
        return self._run(final=False)

    def finish(self) -> list[object]:
        """The items the end of the input completes (an unfinished one waits to be retried);
        raises EnvelopeError if the object has not ended. `members` is then complete."""
        self._take_waiting()
        items = self._run(final=True)
        if self._state != "done":
            raise EnvelopeError("the body ends before the JSON object does")
        return items

    def _take_waiting(self) -> None:
        if self._pos > len(self._buffer) // 2 or self._pos > (1 << 16):
            self._buffer = self._buffer[self._pos :]
            self._dropped += self._pos
            self._pos = 0
        self._buffer += "".join(self._waiting)
        self._waiting.clear()
        self._waiting_size = 0

    def _run(self, *, final: bool) -> list[object]:
        items: list[object] = []
        buffer = self._buffer
        while True:
            pos = _skip_whitespace(buffer, self._pos)
            self._pos = pos
            if pos >= len(buffer):
                return items
            char = buffer[pos]
            state = self._state
            if state == "item":
                value = self._value(final)
                if value is _INCOMPLETE:
                    return items
                items.append(value)
                self._state = "item_sep"
            elif state == "item_sep":
                self._expect(char, ",]", "',' or ']' in 'result'")
                self._state = "item" if char == "," else "after"
            elif state == "start":
                if char not in _JSON_STARTS:
                    raise EnvelopeError("the body is not JSON", not_json=True)
                self._expect(char, "{", "a JSON object")
                self._state = "key_or_end"
            elif state in ("key_or_end", "key"):
                if char == "}" and state == "key_or_end":
                    self._pos += 1
                    self._state = "done"
                    continue
                self._expect(char, '"', "a member name", advance=False)
                name = self._value(final)
                if name is _INCOMPLETE:
                    return items
                assert isinstance(name, str)
                if name in self._seen_keys:
                    raise EnvelopeError(f"the member {name[:40]!r} appears twice")
                if name in _KEPT or name == "result":
                    self._seen_keys.add(name)
                self._key = name
                self._state = "colon"
            elif state == "colon":
                self._expect(char, ":", "':'")
                self._state = "value"
            elif state == "value":
                if self._key == "result" and char == "[":
                    self._pos += 1
                    self._state = "first_item"
                    continue
                value = self._value(final)
                if value is _INCOMPLETE:
                    return items
                if self._key == "result":
                    if value is not None:
                        raise EnvelopeError("'result' is not a list")
                elif self._key in _KEPT:
                    self.members.values[self._key] = value
                self._state = "after"
            elif state == "first_item":
                if char == "]":
                    self._pos += 1
                    self._state = "after"
                else:
                    self._state = "item"
            elif state == "after":
                self._expect(char, ",}", "',' or '}'")
                self._state = "key" if char == "," else "done"
            else:  # done: only whitespace may follow
                raise EnvelopeError("text follows the JSON object")

    def _expect(self, char: str, allowed: str, what: str, *, advance: bool = True) -> None:
        if char not in allowed:
            raise EnvelopeError(f"expected {what} at character {self._dropped + self._pos}")
        if advance:
            self._pos += 1

    def _value(self, final: bool) -> object:
        """The JSON value at the position, or _INCOMPLETE when more text is needed for it."""
        buffer, pos = self._buffer, self._pos
        try:
            value, end = _decode(buffer, pos)
        except json.JSONDecodeError as error:
            # Text cut short fails near its end (or inside a string that has not closed yet);
            # text that is not JSON fails where it goes wrong.
            incomplete = not final and (
                error.pos >= len(buffer) - _NEAR_END or error.msg.startswith("Unterminated")
            )
            if not incomplete:
                at = self._dropped + error.pos
                raise EnvelopeError(f"not JSON: {error.msg} at character {at}") from None
            return self._incomplete()
        except RecursionError:
            raise EnvelopeError("JSON nested too deeply") from None
        except ValueError as error:  # e.g. an integer of more than 4300 digits
            raise EnvelopeError(f"not JSON we can read: {str(error)[:120]}") from None
        if end - pos > self._max:
            raise EnvelopeError(self._too_large())
        # A number at the end of what has arrived may go on in the next piece ("12" of "123",
        # "1" of "1e5"): only what follows can say it is complete.
        if not final and type(value) in (int, float) and _NUMBER_GOES_ON.fullmatch(buffer, end):
            return self._incomplete()
        self._pos = end
        self._need = 0
        return value

    def _incomplete(self) -> _Incomplete:
        unfinished = len(self._buffer) - self._pos
        if unfinished > self._max:
            raise EnvelopeError(self._too_large())
        # Never past the cap: one character more than it is enough to refuse the value.
        self._need = min(unfinished + max(_RETRY_GROWTH, unfinished), self._max + 1)
        return _INCOMPLETE

    def _too_large(self) -> str:
        where = "an item of 'result'" if self._state == "item" else "a value"
        return f"{where} is larger than {self._max} bytes"


def _skip_whitespace(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return match.end() if match is not None else pos  # the pattern matches the empty string


class _Incomplete:
    pass


_INCOMPLETE = _Incomplete()
