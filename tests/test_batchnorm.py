import keras
import numpy as np
import tensorflow as tf

from tfft.batchnorm import batchnorm_layers, recompute_batchnorm_statistics


def _model():
    inputs = keras.Input((6, 6, 3))
    conv = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(conv)
    x = keras.layers.Conv2D(4, 1, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="frozen_bn")(x)
    return keras.Model(inputs, x), keras.Model(inputs, conv)


def test_statistics_become_the_plain_average_over_batches():
    model, features = _model()
    model.get_layer("frozen_bn").trainable = False
    frozen_before = [v.numpy().copy() for v in model.get_layer("frozen_bn").weights]
    rng = np.random.default_rng(0)
    images = rng.normal(3.0, 2.0, size=(24, 6, 6, 3)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(24, "int32"))).batch(8)

    assert recompute_batchnorm_statistics(model, dataset, batches=3) == (1, 3)

    outputs = [features(images[i : i + 8]).numpy().reshape(-1, 4) for i in range(0, 24, 8)]
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([o.mean(0) for o in outputs], 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([o.var(0) for o in outputs], 0), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.99
    for before, after in zip(frozen_before, model.get_layer("frozen_bn").weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_nested_layers_are_found_and_nothing_else_moves():
    model, _ = _model()
    outer = keras.Sequential([keras.Input((6, 6, 3)), model, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    assert sorted(layer.name for layer in batchnorm_layers(outer)) == ["bn", "frozen_bn"]
    kernels = [v.numpy().copy() for v in outer.weights if "kernel" in v.path or "gamma" in v.path]
    dataset = tf.data.Dataset.from_tensor_slices((np.ones((8, 6, 6, 3), "float32"), np.zeros(8, "int32"))).batch(4)
    assert recompute_batchnorm_statistics(outer, dataset, batches=5) == (2, 2)
    for before, after in zip(kernels, [v for v in outer.weights if "kernel" in v.path or "gamma" in v.path]):
        np.testing.assert_array_equal(before, after.numpy())
