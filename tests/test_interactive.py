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
