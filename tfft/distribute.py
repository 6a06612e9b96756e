"""Choosing the `tf.distribute` strategy and the mixed-precision policy of a run."""

import dataclasses

import tensorflow as tf

from tfft import multi_worker
from tfft.errors import RecipeError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


def resolve_strategy(name="auto", devices=(), cluster=True):
    """Return the `tf.distribute.Strategy` a run builds its variables under.

    Args:
        name: `"auto"`: multi-worker when the environment names a cluster (`TF_CONFIG`,
            a Slurm job step of several tasks), else mirrored over the visible GPUs when
            there are several, one device on a single GPU, TensorFlow's default strategy
            otherwise. `"multi_worker"`: `MultiWorkerMirroredStrategy` over that cluster
            (`tfft.multi_worker`). `"mirrored"`: over `devices` (all GPUs if empty).
            `"one_device"`: on `devices[0]`. `"tpu"`: the TPU named by `devices[0]` (or
            the one `TPUClusterResolver` finds: a Cloud TPU VM's own, or `TPU_NAME`).
            `"default"`: no distribution.
        devices: device names, e.g. `["/gpu:0", "/gpu:1"]` or `["/cpu:0", "/cpu:1"]`.
        cluster: False to ignore the environment's cluster, as a process that trains
            nothing does (`tfft plan`, `export`): `"multi_worker"` is then the default strategy.

    Raises:
        RecipeError: an unknown name or device; `"multi_worker"` with no cluster named.

    Example:
        >>> strategy = resolve_strategy("mirrored", ["/cpu:0", "/cpu:1"])
        >>> strategy.num_replicas_in_sync
        2
    """
    devices = list(devices or [])
    if name not in STRATEGIES:
        raise RecipeError(f"Unknown strategy. Expected one of {list(STRATEGIES)}. Received: runtime.strategy={name!r}")
    if name == "multi_worker" and not cluster:
        return tf.distribute.get_strategy()
    if name in ("auto", "multi_worker") and cluster:
        # Before any device query: collective ops are configured when TensorFlow starts.
        task = multi_worker.cluster_from_environment()
        if task is not None:
            return multi_worker.multi_worker_strategy(task)
        if name == "multi_worker":
            raise RecipeError(
                "runtime.strategy='multi_worker' needs a cluster: set TF_CONFIG (as Kubeflow's TFJob and Vertex AI "
                "do) or start one task per worker under Slurm (srun); this process has neither")
    known = {_device_key(d.name): d.name for d in tf.config.list_logical_devices()}
    missing = [d for d in devices if _device_key(d) not in known]
    if missing:
        raise RecipeError(f"Unknown device(s) {missing}. This machine has: {sorted(known.values())}")
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "auto":
        if len(gpus) > 1:
            return _mirrored(gpus)
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy(gpus[0])
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored(devices or gpus or None)
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(devices[0] if devices else (gpus[0] if gpus else "/cpu:0"))
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=devices[0] if devices else "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def _mirrored(devices):
    """A `MirroredStrategy` over `devices` whose all-reduces cannot meet an earlier one's.

    Every `MirroredStrategy` of a process numbers its collective groups from the same key
    (`CollectiveKeys(group_key_start=1)`), and TensorFlow's collective runtime remembers
    each (group, instance) key it has run with the shapes it saw. The second mirrored run
    of a process (a search's next trial, a second run in a notebook) then reused the first
    one's keys with its own model's shapes and failed in its first all-reduce: "Shape
    mismatch in the collective instance 100" (TF 2.21, two logical CPU devices). Each
    strategy here starts its group keys in a range of its own, through the one setting
    `MirroredStrategy` reads for it: `_collective_key_base`, raised before each strategy as
    TensorFlow's own `strategy_combinations` does for the same reason.
    """
    tf.distribute.MirroredStrategy._collective_key_base += 100_000
    return tf.distribute.MirroredStrategy(devices)


