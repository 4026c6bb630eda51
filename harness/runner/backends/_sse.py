"""Server-sent events from an OpenAI-compatible streaming response (standard library only).

The reader yields one :class:`SseEvent` per event, stamped by the caller's clock the moment the
line that completes the event is read off the socket: that is the chunk's arrival time. Events that
arrive in one TCP write are read back-to-back and get stamps microseconds apart, which is the truth
(the server sent them together), never smoothed over.

Format rules followed (WHATWG HTML "Server-sent events", 9.2.6): lines end in LF, CRLF or CR; a
blank line dispatches the event; ``data:`` lines are joined with LF; one leading space after the
colon is dropped; lines starting with ``:`` are comments; other fields (event, id, retry) are kept
by name. OpenAI's stream ends with ``data: [DONE]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

DONE = "[DONE]"
# A defensive cap per line: a server that never sends a newline must not eat the board's memory.
MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass
class SseEvent:
    data: str
    t_ns: int  # arrival (the runner's clock) of the event's last line
    fields: Dict[str, str] = field(default_factory=dict)  # event, id, retry ...

    @property
    def done(self) -> bool:
        return self.data.strip() == DONE

    def json(self) -> Optional[Dict[str, Any]]:
        """The data as a JSON object, None when it is not one."""
        try:
            value = json.loads(self.data)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def _split_lines(raw: bytes) -> List[bytes]:
    """One readline() result may hold CR-terminated lines (CR alone is a line end in SSE)."""
    text = raw.rstrip(b"\n")
    if text.endswith(b"\r"):
        text = text[:-1]
    return text.split(b"\r") if b"\r" in text else [text]


def read_events(readline: Callable[[], bytes], stamp: Callable[[], int]) -> Iterator[SseEvent]:
    """Events from a byte stream read line by line (``http.client.HTTPResponse.readline``)."""
    data: List[str] = []
    extra: Dict[str, str] = {}
    while True:
        raw = readline()
        t = stamp()
        if not raw:
            if data:  # a stream that ends without the final blank line still delivers its event
                yield SseEvent("\n".join(data), t, extra)
            return
        if len(raw) > MAX_LINE_BYTES:
            raise ValueError("server-sent event line longer than %d bytes" % MAX_LINE_BYTES)
        for line_bytes in _split_lines(raw):
            line = line_bytes.decode("utf-8", errors="replace")
            if line == "":
                if data:
                    yield SseEvent("\n".join(data), t, extra)
                data, extra = [], {}
                continue
            if line.startswith(":"):
                continue
            name, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name:
                extra[name] = value


def parse_lines(lines: Iterable[bytes], stamps: Optional[Iterable[int]] = None) -> List[SseEvent]:
    """Events from given lines (tests and fuzzing): each line stamped by ``stamps`` or 0."""
    line_iter = iter(list(lines))
    stamp_iter = iter(list(stamps) if stamps is not None else [])

    def readline() -> bytes:
        return next(line_iter, b"")

    def stamp() -> int:
        return next(stamp_iter, 0)

    return list(read_events(readline, stamp))
