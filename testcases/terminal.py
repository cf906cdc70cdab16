"""A command's output read as it comes, for lab tests that talk to a prompt (`topo`, `run
--pause-on-fail`): a prompt has no newline, and select() on a pipe missed lines already in
its file object's buffer, so a thread reads the descriptor in chunks."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading
import time
from typing import Any


class Output:
    """What `proc` writes to `fd` (a pipe, or a pseudo-terminal's master side), as it comes."""

    def __init__(self, proc: subprocess.Popen[Any], fd: int) -> None:
        self.proc = proc
        self.fd = fd
        self.chunks: queue.Queue[str | None] = queue.Queue()
        self.pending = ""
        self.seen = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: every holder of a terminal's other side has gone
                chunk = b""
            if not chunk:
                break
            self.chunks.put(chunk.decode(errors="replace"))
        self.chunks.put(None)

    def _take(self, chunk: str) -> None:
        self.pending += chunk
        self.seen += chunk

    def until(self, marker: str, timeout: float = 60) -> str:
        """Output up to the end of `marker`, waiting at most `timeout` s for it."""
        deadline = time.monotonic() + timeout
        while marker not in self.pending:
            left = deadline - time.monotonic()
            try:
                chunk = self.chunks.get(timeout=left) if left > 0 else None
            except queue.Empty:
                chunk = None
            if chunk is None:
                raise AssertionError(f"no {marker!r} within {timeout:g} s: {self.seen[-3000:]}")
            self._take(chunk)
        end = self.pending.index(marker) + len(marker)
        text, self.pending = self.pending[:end], self.pending[end:]
        return text

    def rest(self, timeout: float = 60) -> str:
        """Everything until the process has ended (at most `timeout` s)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(queue.Empty):
                while chunk := self.chunks.get_nowait():
                    self._take(chunk)
            raise AssertionError(f"still running after {timeout:g} s: {self.seen[-3000:]}") from None
        while (chunk := self.chunks.get(timeout=timeout)) is not None:
            self._take(chunk)
        text, self.pending = self.pending, ""
        return text
