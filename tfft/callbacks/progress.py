"""Progress a person can watch while a run trains.

On a terminal, Keras's progress bar shows each epoch's steps and its ETA (`fit(verbose=1)`).
Written to a log file that bar would be one line per epoch, and an epoch of a large data
set can take many minutes: `StepLines` prints a line every `every` seconds instead, with
the stage's and the run's step, the pace and both ETAs:

    stage 2/2 'finetune' step 120/400 (run 170/450): 1.24 s/step, loss 0.5312; stage ETA 5m47s, run ETA 5m47s
"""

import sys
import time

import keras

from tfft.callbacks.logs import scalar_or_none

# Seconds between two step lines in a log file.
EVERY = 30.0


def fit_verbosity(verbose, stream=None):
    """Keras `fit` verbosity for tfft's `verbose`: the progress bar on a terminal (1), one
    line per epoch otherwise (2, with `StepLines` between), nothing for 0."""
    if not verbose:
        return 0
    stream = stream or sys.stdout
    return 1 if getattr(stream, "isatty", lambda: False)() else 2


def duration(seconds):
    """`"45s"`, `"5m47s"` or `"2h05m"`.

    Example:
        >>> duration(347)
        '5m47s'
    """
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class StepLines(keras.callbacks.Callback):
    """A progress line every `every` seconds of training (for output that is not a terminal).

    The pace is measured from the end of the fit's first execution on, so that tracing and
    compiling do not count; both ETAs assume the stage's pace (a frozen stage is faster than
    the stages after it).

    Args:
        title: e.g. `"stage 2/3 'finetune'"`.
        progress: the stage's `StageProgress` (its `done` and `steps`).
        run_done: a callable giving the run's steps done before this stage.
        run_steps: the run's planned steps.
        every: seconds between lines.
        clock: a monotonic clock (tests pass their own).
        write: where the line goes.
    """

    def __init__(self, title, progress, run_done, run_steps, every=EVERY, clock=time.monotonic, write=None):
        super().__init__()
        self.title, self.progress, self.run_done, self.run_steps = title, progress, run_done, run_steps
        self.every, self.clock = every, clock
        self.write = write or (lambda line: print(line, flush=True))
        self._start = self._start_done = self._last = None

    def on_train_begin(self, logs=None):
        self._start = None

    def on_train_batch_end(self, batch, logs=None):
        now, done = self.clock(), self.progress.done
        if self._start is None:
            self._start, self._start_done, self._last = now, done, now
            return
        if now - self._last < self.every or done >= self.progress.steps:
            return
        self._last = now
        pace = (now - self._start) / max(1, done - self._start_done)
        run_done = self.run_done() + done
        loss = scalar_or_none((logs or {}).get("loss"))
        self.write(f"{self.title} step {done}/{self.progress.steps} (run {run_done}/{self.run_steps}): "
                   f"{pace:.3g} s/step" + (f", loss {loss:.4f}" if loss is not None else "")
                   + f"; stage ETA {duration(pace * (self.progress.steps - done))}, "
                   f"run ETA {duration(pace * (self.run_steps - run_done))}")
