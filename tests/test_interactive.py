"""The CLI's standard input when it is not a terminal: lines, end of input, and signals
that its blocking read would otherwise miss."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time

import pytest

from lab.interactive import wakeable_stdin


class Signalled(Exception):
    pass


def _raise(signum, frame):
    raise Signalled(signum)


@pytest.fixture
def pipe():
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as stream:
        yield stream, write_end
    with contextlib.suppress(OSError):  # a test may have closed it (end of input)
        os.close(write_end)


def test_lines_then_end_of_input(pipe):
    stream, write_end = pipe
    os.write(write_end, b"h1 ping -c1 h2\nexit")
    with wakeable_stdin(stream) as stdin:
        assert not stdin.isatty()
        assert stdin.readline() == "h1 ping -c1 h2\n"
        os.close(write_end)
        assert stdin.readline() == "exit"  # the last line, without a newline
        assert stdin.readline() == ""  # Ctrl-D


def test_a_signal_the_blocking_read_never_sees_still_ends_it(pipe):
    """The signal goes to another thread (as one that came just before the read() call
    does to this one): no EINTR here, only the wakeup pipe tells the read."""
    stream, write_end = pipe
    previous = signal.signal(signal.SIGUSR1, _raise)
    fallback = threading.Timer(5, os.write, (write_end, b"nothing came\n"))

    def signal_this_thread() -> None:
        time.sleep(0.2)  # the main thread is in select() by then
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    other = threading.Thread(target=signal_this_thread)
    other.start()  # before the mask: the new thread takes SIGUSR1
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    fallback.start()
    started = time.monotonic()
    try:
        with wakeable_stdin(stream) as stdin, pytest.raises(Signalled):
            stdin.readline()
        # a plain read returns only when the fallback line comes (5 s), then the handler runs
        assert time.monotonic() - started < 2.5
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        signal.signal(signal.SIGUSR1, previous)
        fallback.cancel()
        other.join(5)


def test_lines_piped_together_stay_the_cli_s(pipe):
    """Commands piped at once are read at once: none is left in the pipe, where Mininet's
    poll() would pass it to the command running meanwhile as keystrokes."""
    stream, write_end = pipe
    os.write(write_end, b"client ping -c1 server\nserver ls\nexit\n")
    with wakeable_stdin(stream) as stdin:
        assert stdin.readline() == "client ping -c1 server\n"
        assert not select.select([stdin], [], [], 0)[0]  # the pipe is empty
        assert stdin.readline() == "server ls\n"
        assert stdin.readline() == "exit\n"
        os.write(write_end, b"x")
        assert stdin.read(1) == "x"


# A prompt at a pseudo-terminal: readline's `input()` through Cmd, as LabCLI reads it. The
# pre-input hook (readline runs it after drawing the prompt, before it waits) sends the
# SIGINT there: its handler runs inside the hook, whose exception readline drops, so the
# signal is spent and readline waits on; without ReadlineWake nothing ends the wait.
AT_THE_PROMPT = """
import cmd, os, readline, signal, sys, time
from lab.interactive import wakeable_stdin
class Shell(cmd.Cmd):
    prompt = "p> "
    def do_EOF(self, line):
        return True
readline.set_pre_input_hook(lambda: os.kill(os.getpid(), signal.SIGINT) if MODE == "lost" else None)
with wakeable_stdin() as stdin:
    started = time.monotonic()
    try:
        Shell(stdin=stdin).cmdloop()
        print("LEFT", flush=True)
    except KeyboardInterrupt:
        print(f"INTERRUPTED after {time.monotonic() - started:.2f} s", flush=True)
"""


def _at_a_terminal(mode: str, typed: bytes = b"") -> str:
    """Run AT_THE_PROMPT in a pseudo-terminal of its own; what it wrote (10 s at most)."""
    import pty
    import sys

    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(sys.executable, [sys.executable, "-c", f"MODE = {mode!r}\n" + AT_THE_PROMPT])
    out = b""
    deadline = time.monotonic() + 10
    try:
        while b"p> " not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                out += os.read(master, 4096)
        if typed:
            os.write(master, typed)
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child ended: EIO
                    break
                if not chunk:
                    break
                out += chunk
                if b"INTERRUPTED" in out or b"LEFT" in out:
                    break
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(master)
    return out.decode(errors="replace")


def test_a_ctrl_c_readline_never_saw_still_interrupts_the_prompt():
    out = _at_a_terminal("lost")
    assert "INTERRUPTED" in out, f"the prompt still waited 10 s after the SIGINT: {out!r}"
    seconds = float(out.split("INTERRUPTED after ", 1)[1].split()[0])
    assert seconds < 2, out


def test_a_ctrl_c_typed_at_the_prompt_interrupts_it_once():
    out = _at_a_terminal("typed", typed=b"\x03")
    assert "INTERRUPTED" in out, out
    out = _at_a_terminal("typed", typed=b"EOF\n")  # and a prompt left normally leaves
    assert "LEFT" in out, out
