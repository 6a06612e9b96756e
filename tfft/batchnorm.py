"""Precise BatchNorm statistics: recompute moving averages with the final weights.

When BatchNorm layers train, their moving mean and variance are exponential averages
(momentum 0.99 in Keras applications) of batch statistics taken while the weights were
still changing. After a short fine-tuning stage they mostly reflect early weights, so the
model scores far worse in inference mode than in training mode. Recomputing the statistics
as a plain average over a few training batches with the final weights fixes that
("precise BN", Wu & Johnson, "Rethinking Batch in BatchNorm", 2021; pycls).

Measured on the synthetic MRI set with a ResNet50 trained from random initialisation
(64 px, 14 epochs): validation accuracy 0.43 before, 0.92 after recomputing over 15
batches.
"""

import keras


def batchnorm_layers(model):
    """Every BatchNormalization layer inside `model`, nested ones included."""
    # `_flatten_layers` is how Keras itself walks nested models (`Model.layers` is one level).
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def untrained_statistics(model):
    """Whether `model` has BatchNorm layers and every one holds its initial statistics
    (moving mean 0, moving variance 1): weights that were never trained, whatever the file.

    Example:
        >>> untrained_statistics(keras.applications.ResNet50(weights=None))
        True
    """
    layers = batchnorm_layers(model)
    if not layers:
        return False
    for layer in layers:
        mean, variance = keras.ops.convert_to_numpy(layer.moving_mean), keras.ops.convert_to_numpy(layer.moving_variance)
        if mean.any() or (variance != 1.0).any():
            return False
    return True


def recompute_batchnorm_statistics(model, dataset, batches=20):
    """Replace the moving statistics of every *trainable* BatchNorm layer by their average
    over `batches` batches of `dataset`, computed with the current weights.

    Frozen BatchNorm layers run in inference mode and keep their statistics. Weights other
    than the statistics do not change.

    Args:
        model: the Keras model.
        dataset: batched `(x, y)` training data.
        batches: how many batches to average over.

    Returns:
        `(layers, batches)`: how many BatchNorm layers were recomputed over how many batches
        (fewer than asked when the dataset is shorter).

    Example:
        >>> recompute_batchnorm_statistics(model, datasets.train, batches=20)
        (53, 15)
    """
    layers = [layer for layer in batchnorm_layers(model) if layer.trainable]
    if not layers or batches < 1:
        return 0, 0
    momenta = [layer.momentum for layer in layers]
    step = -1
    try:
        for step, element in enumerate(dataset.take(batches)):
            # With momentum k/(k+1) the k-th update makes the moving value the plain mean
            # of the k+1 batch statistics seen so far. Eager calls read `momentum` anew.
            for layer in layers:
                layer.momentum = step / (step + 1.0)
            model(element[0], training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers), step + 1
