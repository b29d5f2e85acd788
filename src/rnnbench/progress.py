"""What a person watching training sees: how far an epoch is, and how long a run still takes.

Every epoch ends with one line per run (:meth:`rnnbench.runs.Run.end_epoch`): ``epoch i/N``,
the validation NLL with the best so far said in words, the run's elapsed time and the most it
may still take.  An epoch longer than :data:`AFTER` seconds also shows how far it is: a bar
redrawn about once a second when stdout is a terminal, else a line every :data:`LOG_EVERY`
seconds (a log file gets no carriage returns).

Cost in the training loop: one integer comparison per update (``i >= progress.next``); the clock
is read only when that is true, about once a second (the updates per second measured so far set
the next check).  Nothing here touches a tensor, a generator or a number the trainer computes.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("rnnbench.train")

AFTER = 20.0  # seconds: an epoch shows its progress once it has run this long
LOG_EVERY = 30.0  # seconds between progress lines when stdout is not a terminal
BAR_WIDTH = 24


def duration(seconds: float) -> str:
    """A time for people: ``45 s``, ``12 min``, ``3.5 h``."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def time_left(elapsed: float, epochs_done: int, epochs_left: int, budget_left: float | None = None) -> float:
    """The most a run may still take: its seconds per epoch so far times the epochs it may still
    train (early stopping ends it sooner), within what is left of a time budget."""
    left = elapsed / max(1, epochs_done) * max(0, epochs_left)
    return left if budget_left is None else min(left, max(0.0, budget_left))


class EpochProgress:
    """Progress within one epoch of ``total`` updates.  The loop calls :meth:`check` when
    ``done >= self.next`` and :meth:`close` when the epoch is over."""

    def __init__(self, label: str, epoch: int, max_epochs: int, total: int, stream=None):
        self.label, self.epoch, self.max_epochs, self.total = label, epoch, max_epochs, max(1, total)
        self.stream = stream if stream is not None else sys.stdout
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self.t0 = time.perf_counter()
        self.next = 1  # (the first check measures the rate)
        self.last_line = -float("inf")
        self.drawn = 0  # width of the bar on screen

    def check(self, done: int) -> None:
        elapsed = time.perf_counter() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        self.next = done + max(1, int(rate))  # about one second from now
        if elapsed < AFTER or done >= self.total:
            return
        left = (self.total - done) / rate if rate > 0 else 0.0
        head = f"{self.label}  epoch {self.epoch}/{self.max_epochs}"
        if self.tty:
            n = int(BAR_WIDTH * done / self.total)
            text = (f"{head}  [{'#' * n}{'.' * (BAR_WIDTH - n)}] {done}/{self.total} updates, "
                    f"{duration(elapsed)}, ~{duration(left)} left in the epoch")
            self.stream.write("\r" + text.ljust(self.drawn))
            self.stream.flush()
            self.drawn = len(text)
        elif elapsed - self.last_line >= LOG_EVERY:
            self.last_line = elapsed
            log.info("%s: %d of %d updates (%d%%) in %s, ~%s left in the epoch", head, done, self.total,
                     100 * done // self.total, duration(elapsed), duration(left))

    def close(self) -> None:
        """Clear the bar (the epoch's line follows)."""
        if self.drawn:
            self.stream.write("\r" + " " * self.drawn + "\r")
            self.stream.flush()
            self.drawn = 0
