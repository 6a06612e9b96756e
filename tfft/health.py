"""Training health of a layer group: its drift from the pretrained weights, its gradient, its updates.

The three figures `tfft.callbacks.health.TrainingHealth` logs per layer group
(`tfft.freezing.LayerGroup`) at every validation, defined here:

- **distance from pretrained**, `||w - w0|| / ||w0||`: `w` every trainable candidate of the
  group (kernels, biases, embeddings, BatchNorm scale and offset; not BatchNorm statistics)
  laid end to end, `w0` the same at the run's start, before any step and before a resume
  loads a checkpoint. 0 means untouched; 0.01 means the weights moved by 1% of their size.
  A kernel with LoRA adapters counts as the layer computes with it, `W + alpha/rank A B`
  (`tfft.adapters.weights_in_use`); so does the update ratio.
- **gradient norm**, `||g||`: the L2 norm of the gradient of the training loss (the mean
  over a batch, class weights and regularisation losses included, unscaled) with respect to
  the group's trainable weights, on the *probe batch*: the first batch of the first
  training epoch, the same batch at every measurement.
- **update ratio**, `||w_t - w_{t-k}|| / (k ||w_t||)`: the size of the weights' last change,
  measured over the last `k` optimizer steps before the validation (the last step; the last
  execution of `k` steps with `runtime.steps_per_execution=k`), relative to the weights.

Why a probe with a `tf.GradientTape` and not an overridden `train_step`: Keras's `fit` does
not hand out its gradients, and an overridden `train_step` would put tfft's code into
every step of every run, beside what Keras handles there (loss scaling, distribution,
XLA, several steps per execution, the head model of cached features), to read a number
looked at ten times a run. The probe is one forward and backward pass on one batch at each
validation (about 10 a run), nothing between them, eager for a tiny model and traced for
a real backbone (see `GradientProbe`): a few training steps' worth
(`bench/health_overhead.py`). The probe leaves no trace: it reads its batch from a
pipeline of its own (the training stream's position does not move), puts back every state
a forward pass in training mode changes (dropout's random state, the statistics of
BatchNorm layers that train) and applies nothing, so a run trains to the same weights with
or without it. The price: its gradient is not the one the optimizer applied at that step
(another batch, another dropout mask); on a fixed batch the curve follows the weights
rather than the luck of the batch drawn.

Example:
    >>> before = read(variables)
    >>> model.fit(...)
    >>> relative_distance(read(variables), before)
    0.0123
"""

import hashlib

import numpy as np
import tensorflow as tf

# The gradient pass of a model of more parameters than this is traced; a smaller one's runs eagerly.
TRACE_ABOVE = 500_000


def read(variables):
    """Copies of `variables`' values as numpy arrays (on the host).

    Example:
        >>> [a.shape for a in read(model.trainable_weights)]
        [(8, 32), (32,)]
    """
    # `np.array` copies: a numpy view of a variable would follow it as it trains.
    return [np.array(v) for v in variables]


def norm(arrays):
    """The L2 norm of `arrays` laid end to end, as a Python float.

    Example:
        >>> norm([np.array([3.0]), np.array([4.0])])
        5.0
    """
    return float(np.sqrt(sum(float(np.linalg.norm(np.ravel(a))) ** 2 for a in arrays)))


def relative_distance(current, reference):
    """`||current - reference|| / ||reference||` over lists of arrays laid end to end.

    Exactly 0 when nothing changed; infinite when the reference is all zeros and the
    current values are not.

    Args:
        current: the arrays now.
        reference: the same arrays before (the pretrained weights).

    Example:
        >>> relative_distance([np.array([1.0, 1.0])], [np.array([1.0, 0.0])])
        1.0
    """
    moved = norm([np.subtract(a, b) for a, b in zip(current, reference)])
    size = norm(reference)
    if size == 0.0:
        return 0.0 if moved == 0.0 else float("inf")
    return moved / size


def update_ratio(after, before, steps):
    """`||after - before|| / (steps ||after||)`: the change per step relative to the weights.

    Args:
        after: the arrays now.
        before: the same arrays `steps` optimizer steps earlier.
        steps: optimizer steps between the two (at least 1).

    Example:
        >>> update_ratio([np.array([1.001])], [np.array([1.0])], 1)
        0.000999...
    """
    if steps < 1:
        raise ValueError(f"`steps` must be at least 1. Received: steps={steps}")
    size = norm(after)
    moved = norm([np.subtract(a, b) for a, b in zip(after, before)])
    if size == 0.0:
        return 0.0 if moved == 0.0 else float("inf")
    return moved / (steps * size)


def digests(variables):
    """A digest of each float variable's bytes: any change of any value changes it.

    Integer variables (random seed states, counters) are left out.

    Example:
        >>> digests(model.weights) == digests(model.weights)
        True
    """
    found = []
    for variable in variables:
        value = np.asarray(variable)
        if np.issubdtype(value.dtype, np.floating):
            digest = hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=16)
            found.append((variable.path, digest.digest()))
    return found


def sample_weights(labels, class_weights):
    """Per-example weights from `{class_index: weight}`, as Keras's `fit(class_weight=...)`
    derives them (one-hot or multi-hot labels by their arg-max)."""
    labels = np.asarray(labels)
    if labels.ndim > 1:
        labels = np.argmax(labels, axis=-1) if labels.shape[-1] != 1 else labels[..., 0]
    return np.array([class_weights.get(int(round(float(c))), 1.0) for c in labels], "float32")


