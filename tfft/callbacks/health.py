"""Forgetting and training health on the dashboard: per layer group, at every validation.

`TrainingHealth` measures each layer group (definitions in `tfft.health`) where a stage
validates, never between: how far its weights have moved from the pretrained ones, its
gradient norm on a fixed training batch and the size of its last update relative to its
weights. Each group is a TensorBoard run of its own, `health/<group>`, so that one chart
per figure holds a line per group. It warns, in one printed line and in the TensorBoard
text `health/warning`, when

- a group the stage keeps frozen changed at all: something outside the optimizer writes to
  it, or a BatchNorm layer in it runs in training mode (its statistics then move);
- a pretrained group the stage trains changes by more than `MAX_UPDATE_RATIO` of its size
  per step. The head is not watched: its weights are new and start small, so its ratio is
  large by construction (and a head that diverges shows in the loss, which the stage's
  guards watch).

Example:
    >>> health = TrainingHealth(groups, trained={"head", "conv5"}, probe=datasets.epoch(0),
    ...                         loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> model.fit(train, epochs=3, callbacks=[health])
    >>> health.history[-1]["groups"]["conv5"]["distance_from_pretrained"]
    0.0042
"""

import keras
import numpy as np

from tfft import health as measures
from tfft.adapters import adapted_kernels, weights_in_use
from tfft.batchnorm import batchnorm_layers
from tfft.freezing import HEAD

# Above this update ratio (a pretrained group's weights changing by more than 1% of their
# size in one step, ten times the usual rule of thumb of 1e-3) a stage is about to forget
# what the group knew. Measured on the MiniLM recipe's demo: the top layers at the
# finder's rate peaked at 2.2e-3; at ten times it, 2.1e-2, six steps before the loss
# collapsed. Its head stage ran at 1.1e-2 to 1.6e-2 and trained well: new weights start
# small, which is why the head is not watched (docs/cli.md#training-health).
MAX_UPDATE_RATIO = 1e-2
# The figures, as TensorBoard tags in each group's run.
DISTANCE, GRADIENT, UPDATE = "health/distance_from_pretrained", "health/gradient_norm", "health/update_ratio"


