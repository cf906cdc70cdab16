"""`sessionlab topo`: a scenario's lab, its devices configured, under Mininet's CLI.

Ctrl-C interrupts the command running on a node, as in Mininet; at an empty prompt it
leaves, like Ctrl-D and `exit`. A closed terminal (SIGHUP) or SIGTERM leaves at once. The
lab is removed on every one of these ways out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
from collections.abc import Iterator
from typing import Any

from mininet.cli import CLI
from mininet.log import output, setLogLevel


class Hangup(BaseException):
    """The terminal went away (SIGHUP) or we were asked to stop (SIGTERM): leave now,
    whatever runs (a BaseException, so that no command's handler swallows it)."""


def _hangup(signum: int, frame: Any) -> None:
    raise Hangup(signal.Signals(signum).name)


class WakeableInput:
    """Standard input that is not a terminal, read so that a signal is never lost.

    Python runs a signal's handler between bytecodes: a SIGHUP or SIGTERM that came after
    the last check and before a blocking read() left the CLI waiting for input that a
    script or a closed pipe never sends (seen 1 in ~50 when the signal followed the
    prompt at once). Here input is read only once select() says it is there, and
    select() also watches the pipe the signal module writes to on every signal
    (`signal.set_wakeup_fd`), so it returns and the handler runs. Whatever came is read
    into a buffer at once, as Python's own stdin does: lines piped after a command are
    the CLI's next commands, not keys for the command Mininet runs meanwhile (it passes
    to a running command only what its poll() finds still in the pipe).
    """

    def __init__(self, fd: int, wakeup: int) -> None:
        self.fd = fd
        self.wakeup = wakeup
        self.buffer = b""
        self.ended = False

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return False

    def _fill(self) -> None:
        """Wait for input (or a signal, whose handler then runs) and take all there is."""
        while True:
            ready, _, _ = select.select([self.fd, self.wakeup], [], [])
            if self.wakeup in ready:  # a signal came; its handler has run by now
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wakeup, 512)
            if self.fd in ready:
                break
        chunk = os.read(self.fd, 65536)
        self.buffer += chunk
        self.ended = not chunk

    def read(self, size: int = 1) -> str:
        if not self.buffer and not self.ended:
            self._fill()
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken.decode(errors="replace")

    def readline(self) -> str:
        while b"\n" not in self.buffer and not self.ended:
            self._fill()
        end = self.buffer.find(b"\n") + 1 or len(self.buffer)  # at the end: what came, or ""
        line, self.buffer = self.buffer[:end], self.buffer[end:]
        return line.decode(errors="replace")


