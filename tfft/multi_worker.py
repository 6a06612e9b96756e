"""Training on several hosts with `tf.distribute.MultiWorkerMirroredStrategy`.

Everything tfft does differently when a run spans several worker processes lives here:

- which cluster the environment describes (`TF_CONFIG`, as Kubeflow's TFJob and Vertex AI
  set it, or a Slurm allocation) and which task this process is (`cluster_from_environment`);
- the chief: the one worker that writes the run directory; the others train in a directory
  of their own that they remove when the run ends (`Task.is_chief`);
- a forward pass over the whole validation split on every worker (`predict`), since
  `model.predict` would shard it between the workers;
- the two places where Keras 3's `fit` fails under this strategy (`install_keras_fixes`).

The Keras fixes. Measured with Keras 3.15 / TensorFlow 2.21, two workers on 127.0.0.1, the
plain `model.fit` of a compiled model fails under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585, tensorflow/tensorflow#72388):

1. `TensorFlowTrainer._maybe_symbolic_build` reduces the first data batch with
   `strategy.reduce("MEAN", batch)` to learn its shapes. In multi-worker mode that reduction
   is a collective on eager `PerReplica` values and fails with `Attempt to convert a value
   (PerReplica:...) ... to a Tensor`. Under any strategy of several replicas, a mirrored
   one on one host included, it also fails on a text batch, whose boolean padding mask
   cannot be summed (`Value for attr 'T' of bool is not in the list of allowed values`,
   from `AddN`). Fixed by building on this worker's first replica's slice of the batch: only
   its shapes and dtypes matter.
2. `reduce_per_replica(logs, strategy, "auto")` reduces each scalar log with
   `strategy.reduce("MEAN", value, axis=0)`, which fails on a scalar. The values a step
   returns are metric results already reduced over every replica of every worker (the
   workers log the very same loss and accuracy): fixed by taking this worker's first
   local value, as Keras does under TPUStrategy.

The fixes are installed for every strategy of several replicas (`install_keras_fixes`);
the second acts in multi-worker mode only, the first wherever the batch is spread over
replicas, and both hand every other case to the Keras functions they wrap.
`tests/test_multi_worker.py` runs real workers, and `tests/test_distribute.py` a text run
on two mirrored devices: each fails when the fixes are removed.
"""

import dataclasses
import json
import os
import re
import weakref

import numpy as np
import tensorflow as tf

from tfft.errors import RecipeError

_installed = False
_strategy = None
_forwards = weakref.WeakKeyDictionary()  # model -> its traced inference pass (`predict`)


@dataclasses.dataclass(frozen=True)
class Task:
    """This process's place in a cluster.

    Args:
        kind: `"chief"` or `"worker"` (a TF_CONFIG task type; Slurm tasks are workers).
        index: the task's index among tasks of its kind.
        num_workers: how many processes train (chief included).
        source: where the cluster was read from, `"TF_CONFIG"` or `"Slurm"`.
        has_chief: the cluster names a `chief` task besides its workers.
    """

    kind: str
    index: int
    num_workers: int
    source: str
    has_chief: bool = False

    @property
    def is_chief(self):
        """The chief writes the run directory: task `chief`, or worker 0 when no chief is named."""
        return self.kind == "chief" or (self.kind == "worker" and self.index == 0 and not self.has_chief)

    def __str__(self):
        return f"{self.kind} {self.index} of {self.num_workers} ({self.source})"