def install_replica_seeds():
    """Give every replica its own random draws: fold the replica's id into the seed of
    Keras's random ops (Dropout's masks and every other op of the TensorFlow backend).

    Keras 3 draws from a `SeedGenerator`, whose state is one variable: under a strategy of
    several replicas every replica reads the same state, so each drew the same dropout mask
    for its own examples (measured with Keras 3.15, TF 2.21, two logical CPU devices). The
    backend turns every seed into an int32 pair in one function, `_cast_seed`; wrapped here,
    inside a replica context of more than one replica the pair's second half moves by the
    replica's id, and outside one (one device, cross-replica code) nothing changes. Draws
    stay a function of the seed state, so a run is as reproducible as before. Idempotent.
    """
    from keras.src.backend.tensorflow import random as backend_random

    if getattr(backend_random._cast_seed, "per_replica", False):
        return
    original = backend_random._cast_seed

    def cast_seed(seed):
        seed = original(seed)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return seed
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
        offset = tf.math.floormod(seed[1] + replica * 7919, tf.int32.max - 1)
        return tf.stack([seed[0], offset])

    cast_seed.per_replica = True
    backend_random._cast_seed = cast_seed


def _device_key(name):
    """`("CPU", 1)` for "/cpu:1", "/device:CPU:1" or "/job:localhost/.../device:CPU:1"."""
    try:
        spec = tf.DeviceSpec.from_string(name)
    except ValueError:
        return (name, None)
    return ((spec.device_type or "").upper(), spec.device_index or 0)


def mixed_precision_policy(setting="auto", strategy=None):
    """The Keras dtype policy name for `runtime.mixed_precision`, or None for float32.

    `"auto"` turns mixed precision on only where it pays: `mixed_bfloat16` under a
    `TPUStrategy` (TPUs compute in bfloat16 natively), `mixed_float16` when every GPU has
    tensor cores (compute capability 7.0 or higher: Volta and later), float32 otherwise,
    on CPU (where either is slower) and on older GPUs. The head's logits stay float32
    (`Trainer.build_head`) and float16 gets loss scaling (`Trainer.build`).

    Example:
        >>> mixed_precision_policy(False) is None
        True
    """
    if setting == "auto":
        if strategy is not None and isinstance(strategy, tf.distribute.TPUStrategy):
            return "mixed_bfloat16"
        gpus = tf.config.list_physical_devices("GPU")
        return "mixed_float16" if gpus and all(_has_tensor_cores(gpu) for gpu in gpus) else None
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


def _has_tensor_cores(gpu):
    capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
    return capability is not None and tuple(capability) >= (7, 0)


def batches_for_replicas(datasets, replicas, batch_size):
    """Rebatch so that no replica ever receives an empty slice of a batch.

    A distribution strategy splits each global batch across replicas. Measured with Keras
    3.15 / TF 2.21 under `MirroredStrategy`: a first batch that does not split evenly fails
    in the model's build (`AddN ... must have the same size`), and a short last batch that
    leaves a replica with zero examples fails in the convolution (`Incompatible shapes`).
    So the global batch size must be a multiple of the replica count; training drops its
    short last batch (reshuffled every epoch, nothing is lost for long); validation keeps
    every example by picking a batch size whose last batch still covers every replica.

    Args:
        datasets: a `tfft.data.Datasets`.
        replicas: `strategy.num_replicas_in_sync`.
        batch_size: the global batch size.

    Returns:
        The same `Datasets`, with `train` and `validation` rebatched when `replicas > 1`.
    """
    if replicas <= 1:
        return datasets
    if batch_size % replicas:
        raise RecipeError(
            f"data.batch_size={batch_size} does not split evenly over {replicas} replicas: use a "
            f"multiple of {replicas}, e.g. data.batch_size={batch_size - batch_size % replicas or replicas}."
        )
    if datasets.num_train < batch_size:
        raise RecipeError(
            f"data.batch_size={batch_size} is larger than the {datasets.num_train} training "
            "examples: lower it so that every replica gets a full batch."
        )
    size = validation_batch_size(datasets.num_validation, batch_size, replicas)
    epoch = datasets.train_epoch

    def train_epoch(index, skip=0):
        # The short last batch is dropped first, so `skip` counts the batches that remain.
        return epoch(index).rebatch(batch_size, drop_remainder=True).skip(skip)

    return dataclasses.replace(
        datasets,
        train_epoch=train_epoch,
        drop_remainder=True,
        validation=datasets.validation.rebatch(size),
    )


def validation_batch_size(count, batch_size, replicas):
    """The multiple of `replicas` closest to `batch_size` whose last batch holds at least
    `replicas` examples.

    Example:
        >>> validation_batch_size(9, 8, 2)   # 8 + 1 would leave a replica empty
        6
    """
    for delta in range(0, max(batch_size, count) + 1, replicas):
        for size in (batch_size - delta, batch_size + delta):
            if size >= replicas and (count % size == 0 or count % size >= replicas):
                return size
    return replicas * max(1, count // replicas)
