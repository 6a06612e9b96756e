"""Optimizers with a learning-rate factor per variable, for per-group rates.

`AdamW` and `SGD` here are Keras's, with two additions: `set_factors` gives each variable a
factor that multiplies the learning rate (discriminative fine-tuning), and `set_anchors`
pulls variables toward their pretrained values (L2-SP). A factor of 0 skips
the variable entirely: neither it nor its moments change. Weight decay is applied in the
update step, scaled by the same factor, so a group held at 0 does not decay either.

Build the optimizer once over every variable any stage will train, then keep it for the
whole run: Keras refuses variables it was not built over, and rebuilding would drop the
moments the head has gathered.
"""

import keras
from keras import ops

from tfft.errors import RecipeError


class _GroupRates:
    """Mixin: per-variable learning-rate factors and decoupled weight decay."""

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._factors = [1.0] * len(var_list)
        self._anchors = [None] * len(var_list)
        self._anchor_strength = 0.0

    def set_anchors(self, pairs, strength):
        """L2-SP: pull each variable of `pairs` toward its anchor (its pretrained value).

        Every step moves such a variable by `strength x rate x (anchor - variable)`,
        decoupled from the gradient as AdamW's weight decay is, and instead of that decay;
        variables without an anchor keep the decay toward zero. Takes effect at the next
        trace of the train function.

        Args:
            pairs: `(variable, anchor)` pairs; an anchor is a non-trainable variable or a
                tensor holding the value to pull toward.
            strength: the pull per unit of learning rate.

        Example:
            >>> anchors = [tf.Variable(v.numpy(), trainable=False) for v in backbone.trainable_weights]
            >>> optimizer.set_anchors(zip(backbone.trainable_weights, anchors), strength=10.0)
        """
        if not self.built:
            raise RuntimeError("Build the optimizer over every trainable variable before setting anchors.")
        self._anchor_strength = float(strength)
        for variable, anchor in pairs:
            index = self._trainable_variables_indices.get(self._var_key(variable))
            if index is not None:
                self._anchors[index] = anchor

    def set_factors(self, factors):
        """Set the learning-rate factor of each variable.

        Variables not named keep factor 1. Takes effect at the next trace of the train
        function, which the trainer forces by compiling at every stage.

        Args:
            factors: a list of `(variables, factor)` pairs.

        Example:
            >>> optimizer.set_factors([(head.trainable_weights, 1.0), (conv5.weights, 0.5)])
        """
        if not self.built:
            raise RuntimeError("Build the optimizer over every trainable variable before setting factors.")
        for variables, factor in factors:
            for variable in variables:
                key = self._var_key(variable)
                if key in self._trainable_variables_indices:
                    self._factors[self._trainable_variables_indices[key]] = float(factor)

    def factor(self, variable):
        """The factor of `variable`, 1 if it is not tracked."""
        key = self._var_key(variable)
        index = self._trainable_variables_indices.get(key)
        return 1.0 if index is None else self._factors[index]

    def update_step(self, gradient, variable, learning_rate):
        # Under a distribution strategy `variable` is the raw tf.Variable of one replica;
        # `_get_variable_index` maps it back all the same.
        index = self._get_variable_index(variable)
        factor = self._factors[index]
        if factor == 0.0:
            return
        learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype), factor)
        anchor = self._anchors[index] if self._anchor_strength else None
        if anchor is not None:
            pull = learning_rate * self._anchor_strength
            self.assign_sub(variable, ops.multiply(ops.subtract(variable, ops.cast(anchor, variable.dtype)), pull))
        elif self.decoupled_weight_decay and len(variable.shape) > 1:
            # Decay kernels only: biases and normalisation scales keep their values.
            self.assign_sub(variable, ops.multiply(variable, learning_rate * self.decoupled_weight_decay))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["decoupled_weight_decay"] = self.decoupled_weight_decay
        return config


@keras.saving.register_keras_serializable(package="tfft")
class AdamW(_GroupRates, keras.optimizers.Adam):
    """Adam with decoupled weight decay and a learning-rate factor per variable.

    Args:
        learning_rate: a float or a `LearningRateSchedule`.
        decoupled_weight_decay: decay per unit of learning rate, applied to kernels only.
        **kwargs: passed to `keras.optimizers.Adam`.

    Example:
        >>> optimizer = AdamW(1e-3, decoupled_weight_decay=1e-4)
        >>> optimizer.build(model.trainable_variables)
        >>> optimizer.set_factors([(model.get_layer("conv5").weights, 0.5)])
    """

    def __init__(self, learning_rate=1e-3, decoupled_weight_decay=0.0, **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.decoupled_weight_decay = float(decoupled_weight_decay)


@keras.saving.register_keras_serializable(package="tfft")
class SGD(_GroupRates, keras.optimizers.SGD):
    """SGD with momentum, decoupled weight decay and a learning-rate factor per variable.

    Example:
        >>> optimizer = SGD(0.01, momentum=0.9)
    """

    def __init__(self, learning_rate=0.01, decoupled_weight_decay=0.0, momentum=0.9, **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.decoupled_weight_decay = float(decoupled_weight_decay)


OPTIMIZERS = {"adamw": AdamW, "sgd": SGD}


@keras.saving.register_keras_serializable(package="tfft")
class ConstantRate(keras.optimizers.schedules.LearningRateSchedule):
    """A constant learning rate as a schedule.

    An optimizer given a float keeps it in a variable, one given a schedule does not; the
    trainer sets a schedule at every stage, so the optimizer starts with one too and its
    variables stay the same all run long (a checkpoint, a snapshot, a resume rely on it).
    """

    def __init__(self, rate):
        self.rate = float(rate)

    def __call__(self, step):
        return keras.ops.cast(self.rate, "float32") + 0.0 * keras.ops.cast(step, "float32")

    def get_config(self):
        return {"rate": self.rate}


def make_optimizer(name, learning_rate, weight_decay=0.0, **kwargs):
    """Create a per-group optimizer by name (`"adamw"` or `"sgd"`); a float rate becomes a
    `ConstantRate` schedule.

    Example:
        >>> make_optimizer("adamw", 1e-3, weight_decay=1e-4)
    """
    if name not in OPTIMIZERS:
        raise RecipeError(f"Unknown optimizer. Expected one of {sorted(OPTIMIZERS)}. Received: train.optimizer={name!r}")
    if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        learning_rate = ConstantRate(learning_rate)
    return OPTIMIZERS[name](learning_rate, decoupled_weight_decay=weight_decay, **kwargs)