def cluster_from_environment(environ=None):
    """The cluster this process belongs to, or None when the environment names none.

    `TF_CONFIG` (JSON with `cluster` and `task`) wins; else a Slurm job step with more than
    one task (`SLURM_STEP_NUM_TASKS` or `SLURM_NTASKS`). A TF_CONFIG cluster of one task is
    no cluster.

    Raises:
        RecipeError: TF_CONFIG is not JSON, or names no task of its cluster.

    Example:
        >>> cluster_from_environment({"TF_CONFIG": json.dumps({
        ...     "cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}})})
        Task(kind='worker', index=1, num_workers=2, source='TF_CONFIG', has_chief=False)
    """
    environ = os.environ if environ is None else environ
    if environ.get("TF_CONFIG"):
        try:
            config = json.loads(environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise RecipeError(f"TF_CONFIG is not JSON ({error.msg} at character {error.pos})") from None
        cluster = config.get("cluster") or {}
        training = {kind: list(hosts) for kind, hosts in cluster.items() if kind in ("chief", "worker")}
        count = sum(len(hosts) for hosts in training.values())
        if count <= 1:
            return None
        task = config.get("task") or {}
        kind, index = task.get("type"), task.get("index", 0)
        if kind not in training or not isinstance(index, int) or not 0 <= index < len(training[kind]):
            raise RecipeError(f"TF_CONFIG names task {task!r}, which is not a chief or worker of its cluster "
                              f"{ {k: len(v) for k, v in training.items()} }")
        return Task(kind, index, count, "TF_CONFIG", has_chief=bool(training.get("chief")))
    tasks = environ.get("SLURM_STEP_NUM_TASKS") or environ.get("SLURM_NTASKS")
    if tasks and int(tasks) > 1 and "SLURM_PROCID" in environ:
        return Task("worker", int(environ["SLURM_PROCID"]), int(tasks), "Slurm")
    return None


def cluster_resolver(task):
    """TensorFlow's cluster resolver for a `Task` read by `cluster_from_environment`."""
    if task.source == "TF_CONFIG":
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return tf.distribute.cluster_resolver.SlurmClusterResolver()


def multi_worker_strategy(task):
    """`MultiWorkerMirroredStrategy` over the cluster of `task`, with the Keras fixes installed.

    TensorFlow configures collective ops once, when the process first runs an op: the
    strategy must come first, and it is made once per process (the trials of a search and
    the final run share it).

    Raises:
        RecipeError: TensorFlow already ran an op in this process.
    """
    global _strategy
    if _strategy is not None:  # one per process: TensorFlow configures its collectives once
        return _strategy
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster_resolver(task))
    except RuntimeError as error:
        if "program startup" not in str(error):
            raise
        raise RecipeError(
            "runtime.strategy='multi_worker' must be set up before TensorFlow runs anything in the process: "
            "start one process per worker with `tfft run` (or build the Trainer before other TensorFlow work)"
        ) from None
    install_keras_fixes()
    _strategy = strategy
    return strategy


# What a collective raises when a peer stops (its heartbeats end) or cannot be reached.
PEER_LOST = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)


def peer_lost_message(error, task, store):
    """One line for a run that lost a peer: what happened and how to resume."""
    text = str(error)
    lost = sorted(set(re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", text)) - {(task.kind, str(task.index))})
    who = " and ".join(f"{kind} {index}" for kind, index in lost) or "another task"
    how = "stopped sending heartbeats" if "heartbeat" in text else f"cannot be reached ({type(error).__name__})"
    steps = store.steps() if store is not None else []
    kept = f"the checkpoint at global step {steps[0][0]} is kept" if steps else "no checkpoint was written yet"
    return f"{task}: {who} of the cluster {how}; {kept}: start every worker again with the same command to resume"


def in_multi_worker_mode(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def predict(model, dataset):
    """The model's outputs over `dataset` computed on this worker alone, in dataset order.

    Under a multi-worker strategy `model.predict` shards its input between the workers;
    the validation split is small next to training, so each worker scores all of it and
    every worker takes the same decisions (best checkpoint, collapse, early stop).
    """
    forward = _forwards.get(model)
    if forward is None:  # traced once per model, not at every validation
        forward = _forwards[model] = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return np.concatenate([np.asarray(forward(element[0])) for element in dataset], axis=0)


def install_keras_fixes():
    """Replace the two Keras functions that fail under a strategy of several replicas (see
    the module docstring); idempotent."""
    global _installed
    if _installed:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    keras_reduce = trainer.reduce_per_replica
    keras_build = trainer.TensorFlowTrainer._maybe_symbolic_build

    def first_local(value, strategy):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def reduce_per_replica(values, strategy, reduction):
        # keras-team/keras#20585: the scalar logs of a step are already global.
        if in_multi_worker_mode(strategy) and reduction in ("auto", "mean", "first"):
            return tree.map_structure(lambda v: first_local(v, strategy), values)
        return keras_reduce(values, strategy, reduction)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # tensorflow/tensorflow#72388, and a text batch's boolean mask that no strategy can
        # average: build on this worker's first replica's slice of the first batch.
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or strategy.num_replicas_in_sync == 1:
            return keras_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = tree.map_structure(lambda v: first_local(v, strategy), next(batches))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    _installed = True
