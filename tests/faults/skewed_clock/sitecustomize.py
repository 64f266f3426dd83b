"""Imported at start-up by a worker the clock-skew test runs under libfaketime (this folder is
on its PYTHONPATH): time.sleep waits with select() instead of clock_nanosleep().

Python 3.11's time.sleep() sleeps until an absolute CLOCK_MONOTONIC deadline, which
libfaketime 0.9.10 (Debian 12's) rewrites into a negative time when the monotonic clock is
left real (FAKETIME_DONT_FAKE_MONOTONIC=1): every sleep fails with EINVAL
(https://github.com/wolfcw/libfaketime/issues/426, fixed in 0.9.11). select() takes a
relative timeout, which libfaketime passes through; the wall clock stays faked.
"""

from __future__ import annotations

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        select.select([], [], [], remaining)


time.sleep = _sleep
