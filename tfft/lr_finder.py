"""The learning-rate range test: sweep the rate up exponentially and watch the loss.

Leslie Smith's range test as fastai's `lr_find` runs it: the stage's trainable groups train
for up to `steps` steps while the rate grows exponentially from `start_lr` to `end_lr`; the
loss is smoothed with a bias-corrected moving average (beta 0.98) and the sweep stops once
the smoothed loss exceeds `diverge` times its minimum or stops being finite. The suggestion
is a tenth of the rate at the smoothed loss's minimum (`RULES` lists it and the others:
fastai's `valley`, Lightning's steepest fall). The steepest fall, the first default, was
fooled on real few-shot fine-tunes: their sweeps are flat and noisy for decades below a
shallow descent, and a wiggle of the flat part (5e-7 on spoken words) looked steeper than
the descent; the minimum is where the curve is clearest. The trainer restores the weights
and the optimizer afterwards, so the sweep leaves no trace (`tfft.snapshot`).

`tfft lr-find RECIPE` runs it from the command line; `schedule.lr="find"` and
`schedule.finetune_lr="find"` run it at the start of the stages they set.
"""

import dataclasses
import math

import keras
import numpy as np

from tfft.callbacks.logs import scalar_or_none
from tfft.errors import TfftError

RULES = {
    "steepest": "steepest fall of the smoothed loss per decade of rate (Lightning's suggestion)",
    "valley": "two thirds down the longest stretch of falling smoothed loss (fastai's valley)",
    "minimum": "a tenth of the rate at the smoothed loss's minimum (Smith's rule of thumb)",
}
RULE = "minimum"


@keras.saving.register_keras_serializable(package="tfft")
class ExponentialSweep(keras.optimizers.schedules.LearningRateSchedule):
    """`start_lr * (end_lr / start_lr) ** (t / (steps - 1))` at step `t` after `start_step`.

    Example:
        >>> sweep = ExponentialSweep(1e-7, 10.0, steps=100, start_step=0)
        >>> float(sweep(0)), float(sweep(99))
        (1e-07, 10.0)
    """

    def __init__(self, start_lr, end_lr, steps, start_step=0):
        self.start_lr = float(start_lr)
        self.end_lr = float(end_lr)
        self.steps = max(2, int(steps))
        self.start_step = int(start_step)

    def __call__(self, step):
        t = keras.ops.clip(keras.ops.cast(step, "float32") - float(self.start_step), 0.0, float(self.steps - 1))
        return self.start_lr * keras.ops.exp(t / float(self.steps - 1) * math.log(self.end_lr / self.start_lr))

    def rate(self, t):
        """The rate at sweep step `t`, as a Python float."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (min(t, self.steps - 1) / (self.steps - 1))

    def get_config(self):
        return dict(start_lr=self.start_lr, end_lr=self.end_lr, steps=self.steps, start_step=self.start_step)


class SweepRecorder(keras.callbacks.Callback):
    """Records `(rate, loss)` per sweep step; each Keras epoch of the sweep is one step."""

    def __init__(self, sweep, beta=0.98, diverge=4.0):
        super().__init__()
        self.sweep = sweep
        self.beta = beta
        self.diverge = diverge
        self.rates, self.losses, self.smoothed = [], [], []
        self.stopped = "end of the sweep"
        self._average = 0.0

    def on_epoch_end(self, epoch, logs=None):
        loss = scalar_or_none((logs or {}).get("loss"))
        t = len(self.losses)
        self.rates.append(self.sweep.rate(t))
        self.losses.append(loss if loss is not None else float("nan"))
        if loss is None or not math.isfinite(loss):
            self.smoothed.append(float("nan"))
            self.stopped = "the loss stopped being finite"
            self.model.stop_training = True
            return
        self._average = self.beta * self._average + (1.0 - self.beta) * loss
        smooth = self._average / (1.0 - self.beta ** (t + 1))
        self.smoothed.append(smooth)
        if t > 0 and smooth > self.diverge * min(self.smoothed):
            self.stopped = f"the smoothed loss exceeded {self.diverge:g}x its minimum"
            self.model.stop_training = True


@dataclasses.dataclass
class RangeTest:
    """What a range test found.

    Args:
        rates: the rate at each step.
        losses: the raw training loss at each step.
        smoothed: the smoothed loss at each step.
        suggestion: the suggested rate.
        rule: how it was chosen.
        stopped: why the sweep ended.
    """

    rates: list
    losses: list
    smoothed: list
    suggestion: float
    rule: str
    stopped: str

    def figure(self, title="Learning-rate range test"):
        """The smoothed loss against the rate (log scale), with the suggestion marked, as
        an RGB uint8 array."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.plot(self.rates, self.losses, color="0.8", linewidth=1, label="loss")
        axes.plot(self.rates, self.smoothed, color="C0", label="smoothed loss")
        axes.axvline(self.suggestion, color="C3", linestyle="--", label=f"suggestion {self.suggestion:.2g}")
        axes.set_xscale("log")
        axes.set_xlabel("learning rate")
        axes.set_ylabel("training loss")
        finite = [v for v in self.smoothed if math.isfinite(v)]
        if finite:
            axes.set_ylim(min(finite) * 0.9, max(finite[0], min(finite) * 4) * 1.1)
        axes.set_title(title)
        axes.legend(loc="upper left")
        figure.tight_layout()
        figure.canvas.draw()
        return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def suggest(rates, smoothed, rule=RULE):
    """The suggested rate of a sweep by `rule` (a key of `RULES`).

    The first tenth of the sweep and its last five points are left out, as fastai and
    Lightning do: the first points mostly show the smoothing warming up, the last ones the
    divergence.

    Example:
        >>> rates = np.logspace(-6, 0, 60)
        >>> losses = np.concatenate([np.linspace(2.0, 0.5, 45) ** 2, np.linspace(0.3, 5.0, 15)])
        >>> 1e-5 < suggest(rates, losses) < 1e-1
        True
    """
    if rule not in RULES:
        raise TfftError(f"Unknown learning-rate rule. Expected one of {sorted(RULES)}. Received: rule={rule!r}")
    values = [v for v in smoothed if math.isfinite(v)]
    n = len(values)
    if n < 8:
        raise TfftError(
            f"The learning-rate sweep stopped after {n} finite steps, too few to suggest a rate: "
            "lower the finder's start rate or give it more steps."
        )
    if rule == "valley":
        return valley(rates, values)
    skip, end = n // 10, max(n // 10 + 3, n - 5)
    rates, losses = np.asarray(rates[skip:end], "float64"), np.asarray(values[skip:end], "float64")
    if rule == "minimum":
        return float(rates[int(np.argmin(losses))] / 10.0)
    return float(rates[int(np.argmin(np.gradient(losses, np.log10(rates))))])


def valley(rates, values):
    """fastai's `valley` suggestion: the rate two thirds down the longest run of decreasing
    smoothed loss (a longest decreasing subsequence over the curve), skipping the first
    tenth of the sweep and its last five points as fastai does."""
    n = len(values)
    skip = n // 10
    rates, losses = list(rates[skip:max(skip + 3, n - 5)]), values[skip:max(skip + 3, n - 5)]
    lengths = [1] * len(losses)
    start, end = 0, 0
    for i in range(1, len(losses)):
        for j in range(i):
            if losses[i] < losses[j] and lengths[i] < lengths[j] + 1:
                lengths[i] = lengths[j] + 1
        if lengths[end] < lengths[i]:
            end = i
            start = end - lengths[end]
    sections = (end - start) / 3
    return float(rates[start + int(sections) + int(sections / 2)])
