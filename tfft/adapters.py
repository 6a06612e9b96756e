"""Low-rank adapters on a model's layers: put on, trained alone, merged back for saving.

tfft uses the LoRA that Keras 3 layers carry themselves (`layer.enable_lora(rank,
lora_alpha)` on `Dense`, `EinsumDense` and `Conv1D`/`Conv2D`/`Conv3D`): the layer then
computes with `kernel + alpha / rank * lora_kernel_a @ lora_kernel_b`. Which layers of a
group get adapters:

- a keras-hub encoder: the layers its `Backbone.default_lora_layer_names()` names (the
  attention's `query` and `value` projections), the layers keras-hub's own
  `Backbone.enable_lora` adapts; tfft calls the same layer method per group, since
  keras-hub's adapts the whole encoder at one rank;
- any other backbone (Keras applications, tfft's CNNs, a `.keras` file): every `Dense`,
  `EinsumDense` and `Conv1D`/`Conv2D`/`Conv3D` layer. Depthwise, separable and transposed
  convolutions have no LoRA in Keras and a depthwise kernel, one filter per channel, has no
  matrix to factor: in an adapted group they keep their pretrained weights.

Three things Keras's LoRA leaves to the caller, done here:

1. **Trainable flags.** `enable_lora` freezes the pretrained kernel through the
   variable's own flag, but Keras's `Layer.trainable` setter sets every variable the layer
   created as trainable to the layer's flag: unfreezing an adapted layer (as
   `tfft.freezing.apply_freezing` does at every stage) makes its kernel trainable again.
   `set_flags` therefore sets the variables' flags after the layers': in a stage that
   adapts a group, only its adapters train; in a stage that trains it in full, its
   adapters hold still.
2. **Checkpoints.** An adapted layer saves its *merged* kernel and no adapters
   (`save_own_variables`), and loading zeroes the adapters: a resumed run would restart
   them from zero with a changed kernel. `raw_weights` and `restore_raw_weights` keep the
   adapted layers' variables as they are, for `tfft.callbacks.checkpoints`.
3. **Plain saved models.** An adapted layer's config keeps `lora_rank`, so a saved model
   would load with adapters again. `merged_copy` builds the same model from configs without
   them and loads the merged weights into it.
"""

import dataclasses
import os
import tempfile

import keras
import numpy as np

from tfft.errors import RecipeError
from tfft.freezing import _is_batch_norm, _sublayers
from tfft.lora import explicitly_named

# Layers with Keras's own `enable_lora` that tfft adapts in a backbone without named targets.
# (`Embedding` has one too; an embedding table is left as pretrained, as peft and keras-hub do.)
ADAPTABLE = (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Conv1D, keras.layers.Conv2D,
             keras.layers.Conv3D)


@dataclasses.dataclass
class GroupAdapters:
    """The adapters of one layer group.

    Args:
        group: the group's name.
        rank: the adapters' rank.
        alpha: their scale is `alpha / rank`.
        layers: the adapted layers.
        variables: the adapters' variables (`lora_kernel_a`, `lora_kernel_b` of each layer).
        base: the other variables of the group: what LoRA leaves as pretrained.
    """

    group: str
    rank: int
    alpha: float
    layers: list
    variables: list
    base: list

    @property
    def num_params(self):
        """Parameters of the adapters."""
        return int(sum(np.prod(v.shape) for v in self.variables))

    @property
    def layer_names(self):
        """Names of the adapted layers, each once (keras-hub repeats `query` in every block)."""
        return list(dict.fromkeys(layer.name for layer in self.layers))


def adaptable_layers(group, targets=None):
    """The layers of `group` LoRA would adapt.

    Args:
        group: a `tfft.freezing.LayerGroup`.
        targets: layer names to adapt (a keras-hub encoder's `default_lora_layer_names()`),
            or None: every layer of the `ADAPTABLE` kinds.

    Example:
        >>> [layer.name for layer in adaptable_layers(groups[-2])]
        ['conv5_block1_1_conv', 'conv5_block1_2_conv', ...]
    """
    found = {}
    for top in group.layers:
        for layer in _sublayers(top):
            if not hasattr(layer, "enable_lora") or getattr(layer, "kernel_constraint", None) is not None:
                continue  # Keras refuses LoRA on a constrained kernel
            wanted = layer.name in targets if targets is not None else isinstance(layer, ADAPTABLE)
            if wanted and layer.built:
                found.setdefault(id(layer), layer)
    return list(found.values())


