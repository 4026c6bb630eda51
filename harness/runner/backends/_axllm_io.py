"""Driving a console inference binary (ax-llm's ``main``) and writing frames as PNG, stdlib only.

The binary is started once and kept at its ``prompt >>`` loop: loading the axmodels takes tens of
seconds and must never be inside a measurement. Its output is read in whatever pieces the kernel
delivers and every piece is timestamped on arrival (``perf_counter_ns``), so log lines and the
streamed token text carry the time they reached us.

A pseudo-terminal is used for its output by default: a C program line-buffers stdout on a terminal
but fully buffers it on a pipe, so through a pipe its log lines (ttft, encode time) would arrive
only at the next explicit flush, long after they were printed.
"""

from __future__ import annotations

import codecs
import os
import select
import signal
import struct
import subprocess
import time
import zlib
from typing import Callable, List, Optional, Sequence

from ._axllm_parse import Chunk

_now = time.perf_counter_ns


def png_bytes(width: int, height: int, rgb: bytes, level: int = 6) -> bytes:
    """An 8-bit RGB PNG (no PIL on the boards): filter type 0 on every row, one IDAT chunk."""
    if len(rgb) != width * height * 3:
        raise ValueError("expected %d RGB bytes for %dx%d, got %d" % (width * height * 3, width, height, len(rgb)))
    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, colour type 2 (RGB)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, level))
            + chunk(b"IEND", b""))


class ProcessExited(RuntimeError):
    """The engine process ended while we were waiting for output."""


def _open_pty() -> "tuple[int, int]":
    import pty
    import termios

    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # no "\n" -> "\r\n" translation: text arrives as printed
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return master, slave


class ConsoleProcess:
    """A child process fed line by line on stdin, its output read as timestamped chunks.

    stderr goes with stdout (one ordered stream) unless ``split_stderr``: then it is read on its
    own descriptor and its chunks are marked ``stream="err"`` (e.g. llama.cpp: tokens on stdout,
    logs on stderr)."""

    def __init__(self, argv: Sequence[str], cwd: Optional[str], use_pty: bool = True,
                 split_stderr: bool = False) -> None:
        self.argv = list(argv)
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in ("out", "err")}
        self._history: List[str] = []  # the last output, for error messages
        self._history_chars = 0
        ends: List[int] = []  # child-side descriptors, closed here once it has them
        masters: List[int] = []
        for _ in range(2 if split_stderr else 1):
            if use_pty:
                master, slave = _open_pty()
            else:
                master, slave = os.pipe()
            masters.append(master)
            ends.append(slave)
        try:
            self.proc = subprocess.Popen(
                self.argv, cwd=cwd, stdin=subprocess.PIPE, stdout=ends[0],
                stderr=ends[1] if split_stderr else subprocess.STDOUT,
                bufsize=0, start_new_session=True,  # its own process group: close() ends helpers too
            )
        except BaseException:
            for fd in masters:
                os.close(fd)
            raise
        finally:
            for fd in ends:
                os.close(fd)  # the child holds its own copies
        # stamps each chunk's arrival; a backend points it at its Announcer.now (the runner's clock)
        self.stamp: Callable[[], int] = _now
        self._fds = {masters[0]: "out"}
        if split_stderr:
            self._fds[masters[1]] = "err"
        self._open = set(self._fds)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n_chars: int = 1500) -> str:
        return "".join(self._history)[-n_chars:]

    def _remember(self, text: str) -> None:
        self._history.append(text)
        self._history_chars += len(text)
        while self._history_chars > 8000 and len(self._history) > 1:
            self._history_chars -= len(self._history.pop(0))

    def read_chunk(self, timeout_s: float) -> Optional[Chunk]:
        """The next piece of output (None when nothing arrived within the timeout).

        Raises ProcessExited once every output stream has ended."""
        while True:
            if not self._open:
                raise ProcessExited(self._exit_text())
            ready, _, _ = select.select(sorted(self._open), [], [], max(timeout_s, 0.0))
            if not ready:
                return None
            fd = ready[0]
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO on a pty whose other side closed: the child exited
                data = b""
            t_ns = self.stamp()  # taken as soon as the bytes are ours
            stream = self._fds[fd]
            if data:
                text = self._decoders[stream].decode(data)
                self._remember(text)
                return Chunk(t_ns, text, stream)
            self._open.discard(fd)
            tail = self._decoders[stream].decode(b"", final=True)
            if tail:
                self._remember(tail)
                return Chunk(t_ns, tail, stream)

    def read_until(self, done: Callable[[str], bool], timeout_s: float) -> List[Chunk]:
        """Chunks until ``done(all text read so far in this call)`` holds; TimeoutError after
        ``timeout_s`` (the chunks read so far are on the exception as ``chunks``)."""
        deadline = time.monotonic() + timeout_s
        chunks: List[Chunk] = []
        text = ""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                error = TimeoutError("no end of output after %.0f s" % timeout_s)
                error.chunks = chunks  # type: ignore[attr-defined]
                raise error
            try:
                chunk = self.read_chunk(min(remaining, 1.0))
            except ProcessExited as exc:
                exc.chunks = chunks  # type: ignore[attr-defined]
                raise
            if chunk is None:
                continue
            chunks.append(chunk)
            text += chunk.text
            if done(text):
                return chunks

    def drain(self, quiet_s: float) -> List[Chunk]:
        """Whatever arrives until the output has been quiet for ``quiet_s``."""
        chunks: List[Chunk] = []
        while True:
            chunk = self.read_chunk(quiet_s)
            if chunk is None:
                return chunks
            chunks.append(chunk)

    def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def _exit_text(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "its output ended but it is still running"
        return "it exited with code %s" % code

    def close(self, quit_line: Optional[str] = "q", timeout_s: float = 5.0) -> None:
        """Ask it to quit, then terminate, then kill its process group."""
        if self.alive and quit_line is not None:
            try:
                self.send_line(quit_line)
                self.proc.wait(timeout=timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.alive:
                break
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = {}
        self._open = set()
