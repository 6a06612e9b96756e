"""Callbacks that keep a stage on its budget and catch it collapsing.

`StageProgress` counts the training batches a stage has consumed and ends the stage after
exactly its planned steps, mid-epoch if need be. `CollapseGuard` watches the training loss
and stops the stage when it climbs far above where the stage started: on a real few-shot
speech set, unfreezing every group at 1e-3 took 2 of 3 seeds from 0.83 to 0.30 and 0.51 test
accuracy within an epoch (training accuracy 0.75 to 0.20). The trainer then rolls the stage
back to its start and tries again at a lower rate.
"""

import math

import keras

from tfft.callbacks.logs import scalar_or_none


class StageProgress(keras.callbacks.Callback):
    """Tracks the data position and stops training after `steps` batches.

    Args:
        start: global batch position at which the stage started.
        steps: batches the stage trains.
        position: where the stage is now (later than `start` when it resumes mid-way).

    Example:
        >>> progress = StageProgress(start=120, steps=50)
        >>> model.fit(datasets.train_stream(120), steps_per_epoch=20, epochs=3, callbacks=[progress])
        >>> progress.position
        170
    """

    def __init__(self, start, steps, position=None):
        super().__init__()
        self.start = int(start)
        self.steps = int(steps)
        self.position = self.start if position is None else int(position)
        self._epoch_start = self.position

    @property
    def done(self):
        """Batches consumed so far."""
        return self.position - self.start

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self.position

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step index of the execution, so this holds with
        # `steps_per_execution > 1` too.
        self.position = self._epoch_start + int(batch) + 1
        if self.done >= self.steps:
            self.model.stop_training = True


# Steps at a stage's start whose loss shows what unfreezing alone did, before the rate acts.
FIRST_STEPS = 2


class CollapseGuard(keras.callbacks.Callback):
    """Stops a stage whose training loss climbs far above its starting loss.

    The loss of each step is recovered from Keras's running mean, smoothed with an
    exponential moving average, and compared with `reference` (the training loss the stage
    started from: the previous stage's last one, or the mean loss of the stage's own first
    `FIRST_STEPS` steps if that is higher, up to `chance`). The stage has collapsed when the smoothed loss
    has lost half the way from `reference` back to `chance` (the loss of guessing) and is
    at least 1.5 times `reference`.

    Args:
        reference: the loss the stage starts from, or None to take the smoothed loss over
            the stage's first steps.
        chance: the loss of a uniform guess (`ln(num_classes)`; `ln 2` per label when
            multi-label).
        warm: steps of smoothing before any decision.

    Attributes:
        collapsed: None, or `(batch_position, smoothed_loss, threshold)` where it stopped.

    Example:
        >>> guard = CollapseGuard(reference=0.42, chance=math.log(10))
        >>> model.fit(..., callbacks=[progress, guard])
        >>> guard.collapsed
        None
    """

    def __init__(self, reference, chance, warm=8, beta=0.8):
        super().__init__()
        self.reference = reference
        self.chance = float(chance)
        self.warm = int(warm)
        self.beta = float(beta)
        self.collapsed = None
        self.seen = 0
        self._ema = 0.0
        self._mean, self._count = 0.0, 0
        self._first = []

    def threshold(self):
        ref = self.reference
        return max(ref + 0.5 * (self.chance - ref), 1.5 * ref)

    @property
    def smoothed(self):
        return self._ema / (1.0 - self.beta**self.seen) if self.seen else None

    def on_epoch_begin(self, epoch, logs=None):
        self._mean, self._count = 0.0, 0

    def on_train_batch_end(self, batch, logs=None):
        mean = scalar_or_none((logs or {}).get("loss"))
        count = int(batch) + 1
        if mean is None or count <= self._count:
            return
        # Keras logs the running mean of the epoch: undo it to get this step's loss.
        loss = (count * mean - self._count * self._mean) / (count - self._count)
        self._mean, self._count = mean, count
        if not math.isfinite(loss):
            return  # non-finite losses are another guard's business
        self.seen += 1
        self._ema = self.beta * self._ema + (1.0 - self.beta) * loss
        if self.seen <= FIRST_STEPS:
            self._first.append(loss)
        if self.seen < self.warm:
            return
        if self.seen == self.warm:
            if self.reference is None:
                self.reference = self.smoothed  # the first stage: its own start is all there is
                return
            # The stage's very first steps also set the reference: unfreezing BatchNorm or
            # dropout in new groups raises the loss at once, before the rate (still warming
            # up) can have done anything, and that is no collapse (on a from-scratch demo
            # the guard fired at 1e-6 and gave the stage up). Capped at chance: a loss above
            # guessing is a collapse itself.
            self.reference = max(self.reference, min(sum(self._first) / len(self._first), self.chance))
        if self.smoothed > self.threshold():
            self.collapsed = (self.seen, self.smoothed, self.threshold())
            self.model.stop_training = True