def enable(groups, plan, names, targets=None):
    """Put adapters on the layers of every group `plan` adapts; returns `{group: GroupAdapters}`.

    Call it before the optimizer is built: the adapters are variables the optimizer must
    know from the start.

    Args:
        groups: every `LayerGroup`, head included.
        plan: `{group_name: LoRA}` (`tfft.lora.adapter_plan`).
        names: the backbone's group names, bottom to top.
        targets: layer names to adapt, or None for every layer of the `ADAPTABLE` kinds.

    Raises:
        RecipeError: a group the recipe names by name has no layer to adapt.

    Example:
        >>> adapters = enable(trainer.groups, {"conv5": LoRA(rank=4)}, trainer.group_names)
        >>> adapters["conv5"].num_params
    """
    by_name = {g.name: g for g in groups}
    result = {}
    for name, lora in plan.items():
        group = by_name[name]
        layers = adaptable_layers(group, targets)
        if not layers and name in explicitly_named(lora, names):
            what = f"no layer named {sorted(targets)}" if targets is not None else \
                "no Dense, EinsumDense or Conv1D/2D/3D layer"
            raise lora.error(f"{lora.key}.groups names '{name}', which has {what}: LoRA has nothing to adapt "
                             "there. Train it in full (leave it out of lora.groups) or name other groups.")
        if not layers:
            continue  # adapted by default (every group the stage trains): nothing in it trains
        variables = []
        for layer in layers:
            if getattr(layer, "lora_enabled", False):
                raise RecipeError(f"Layer '{layer.name}' of group '{name}' already has LoRA adapters: tfft puts "
                                  "them on itself. Give the backbone without them.")
            before = {id(v) for v in layer.weights}
            layer.enable_lora(lora.rank, lora_alpha=lora.rank * lora.scale)
            variables += [v for v in layer.weights if id(v) not in before]
        own = {id(v) for v in variables}
        result[name] = GroupAdapters(name, lora.rank, lora.rank * lora.scale, layers, variables,
                                     [v for v in group.variables if id(v) not in own])
    return result


def set_flags(groups, adapters, adapted):
    """Set the variables' trainable flags of one stage, after `tfft.freezing.apply_freezing`
    set the layers'. Returns the variables that must not move in this stage although their
    layer trains (for a learning-rate factor of 0).

    In a group the stage adapts, the adapters train and nothing else does: its BatchNorm
    layers run in inference mode and every other variable is frozen. In any other group the
    adapters are frozen (a full-weight stage trains the pretrained kernels, which the
    adapters' frozen product is added to).

    Args:
        groups: every `LayerGroup`, head included.
        adapters: `{group: GroupAdapters}` from `enable`.
        adapted: names of the groups this stage trains through adapters.

    Example:
        >>> apply_freezing(groups, {"head", "conv5"})
        >>> held = set_flags(groups, adapters, {"conv5"})
    """
    held = []
    for group in groups:
        own = adapters.get(group.name)
        if group.name in adapted:
            for layer in group.layers:
                for sub in _sublayers(layer):
                    if _is_batch_norm(sub):
                        sub.trainable = False
            keep = {id(v) for v in own.variables} if own is not None else set()
            for variable in group.variables:
                variable.trainable = id(variable) in keep
                if id(variable) not in keep:
                    held.append(variable)
        elif own is not None:
            for variable in own.variables:
                variable.trainable = False
            held += own.variables
    return held


def adapter_variables(adapters):
    """Every adapter variable of `adapters`, a `{group: GroupAdapters}` from `enable`.

    Example:
        >>> [v.path for v in adapter_variables(trainer.adapters)][:2]
        ['conv5_block1_1_conv/lora_kernel_a', 'conv5_block1_1_conv/lora_kernel_b']
    """
    return [v for own in adapters.values() for v in own.variables]


def weights_in_use(variables, layers):
    """The values `layers` compute with, for `variables` (theirs, in any order): each the
    variable's own value, but an adapted layer's kernel as `W + alpha / rank * A @ B` (the
    layer's `kernel` or `embeddings` property), and the adapters themselves left out.

    Under LoRA the pretrained kernel never moves: what moves is the sum the layer uses, and
    this is what `tfft.callbacks.health` measures the drift and updates of.

    Returns:
        `(kept, values)`: the variables kept (all but the adapters) and their values, numpy
        arrays on the host.

    Example:
        >>> kept, values = weights_in_use(group.trainable_candidates, group.layers)
    """
    merged, skip = {}, set()
    for layer in _lora_layers(layers):
        merged[id(_base_kernel(layer))] = layer
        skip.update((id(layer.lora_kernel_a), id(layer.lora_kernel_b)))
    kept = [v for v in variables if id(v) not in skip]
    values = []
    for variable in kept:
        layer = merged.get(id(variable))
        if layer is None:
            values.append(np.array(variable))
        else:
            values.append(np.array(layer.embeddings if isinstance(layer, keras.layers.Embedding) else layer.kernel))
    return kept, values


def adapted_kernels(layers):
    """The pretrained kernels of the LoRA-adapted layers among `layers` (and inside them)."""
    return [_base_kernel(layer) for layer in _lora_layers(layers)]