def forward_state(model, weights):
    """The variables of `model` that a forward pass in training mode may change: every
    non-trainable variable but `weights` (the layers' own weights, frozen ones included),
    which leaves BatchNorm statistics and random seed states."""
    excluded = {id(v) for v in weights}
    return [v for v in model.non_trainable_variables if id(v) not in excluded]


class GradientProbe:
    """The gradient norm of each group on one batch, with the model's state left as it was.

    Each call runs `model(x, training=True)` once under a `tf.GradientTape`, then puts back
    every variable that pass changed (see `forward_state`). Outside a strategy's scope the
    loss is the mean over the whole batch, as the sum over replicas of `fit` makes it.

    For a model of more than `trace_above` parameters the pass is a `tf.function`, traced
    at the first call: on CPU an eager pass of a real backbone costs several times a
    traced one (MiniLM 1.6 s against 0.45, ResNet50 at 224 px 14.5 s against 5.8, tracing
    included in a first call of 2.1 and 10.5 s), while on a tiny model the trace would
    cost more than every eager call of a stage. The choice is made by size, not by timing
    a call: a run and the same run resumed in a new process then compute every figure the
    same way, to the bit (an eager and a traced pass differ in the last bits), whatever
    the load of the machine.

    Args:
        model: the Keras model.
        loss: a Keras loss on the model's outputs (`reduction="sum_over_batch_size"`).
        groups: `{name: [variables]}`: the trainable variables of each group to measure.
        weights: every weight of the model that is not state (all groups' trainable
            candidates); by default the variables of `groups`.
        class_weights: optional `{class_index: weight}`, as given to `fit`.
        trace_above: the model's parameter count above which the pass is traced; None
            never traces.

    Example:
        >>> probe = GradientProbe(model, model.loss, {"head": head.trainable_weights})
        >>> probe(next(iter(train)))
        {'head': 0.731...}
    """

    def __init__(self, model, loss, groups, weights=(), class_weights=None, trace_above=TRACE_ABOVE):
        self.model = model
        self.loss = loss
        self.groups = {name: list(members) for name, members in groups.items()}
        self.variables = [v for members in self.groups.values() for v in members]
        self.state = forward_state(model, list(weights) or self.variables)
        self.class_weights = class_weights
        self.traced = None
        if trace_above is not None and model.count_params() > trace_above:
            self.traced = tf.function(self._squares)

    def __call__(self, batch, loss_scale=None):
        """`{name: norm}` on `batch` (`(x, y)` or `(x, y, sample_weight)`; NaN where a
        gradient is not finite). `loss_scale`: float16 mixed precision's loss scale: the
        loss is multiplied by it before the backward pass and the gradients divided by it
        after, so small gradients do not underflow in float16."""
        x, y = batch[0], batch[1]
        sample_weight = batch[2] if len(batch) > 2 else None
        if self.class_weights:
            weighted = sample_weights(y, self.class_weights)
            sample_weight = weighted if sample_weight is None else np.asarray(sample_weight) * weighted
        scale = float(loss_scale or 1.0)
        saved = read(self.state)
        try:
            run = self.traced or self._squares
            squares = run(x, y, sample_weight, tf.constant(scale, "float32"))
            squares = [float(value) / scale**2 for value in squares]
        finally:
            for variable, before in zip(self.state, saved):
                variable.assign(before)
        return {name: float(np.sqrt(value)) if np.isfinite(value) else float("nan")
                for name, value in zip(self.groups, squares)}

    def _squares(self, x, y, sample_weight, scale):
        """Each group's sum of squared gradients of the scaled loss."""
        # The tape watches trainable variables by itself, as in Keras's own `train_step`.
        with tf.GradientTape() as tape:
            outputs = self.model(x, training=True)
            value = self.loss(y, tf.cast(outputs, "float32"), sample_weight)
            regularisation = [tf.cast(tf.reduce_sum(extra), "float32") for extra in self.model.losses]
            if regularisation:
                value = value + tf.add_n(regularisation)
            value = value * scale
        gradients = tape.gradient(value, self.variables)
        squares, index = [], 0
        for members in self.groups.values():
            total = tf.constant(0.0, "float64")
            for gradient in gradients[index:index + len(members)]:
                if gradient is not None:
                    # Dense first: an embedding's gradient comes as slices that may repeat rows.
                    total += tf.reduce_sum(tf.square(tf.cast(tf.convert_to_tensor(gradient), "float64")))
            squares.append(total)
            index += len(members)
        return squares


def gradient_norms(model, batch, loss, groups, weights=(), class_weights=None, loss_scale=None):
    """The gradient norm of each group on one batch, eagerly: one call of a `GradientProbe`.

    Args:
        model: the Keras model.
        batch: `(x, y)` or `(x, y, sample_weight)`.
        loss: a Keras loss on the model's outputs.
        groups: `{name: [variables]}`: the trainable variables of each group to measure.
        weights: every weight of the model that is not state; see `GradientProbe`.
        class_weights: optional `{class_index: weight}`, as given to `fit`.
        loss_scale: optional loss scale (float16 mixed precision).

    Example:
        >>> gradient_norms(model, next(iter(train)), model.loss, {"head": head.trainable_weights})
        {'head': 0.731...}
    """
    probe = GradientProbe(model, loss, groups, weights, class_weights, trace_above=None)
    return probe(batch, loss_scale)