class TrainingHealth(keras.callbacks.Callback):
    """Logs each layer group's drift, gradient norm and update ratio at every epoch end.

    In tfft an epoch of `fit` is one validation period, so this measures at every
    validation. Put it after the validation callback (which may recompute BatchNorm
    statistics) and before the checkpoints.

    Args:
        groups: every `LayerGroup`, head included.
        trained: names of the groups the stage trains; the others are frozen.
        probe: a `tf.data.Dataset` of training batches, or a callable returning one: its
            first batch is the probe batch of the gradient norm, read at the first
            measurement and kept.
        loss: the training loss (a Keras loss on the model's outputs).
        pretrained: the model's weights (in `model.weights` order) to measure the distance
            from; None takes them when training first begins.
        class_weights: `{class_index: weight}` as given to `fit`, or None.
        logger: a `tfft.callbacks.tensorboard.TensorBoardLogger`, or None to only keep
            `history` and `warnings`.
        max_update_ratio: the update ratio above which a trained group other than the
            head is warned about; None warns about none (a backbone trained from random
            weights has nothing to forget).
        steps_left: optional callable returning the steps left in the stage, for a stage
            that ends before its last `fit` epoch does (the update ratio needs the weights
            from just before the last step).
        skip: optional callable; True leaves the epoch end unmeasured (a run stopping on a
            signal or a NaN).
        stage: the stage's name, for the warnings.
        verbose: print the warnings.
        trace_above: see `tfft.health.GradientProbe`.

    Attributes:
        history: one `{"step": int, "groups": {name: {figure: value}}}` per measurement.
        warnings: every warning line, in order.

    Example:
        >>> health = TrainingHealth(trainer.groups, {"head"}, datasets.epoch(0), loss, logger=logger)
        >>> model.fit(train, steps_per_epoch=20, epochs=3, callbacks=[validation, health, logger])
    """

    def __init__(self, groups, trained, probe, loss, pretrained=None, class_weights=None, logger=None,
                 max_update_ratio=MAX_UPDATE_RATIO, steps_left=None, skip=None, stage="", verbose=1,
                 trace_above=measures.TRACE_ABOVE):
        super().__init__()
        unknown = set(trained) - {g.name for g in groups}
        if unknown:
            raise ValueError(f"`trained` names groups that are not in `groups`. Received: trained={sorted(trained)}, "
                             f"groups={[g.name for g in groups]}")
        self.groups = list(groups)
        self.trained = set(trained)
        self.probe = probe
        self.loss = loss
        self.pretrained = pretrained
        self.class_weights = class_weights
        self.logger = logger
        self.max_update_ratio = None if max_update_ratio is None else float(max_update_ratio)
        self.steps_left = steps_left
        self.skip = skip or (lambda: False)
        self.stage = stage
        self.verbose = verbose
        self.trace_above = trace_above
        self.history = []
        self.warnings = []
        self._reference = None
        self._start = None
        self._before = None
        self._warned = set()
        self._batch = None
        self._gradients = None

    # Keras hooks.

    def on_train_begin(self, logs=None):
        if self._reference is None:
            weights = self.model.weights
            values = measures.read(weights) if self.pretrained is None else self.pretrained
            if len(values) != len(weights):
                raise ValueError(f"`pretrained` holds {len(values)} arrays for a model of {len(weights)} weights: "
                                 "give the model's weights in `model.weights` order.")
            self._reference = {id(v): value for v, value in zip(weights, values)}
        # Frozen groups must not change from here on: something that writes to them is a bug.
        self._start = {g.name: measures.digests(g.variables) for g in self._frozen()}
        self._before = None

    def on_train_batch_begin(self, batch, logs=None):
        execution = int(getattr(self.model, "steps_per_execution", 1) or 1)
        steps = self.params.get("steps") if self.params else None
        last = (steps is not None and int(batch) + execution >= steps) or (
            self.steps_left is not None and self.steps_left() <= execution)
        if last:
            # The weights just before the epoch's last step: its update is the update ratio.
            self._before = (self._step(), {g.name: _updated(g) for g in self._trained()})

    def on_epoch_end(self, epoch, logs=None):
        before, self._before = self._before, None
        if self.skip():
            return
        self.measure(before)

    # Measuring.

    def measure(self, before=None):
        """Measure every group now, log it and warn; returns the `history` entry.

        Args:
            before: optional `(step, {group: arrays})`: trained groups' weights at an
                earlier step, for the update ratio.
        """
        if self._reference is None:
            self.on_train_begin()
        step = self._step()
        figures = {g.name: {} for g in self.groups}
        for group in self.groups:
            if group.name == HEAD:
                continue  # a new head has no pretrained weights
            candidates, values = weights_in_use(group.trainable_candidates, group.layers)
            if candidates:
                figures[group.name]["distance_from_pretrained"] = measures.relative_distance(
                    values, [self._reference[id(v)] for v in candidates])
        measured = {g.name: _trainable(g) for g in self._trained() if _trainable(g)}
        if measured:
            for name, value in self._gradient_norms(measured).items():
                figures[name]["gradient_norm"] = value
        if before is not None and step > before[0]:
            for group in self._trained():
                weights = _updated(group)
                if weights and group.name in before[1]:
                    figures[group.name]["update_ratio"] = measures.update_ratio(
                        weights, before[1][group.name], step - before[0])
        entry = {"step": step, "groups": {name: values for name, values in figures.items() if values}}
        self.history.append(entry)
        self._write(entry)
        self._check(step, entry["groups"])
        return entry

    def _gradient_norms(self, measured):
        optimizer = getattr(self.model, "optimizer", None)
        scale = None
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            scale = float(np.asarray(optimizer.dynamic_scale))
        if self._gradients is None:
            probe = self.probe() if callable(self.probe) else self.probe
            self._batch = next(iter(probe.take(1)))
            weights = [v for g in self.groups for v in g.trainable_candidates]
            self._gradients = measures.GradientProbe(self.model, self.loss, measured, weights, self.class_weights,
                                                     trace_above=self.trace_above)
        return self._gradients(self._batch, loss_scale=scale)

    def _check(self, step, figures):
        for group in self._frozen():
            if self._start is None or group.name not in self._start:
                continue
            now = dict(measures.digests(group.variables))
            changed = [path for path, digest in self._start[group.name] if now.get(path) != digest]
            if changed:
                statistics = {v.path for bn in _batchnorms(group) for v in (bn.moving_mean, bn.moving_variance)}
                more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
                why = ("a BatchNorm layer in it runs in training mode" if set(changed) <= statistics else
                       "something outside the optimizer writes to its weights")
                self._warn("frozen", group.name, step,
                           f"frozen layer group '{group.name}' changed ({changed[0]}{more}): {why}")
        for group in self._trained():
            ratio = figures.get(group.name, {}).get("update_ratio")
            if group.name == HEAD or ratio is None or self.max_update_ratio is None:
                continue
            if not ratio <= self.max_update_ratio:
                self._warn("update", group.name, step,
                           f"layer group '{group.name}' changes by {ratio:.2g} of its size per step (above "
                           f"{self.max_update_ratio:g}): its learning rate is too high for it; lower the stage's "
                           "rate or the group's factor")

    def _warn(self, kind, group, step, what):
        if (kind, group) in self._warned:
            return  # once per stage is enough to act on
        self._warned.add((kind, group))
        line = f"health warning at step {step}" + (f", stage '{self.stage}'" if self.stage else "") + f": {what}"
        self.warnings.append(line)
        if self.verbose:
            print(line, flush=True)
        if self.logger is not None:
            self.logger.log_text("health/warning", line, step=step)

    def _write(self, entry):
        if self.logger is None:
            return
        tags = {"distance_from_pretrained": DISTANCE, "gradient_norm": GRADIENT, "update_ratio": UPDATE}
        for name, values in entry["groups"].items():
            scalars = {tags[figure]: value for figure, value in values.items() if np.isfinite(value)}
            if scalars:
                self.logger.log_scalars(scalars, run=f"health/{name}", step=entry["step"])

    def _step(self):
        return int(np.asarray(self.model.optimizer.iterations))

    def _trained(self):
        return [g for g in self.groups if g.name in self.trained]

    def _frozen(self):
        return [g for g in self.groups if g.name not in self.trained]


