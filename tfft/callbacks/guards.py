"""Stopping a run cleanly: on a non-finite loss, and on SIGTERM or SIGINT.

`NonFinite` stops at the first step whose loss is NaN or infinite, before any checkpoint or
model holds the damage. `Interruption` turns SIGTERM (a preemptible machine being taken
back, `kill`, a cluster's scheduler) and SIGINT (Ctrl-C) into a checkpoint at the end of the
current step and a clean stop; a second signal stops at once.
"""

import math
import signal

import keras
import numpy as np

from tfft.callbacks.logs import scalar_or_none

SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}
# Exit codes of `tfft run` and `tfft resume` (docs/cli.md, docs/reliability.md).
EXIT_INTERRUPTED = {signal.SIGTERM: 143, signal.SIGINT: 130}
EXIT_DIVERGED = 3
# A worker of a multi-worker run lost a peer (preempted, killed): EX_TEMPFAIL, "try again".
EXIT_PEER_LOST = 75


class NonFinite(keras.callbacks.Callback):
    """Stops training at the first step whose loss is not finite.

    Attributes:
        step: the global step where it happened, or None.
    """

    def __init__(self):
        super().__init__()
        self.step = None

    def on_train_batch_end(self, batch, logs=None):
        loss = scalar_or_none((logs or {}).get("loss"))
        if loss is not None and not math.isfinite(loss) and self.step is None:
            self.step = int(np.asarray(self.model.optimizer.iterations))
            self.model.stop_training = True


def weights_finite(model):
    """Whether every weight of `model` is finite."""
    return all(np.isfinite(np.asarray(v)).all() for v in model.weights if np.issubdtype(np.asarray(v).dtype, np.floating))


class Interruption(keras.callbacks.Callback):
    """While installed (`with Interruption(...) as guard`), SIGTERM and SIGINT make the run
    save a checkpoint at the end of the current step and stop.

    Args:
        save: callable writing a full checkpoint of the run as it is.

    Attributes:
        signal: the signal received, or None.
    """

    def __init__(self, save):
        super().__init__()
        self.save = save
        self.signal = None
        self.saved = False
        self._previous = {}

    def __enter__(self):
        for number in SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
        return False

    def _handle(self, number, frame):
        if self.signal is not None:
            # A second signal: no more grace.
            raise KeyboardInterrupt(f"{SIGNALS[number]} received twice")
        self.signal = number

    def on_train_batch_end(self, batch, logs=None):
        if self.signal is not None and not self.saved:
            self.saved = bool(self.save(logs))
            self.model.stop_training = True
