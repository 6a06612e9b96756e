"""Stages that train the head alone, fitted on the frozen backbone's outputs computed once.

While every backbone group is frozen, the backbone gives an example the same output at
every step: frozen BatchNorm runs on its moving statistics, frozen Dropout is off
(`tfft.freezing.apply_freezing`). When the example itself is the same in every epoch too
(no random crop or augmentation: `Datasets.in_order`), a stage that trains the head alone
can compute those outputs once and fit the head on them, without the backbone's forward
pass at each of its steps:

- the *prefix* is the classifier up to the head's input (the backbone, and after it any
  layers of the head that have no weights and no randomness, such as the pooling), run
  once over the training examples in listing order, as `fit` runs it (`training=True`);
- `fit` trains a model from that tensor to the logits whose layers are the classifier's
  own, on a stream that looks each batch's features up by the examples' indices
  (`Datasets.index_stream`): batch for batch the examples of the uncached stream;
- the validation split's features are computed once as well, and each validation scores the
  head on them. A frozen prefix computes with `training=True` what a validation pass computes
  with `training=False` (BatchNorm on its moving statistics, no active Dropout or other
  randomness: `why_not`), so the function traced for the training examples serves both: a
  second trace of the backbone cost a MobileNetV3 head stage a fifth of its time;
- the callbacks (validation, checkpoints, TensorBoard, the guards) keep the whole
  classifier (`OnWholeModel`): a checkpoint saves it, the guards stop its `fit`.

The features stay in memory, or above `MEMORY_LIMIT` in a file of the run directory's
`features/` named after what they depend on (backbone, its weights, where the head starts,
the training data): a resumed run, or a later stage with the same frozen backbone, reads
them again; the finished run removes them (`remove`).

Example:
    >>> why = feature_cache.why_not(trainer, stage)   # None: the stage is fitted on features
"""

import hashlib
import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from tfft import rundir
from tfft.freezing import HEAD, random_layers

# Features of at most this many bytes are kept in memory; more go to a file (memory-mapped).
MEMORY_LIMIT = 2 * 2**30
# Head layers that only reshape or pool, with no weights and no randomness: the prefix may
# end after them (so that 4D backbone outputs are kept pooled, a thousandth of their size).
_SHAPING = (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
            keras.layers.GlobalAveragePooling3D, keras.layers.GlobalMaxPooling1D,
            keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling3D, keras.layers.Flatten)


class FeatureCache:
    """The training examples' features at the head's input, and the head to fit on them.

    Args:
        head: a `keras.Model` from the features to the classifier's outputs, sharing its layers.
        features: `[num_train, ...]` array (float32) in listing order.
        labels: the matching labels.
        key: what the features depend on (see `cache_key`).
        dtype: the dtype the head receives (the compute dtype of the classifier).
    """

    def __init__(self, head, features, labels, key, dtype, prefix=None):
        self.head, self.features, self.labels, self.key, self.dtype = head, features, labels, key, dtype
        self.prefix = prefix
        self._runs = {}
        self._validation = None

    def run(self, spec):
        """The prefix as a function traced once for batches of `spec`, whatever their size
        (the last batch is short)."""
        key = repr(spec)
        if key not in self._runs:
            self._runs[key] = tf.function(lambda x: self.prefix(x, training=True), input_signature=[spec])
        return self._runs[key]

    def validation(self, datasets):
        """The validation split as batched `(features, labels)`, its features computed once
        (in the split's order) by the function that computed the training examples'."""
        if self._validation is None:
            run = self.run(datasets.validation.element_spec[0])
            features, labels = [], []
            for x, y in datasets.validation.prefetch(tf.data.AUTOTUNE):
                features.append(tf.cast(run(x), self.dtype))
                labels.append(y)
            # In batches of the split's own size (chosen so that every replica gets examples).
            self._validation = tf.data.Dataset.from_tensor_slices(
                (tf.concat(features, 0), tf.concat(labels, 0))).batch(len(labels[0]))
        return self._validation

    def stream(self, datasets, position=0):
        """The training stream of `datasets` from `position` on, each batch `(features, labels)`."""
        features, labels = self.features, self.labels
        shape, label_shape = features.shape[1:], labels.shape[1:]

        def look_up(indices):
            x, y = tf.numpy_function(lambda i: (features[i], labels[i]), [indices],
                                     (tf.float32, tf.as_dtype(labels.dtype)), stateful=False)
            x.set_shape((None, *shape))
            y.set_shape((None, *label_shape))
            return tf.cast(x, self.dtype), y

        return datasets.index_stream(position).map(look_up)


def split(model, backbone):
    """The tensor of `model`'s graph where the head starts (`backbone`'s output, or after the
    weightless pooling that follows it), or None when the graph has no such single tensor."""
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
    calls = [node for node in nodes if node.operation is backbone]
    if len(calls) != 1 or len(calls[0].output_tensors) != 1:
        return None
    tensor = calls[0].output_tensors[0]
    while True:
        users = [node for node in nodes if any(t is tensor for t in node.input_tensors)]
        if len(users) != 1 or not isinstance(users[0].operation, _SHAPING) or len(users[0].output_tensors) != 1:
            return tensor
        tensor = users[0].output_tensors[0]