def _trainable(group):
    """The weights of `group` that train under the current `trainable` flags."""
    return [v for layer in group.layers for v in layer.trainable_weights]


def _updated(group):
    """The values of what `group` trains, as the layers compute with them: a LoRA group's
    adapted kernels merged with their adapters (whose own ratio, from `B = 0`, says nothing
    of how fast the layer changes)."""
    # A full-weight stage after a LoRA one trains the adapted kernels themselves: each once.
    variables = list({id(v): v for v in _trainable(group) + adapted_kernels(group.layers)}.values())
    return weights_in_use(variables, group.layers)[1]


def _batchnorms(group):
    return [bn for layer in group.layers for bn in batchnorm_layers(layer)]


def for_stage(trainer, stage, steps_left=None, skip=None):
    """The `TrainingHealth` of `trainer`'s `stage`, or None when `output.health` is off.

    Distances are measured from the weights the run started from (`trainer`'s initial
    snapshot, taken before a resumed run loads its checkpoint): the pretrained ones.

    Example:
        >>> health = for_stage(trainer, trainer.stages[1])
    """
    if not trainer.recipe.output.health:
        return None
    return TrainingHealth(
        trainer.groups, stage.trained_groups(trainer.group_names), lambda: trainer.datasets.epoch(0),
        trainer.build_loss(), pretrained=trainer._initial.weights, class_weights=trainer.datasets.class_weights,
        logger=trainer.logger, max_update_ratio=MAX_UPDATE_RATIO if trainer.backbone.pretrained else None,
        steps_left=steps_left, skip=skip, stage=stage.name, verbose=trainer.verbose,
        trace_above=measures.TRACE_ABOVE)