class ReadlineWake:
    """A terminal read by readline (`input()`), so that a signal is never lost either.

    CPython's readline waits in select() for a key and runs the signal handlers only when
    select() is interrupted. A signal that lands after the prompt is drawn and before the
    wait starts (or while a readline hook runs Python code, which swallows what it raises)
    is noted but not acted on until a key comes: a Ctrl-C typed as the prompt appeared was
    lost once beside other labs (clean-clone run at dd82f6b). So while the prompt is open
    the wakeup pipe is ours and a thread watches it: a signal that came while `input()`
    waits and that has not ended that `input()` GRACE s later was lost, and is sent to the
    main thread again, which by then waits in select(), so it interrupts it. A signal
    that ended its `input()` (the usual way) is not sent again: the prompt it came at is
    no longer waiting."""

    GRACE = 0.1  # s: a handled signal ends its input() within microseconds

    def __init__(self, wakeup: int) -> None:
        import threading

        self.wakeup = wakeup
        self.main = threading.main_thread().ident or 0
        self.lock = threading.Lock()
        self.prompts = 0  # input() calls so far
        self.waiting = 0  # the one that waits now (0: none)
        self._stop_read, self._stop_write = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._watch, name="readline-wake", daemon=True)

    def input(self, prompt: str = "") -> str:
        """`input()` as Cmd calls it, noted as waiting while it does."""
        import builtins

        with self.lock:
            self.prompts += 1
            self.waiting = self.prompts
        try:
            return builtins.input(prompt)
        finally:
            with self.lock:
                self.waiting = 0

    def _watch(self) -> None:
        while True:
            ready, _, _ = select.select([self.wakeup, self._stop_read], [], [])
            if self._stop_read in ready:
                return
            try:
                came = set(os.read(self.wakeup, 512))
            except BlockingIOError:
                continue
            with self.lock:
                prompt = self.waiting
            if not prompt:
                continue
            if select.select([self._stop_read], [], [], self.GRACE)[0]:
                return
            with self.lock:
                if self.waiting == prompt:  # still waiting at the prompt the signal came at: lost
                    for signum in came:
                        signal.pthread_kill(self.main, signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[ReadlineWake]:
        """Cmd's `input()` (the `cmd` module's name for it) is this one's while in the block."""
        import cmd

        cmd.input = self.input  # type: ignore[attr-defined]
        self._thread.start()
        try:
            yield self
        finally:
            del cmd.input  # type: ignore[attr-defined]
            os.write(self._stop_write, b"x")
            self._thread.join(timeout=5)
            os.close(self._stop_read)
            os.close(self._stop_write)


@contextlib.contextmanager
def wakeable_stdin(stream: Any = None) -> Iterator[Any]:
    """`stream` (standard input when None, as it is at the call: pytest swaps it) as the
    CLI should read it: a terminal as it is (readline's editing and history), watched by
    ReadlineWake, anything else through WakeableInput; either way while the signal wakeup
    pipe is ours."""
    stream = sys.stdin if stream is None else stream
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        if stream.isatty():
            with ReadlineWake(read_end).installed():
                yield stream
        else:
            yield WakeableInput(stream.fileno(), read_end)
    finally:
        signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)


class LabCLI(CLI):  # type: ignore[misc]
    """Mininet's CLI on a Lab: Ctrl-C at the prompt leaves instead of looping
    (`interrupted` then says so, for a caller that treats it apart from Ctrl-D)."""

    prompt = "sessionlab> "

    def __init__(self, lab: Any, stdin: Any = sys.stdin) -> None:
        self.lab = lab
        self.busy = False
        self.interrupted = False
        # Cmd reads a terminal with input() (readline), anything else with stdin.readline()
        self.use_rawinput = stdin.isatty()
        super().__init__(lab.net, stdin=stdin)

    def precmd(self, line: str) -> str:
        self.busy = True
        return str(line)

    def postcmd(self, stop: bool, line: str) -> bool:
        self.busy = False
        return stop

    def run(self) -> None:
        while True:
            try:
                self.cmdloop()
                return
            except KeyboardInterrupt:
                if not self.busy:
                    output("\n")
                    self.interrupted = True
                    return
                self.busy = False
                output("\nInterrupt\n")
                for node in self.mn.values():
                    while node.waiting:
                        node.sendInt()
                        node.waitOutput()


def serve(lab: Any, banner: str) -> bool:
    """Print `banner`, then the CLI until the user leaves; SIGHUP and SIGTERM leave too
    (raising Hangup). True when the user left with Ctrl-C at an empty prompt."""
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _hangup)
    # The lab keeps Mininet quiet (errors only); here its CLI prints commands' output.
    setLogLevel("output")
    print(banner, flush=True)
    with wakeable_stdin() as stdin:
        return LabCLI(lab, stdin=stdin).interrupted


@contextlib.contextmanager
def at_the_terminal() -> Iterator[None]:
    """While a prompt opens in the middle of a run (`--pause-on-fail`): Mininet's log
    writes to the standard error of now (its handler kept the one of its import, which
    pytest may have been capturing), and SIGHUP and SIGTERM get back their handlers."""
    from mininet.log import lg

    streams = [(h, h.stream, h.level) for h in lg.handlers if isinstance(h, logging.StreamHandler)]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM)}
    level = lg.level
    for handler, _, _ in streams:
        handler.setStream(sys.stderr)
    try:
        yield
    finally:
        for handler, stream, handler_level in streams:
            handler.setStream(stream)
            handler.setLevel(handler_level)
        for sig, previous in handlers.items():
            if previous is not None:  # None: a handler not set from Python, left as it is
                signal.signal(sig, previous)
        lg.setLevel(level)