def why_not(trainer, stage):
    """Why `stage` of `trainer` is fitted end to end, or None when it is fitted on features."""
    if not trainer.recipe.runtime.cache_features:
        return "runtime.cache_features is off"
    trained = set(stage.trained_groups(trainer.group_names))
    if trained != {HEAD}:
        return "it trains backbone groups"
    if trainer.datasets.in_order is None or trainer.datasets.shuffle is None:
        return "the training examples change from epoch to epoch (random crops or augmentation)"
    tensor = split(trainer.model, trainer.backbone.model)
    if tensor is None:
        return "the head does not start from one output of the backbone"
    try:
        head = keras.Model(tensor, trainer.model.outputs)
    except ValueError:
        return "the head reads more of the model than the backbone's output"
    heads = {id(layer) for layer in head.layers}
    before = [layer for layer in trainer.model.layers if id(layer) not in heads
              and not isinstance(layer, keras.layers.InputLayer)]
    moving = [sub for layer in before for sub in random_layers(layer)]
    if moving:
        return f"layer '{moving[0].name}' before the head acts at random in training"
    return None


def cache_key(trainer, tensor):
    """12 hex digits naming what the features depend on: the backbone, its weights, where
    the head starts, the input size and the training examples."""
    digest = hashlib.sha1()
    digest.update(repr((trainer.recipe.backbone.name, trainer.recipe.backbone.input_size, tensor.name,
                        tuple(tensor.shape[1:]), trainer.datasets.items.get("train"),
                        trainer.datasets.num_train)).encode("utf-8"))
    heads = {id(v) for layer in trainer.groups[-1].layers for v in layer.weights}
    for variable in trainer.model.weights:
        if id(variable) not in heads:
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value)).tobytes())
    return digest.hexdigest()[:12]


def build(trainer, directory=None, current=None, verbose=0):
    """Compute the features of `trainer`'s training examples at the head's input; return a
    `FeatureCache`. Call it only when `why_not` returns None, with the stage's freezing
    applied. Reuses `current` (a `FeatureCache`), or a file in `directory`, of the same key."""
    model = trainer.model
    tensor = split(model, trainer.backbone.model)
    key = cache_key(trainer, tensor)
    if current is not None and current.key == key:
        return current
    head = keras.Model(tensor, model.outputs, name="tfft_head")
    prefix = keras.Model(model.inputs, tensor, name="tfft_prefix")
    shape = _feature_shape(prefix, tensor, trainer.datasets)
    size = trainer.datasets.num_train * int(np.prod(shape)) * 4
    path = os.path.join(directory, rundir.FEATURES, key) if directory and size > MEMORY_LIMIT else None
    if path is not None and os.path.isfile(path + ".labels.npy"):
        cache = FeatureCache(head, np.load(path + ".npy", mmap_mode="r"), np.load(path + ".labels.npy"), key,
                             tensor.dtype, prefix)
        if len(cache.features) == trainer.datasets.num_train:
            return cache
    cache = FeatureCache(head, None, None, key, tensor.dtype, prefix)
    batches = trainer.datasets.in_order()
    cache.features, cache.labels = _compute(cache.run(batches.element_spec[0]), batches, trainer.datasets.num_train,
                                            shape, path)
    if verbose:
        where = f"in {path}.npy" if path else "in memory"
        print(f"computed the frozen backbone's outputs for the {len(cache.labels)} training examples once "
              f"({size / 1e6:.1f} MB {where}): the head trains on them", flush=True)
    return cache


def _feature_shape(prefix, tensor, datasets):
    """The shape of one example's features. An axis the graph leaves open (a text
    encoder's sequence axis) is the data's: the prefix's output on the examples' shapes."""
    if None not in tensor.shape[1:]:
        return tuple(int(d) for d in tensor.shape[1:])
    spec = datasets.in_order().element_spec[0]
    inputs = keras.tree.map_structure(lambda s: keras.KerasTensor(s.shape, s.dtype.name), spec)
    return tuple(int(d) for d in prefix.compute_output_spec(inputs).shape[1:])


def _compute(run, batches, count, shape, path):
    """Run the prefix's traced function `run` over `batches`; into memory, or into
    `path`.npy written whole before its labels file (the one a later run checks for)."""
    if path is None:
        features = np.empty((count, *shape), np.float32)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        features = np.lib.format.open_memmap(path + ".npy", mode="w+", dtype=np.float32, shape=(count, *shape))
    labels, filled = [], 0
    # Prefetched, so that the next batch decodes while the backbone runs on this one.
    for x, y in batches.prefetch(tf.data.AUTOTUNE):
        out = np.asarray(tf.cast(run(x), tf.float32))
        features[filled:filled + len(out)] = out
        filled += len(out)
        labels.append(np.asarray(y))
    labels = np.concatenate(labels)
    if path is not None:
        features.flush()
        np.save(path + ".partial.npy", labels)
        os.replace(path + ".partial.npy", path + ".labels.npy")
    return features, labels


def remove(directory):
    """Remove the feature files of the run in `directory` (its run has finished)."""
    shutil.rmtree(os.path.join(directory, rundir.FEATURES), ignore_errors=True)


class OnWholeModel(keras.callbacks.Callback):
    """Runs `callbacks` on `model` while `fit` trains a part of it (the head on features):
    they see the whole classifier and the very logs `fit` passes (a validation's `val_*`
    keys reach the epoch line and the history), and a stop they ask for stops the `fit`."""

    def __init__(self, callbacks, model):
        super().__init__()
        self.whole = model
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def _forward(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(*args)
        if self.whole.stop_training:
            self.model.stop_training = True

    def on_train_begin(self, logs=None):
        self.whole.stop_training = False
        self._forward("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._forward("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._forward("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._forward("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._forward("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._forward("on_train_batch_end", batch, logs)
