"""Choosing the `tf.distribute` strategy and the mixed-precision policy of a run."""

import tensorflow as tf

from tfft.errors import RecipeError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "tpu")


def resolve_strategy(name="auto", devices=()):
    """Return the `tf.distribute.Strategy` a run builds its variables under.

    Args:
        name: `"auto"`: mirrored over the visible GPUs when there are several, one device
            on a single GPU, TensorFlow's default strategy otherwise. `"mirrored"`: over
            `devices` (all GPUs if empty). `"one_device"`: on `devices[0]`. `"tpu"`: the
            TPU named by `devices[0]` (or the local one). `"default"`: no distribution.
        devices: device names, e.g. `["/gpu:0", "/gpu:1"]` or `["/cpu:0", "/cpu:1"]`.

    Example:
        >>> strategy = resolve_strategy("mirrored", ["/cpu:0", "/cpu:1"])
        >>> strategy.num_replicas_in_sync
        2
    """
    devices = list(devices or [])
    if name not in STRATEGIES:
        raise RecipeError(f"Unknown strategy. Expected one of {list(STRATEGIES)}. Received: runtime.strategy={name!r}")
    known = {d.name.lower() for d in tf.config.list_logical_devices()}
    missing = [d for d in devices if _full_name(d) not in known]
    if missing:
        raise RecipeError(f"Unknown device(s) {missing}. This machine has: {sorted(known)}")
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy(gpus)
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy(gpus[0])
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices or gpus or None)
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(devices[0] if devices else (gpus[0] if gpus else "/cpu:0"))
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=devices[0] if devices else "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def _full_name(device):
    device = device.lower().lstrip("/")
    if device.startswith("job:"):
        return "/" + device
    return "/job:localhost/replica:0/task:0/device:" + device.replace("device:", "")


def mixed_precision_policy(setting="auto"):
    """The Keras dtype policy name for `runtime.mixed_precision`, or None for float32.

    `"auto"` turns on `mixed_float16` only where it pays: on a GPU. On CPU it is slower.

    Example:
        >>> mixed_precision_policy(False) is None
        True
    """
    if setting == "auto":
        return "mixed_float16" if tf.config.list_logical_devices("GPU") else None
    if setting is True:
        return "mixed_float16"
    if setting is False or setting is None:
        return None
    if setting in ("mixed_float16", "mixed_bfloat16", "float32"):
        return None if setting == "float32" else setting
    raise RecipeError(
        "runtime.mixed_precision must be 'auto', True, False, 'mixed_float16' or 'mixed_bfloat16'. "
        f"Received: runtime.mixed_precision={setting!r}"
    )