def _lora_layers(layers):
    found = {}
    for top in layers:
        for layer in _sublayers(top):
            if getattr(layer, "lora_enabled", False):
                found.setdefault(id(layer), layer)
    return list(found.values())


def _base_kernel(layer):
    """The variable Keras's LoRA adds the adapters' product to (`_kernel`, `_embeddings`)."""
    return layer._embeddings if isinstance(layer, keras.layers.Embedding) else layer._kernel


def _adapted_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if getattr(layer, "lora_enabled", False)]


def raw_weights(model):
    """Every variable of the model's adapted layers as saved nowhere else: the pretrained
    kernel and the adapters apart (a weights file holds their merged sum). `{}` when no
    layer is adapted.

    Args:
        model: a Keras model.

    Returns:
        `{"0": array, "1": array, ..., "paths": array of variable paths}`, for `np.savez`.

    Example:
        >>> np.savez("adapters.npz", **raw_weights(trainer.model))
    """
    variables = [v for layer in _adapted_layers(model) for v in layer.weights]
    if not variables:
        return {}
    arrays = {str(i): np.asarray(v) for i, v in enumerate(variables)}
    arrays["paths"] = np.array([v.path for v in variables], dtype=str)
    return arrays


def raw_weights_mismatch(model, arrays):
    """Why `arrays` (from `raw_weights`) do not fit the model's adapted layers, or None.

    Args:
        model: a Keras model.
        arrays: what `raw_weights` returned, or a loaded `.npz` as a dict.

    Example:
        >>> raw_weights_mismatch(trainer.model, raw_weights(trainer.model)) is None
        True
    """
    variables = [v for layer in _adapted_layers(model) for v in layer.weights]
    paths = [str(p) for p in arrays["paths"]] if "paths" in arrays else []
    shapes = [tuple(arrays[str(i)].shape) for i in range(len(paths))]
    if len(paths) == len(variables) and all(tuple(v.shape) == s for v, s in zip(variables, shapes)):
        return None
    return (f"The checkpoint holds {len(paths)} variables of layers with LoRA adapters ({paths[:2]}...) but the "
            f"model has {len(variables)} ({[v.path for v in variables[:2]]}...): the recipe's lora settings differ "
            "from the run that wrote it.")


def restore_raw_weights(model, arrays):
    """Put back what `raw_weights` saved (checked with `raw_weights_mismatch`), after the
    model's weights file was loaded.

    Args:
        model: the Keras model the arrays were taken from, or one built the same way.
        arrays: what `raw_weights` returned, or a loaded `.npz` as a dict.

    Example:
        >>> model.load_weights("model.weights.h5")     # merged kernels, zeroed adapters
        >>> restore_raw_weights(model, dict(np.load("adapters.npz")))
    """
    variables = [v for layer in _adapted_layers(model) for v in layer.weights]
    for i, variable in enumerate(variables):
        variable.assign(arrays[str(i)])


def has_adapters(model):
    """Whether any layer of `model` carries LoRA adapters.

    Example:
        >>> has_adapters(keras.models.load_model("runs/tickets/model.keras"))
        False
    """
    return bool(_adapted_layers(model))


def merged_copy(model):
    """A copy of a functional `model` whose adapted layers are plain layers holding the
    merged kernels `kernel + alpha / rank * A @ B`; `model` itself when nothing is adapted.

    The copy computes what the adapted model computes (to float rounding) and carries no
    trace of the adapters: no `lora_*` variables, no `lora_rank` in its layers' configs. It
    is what `model.keras` holds, so the file loads with plain Keras and can be the backbone
    of another recipe.

    Args:
        model: a functional Keras model.

    Example:
        >>> plain = merged_copy(trainer.model)
        >>> np.allclose(plain.predict(x), trainer.model.predict(x), atol=1e-5)
        True
    """
    if not has_adapters(model):
        return model
    plain = keras.Model.from_config(_without_lora(model.get_config()))
    with tempfile.TemporaryDirectory() as directory:
        # An adapted layer writes its merged kernel (Keras's `save_own_variables`), in the
        # plain layer's own format.
        path = os.path.join(directory, "merged.weights.h5")
        keras.Model(model.inputs, model.outputs).save_weights(path)
        plain.load_weights(path)
    return plain


def _without_lora(config):
    if isinstance(config, dict):
        return {k: _without_lora(v) for k, v in config.items() if k not in ("lora_rank", "lora_alpha")}
    if isinstance(config, list):
        return [_without_lora(v) for v in config]
    return config


def optimizer_state(optimizer):
    """`(variables, bytes)` of an optimizer's state: its moments and counters, the memory it
    holds besides the model.

    Args:
        optimizer: a built Keras optimizer (a loss-scale wrapper counts its own state too).

    Example:
        >>> optimizer_state(trainer.optimizer)
        (53, 1706152)
    """
    variables = list(optimizer.variables)
    return len(variables), int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables))
