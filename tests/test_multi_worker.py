"""`runtime.strategy="multi_worker"`: the cluster read from the environment, and real runs of
two worker processes on 127.0.0.1 through `tfft run` (TF_CONFIG as Kubeflow sets it).

The two-process tests run with the slow ones: each starts three TensorFlow processes."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tfft import multi_worker
from tfft.distribute import resolve_strategy
from tfft.errors import RecipeError
from tfft.testing import tiny_resnet, write_image_folder, write_recipe

pytestmark = pytest.mark.filterwarnings("ignore")


def tf_config(hosts, kind, index):
    return {"TF_CONFIG": json.dumps({"cluster": hosts, "task": {"type": kind, "index": index}})}


def test_the_task_comes_from_tf_config_or_slurm():
    workers = {"worker": ["a:1", "b:2", "c:3"]}
    task = multi_worker.cluster_from_environment(tf_config(workers, "worker", 0))
    assert (task.kind, task.index, task.num_workers, task.is_chief) == ("worker", 0, 3, True)
    assert not multi_worker.cluster_from_environment(tf_config(workers, "worker", 2)).is_chief
    with_chief = dict(workers, chief=["d:4"], ps=["e:5"])
    assert multi_worker.cluster_from_environment(tf_config(with_chief, "chief", 0)).is_chief
    task = multi_worker.cluster_from_environment(tf_config(with_chief, "worker", 0))
    assert (task.num_workers, task.is_chief) == (4, False)  # a chief is named: worker 0 is not it
    slurm = multi_worker.cluster_from_environment({"SLURM_NTASKS": "2", "SLURM_PROCID": "1"})
    assert (slurm.kind, slurm.index, slurm.source, slurm.is_chief) == ("worker", 1, "Slurm", False)
    assert str(slurm) == "worker 1 of 2 (Slurm)"
    assert multi_worker.cluster_from_environment({}) is None
    assert multi_worker.cluster_from_environment(tf_config({"worker": ["a:1"]}, "worker", 0)) is None
    assert multi_worker.cluster_from_environment({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None


def test_a_bad_cluster_is_one_line_naming_it(monkeypatch):
    with pytest.raises(RecipeError, match="TF_CONFIG is not JSON"):
        multi_worker.cluster_from_environment({"TF_CONFIG": "{cluster: 1"})
    with pytest.raises(RecipeError, match="names task .*'index': 5.* not a chief or worker"):
        multi_worker.cluster_from_environment(tf_config({"worker": ["a:1", "b:2"]}, "worker", 5))
    for name in ("TF_CONFIG", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RecipeError, match="runtime.strategy='multi_worker' needs a cluster: set TF_CONFIG"):
        resolve_strategy("multi_worker")
    # A process that trains nothing (tfft plan, export) does not join the cluster.
    assert resolve_strategy("multi_worker", cluster=False).num_replicas_in_sync == 1


def test_a_lost_peer_is_named_with_the_checkpoint_kept(tmp_path):
    import tensorflow as tf

    from tfft.callbacks.checkpoints import CheckpointStore

    error = tf.errors.UnavailableError(None, None, (
        "Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are unhealthy "
        "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed. "
        "[[{{node CollectiveReduceV2}} /job:worker/replica:0/task:0/device:CPU:0]]"))
    (tmp_path / "step-000010").mkdir()
    task = multi_worker.Task("worker", 0, 2, "TF_CONFIG")
    assert multi_worker.peer_lost_message(error, task, CheckpointStore(tmp_path)) == (
        "worker 0 of 2 (TF_CONFIG): worker 1 of the cluster stopped sending heartbeats; the checkpoint at global "
        "step 10 is kept: start every worker again with the same command to resume")


# -- two worker processes ----------------------------------------------------------------------

RECIPE = '''
import os

import numpy as np

from tfft import Trainer

data = dict(path={images!r}, batch_size=6, augment={{}})
backbone = dict(name={backbone!r}, input_size=32)
head = dict(dropout=0.0)
schedule = dict(kind="two_phase", steps={steps}, head_steps={head_steps}, lr=0.01, finetune_lr=0.003, train_bn=False)
train = dict(checkpoint_every=5)


class Recorded(Trainer):
    """Keeps the final weights where the test reads them (a worker's own files are removed)."""

    def run(self):
        metrics = super().run()
        np.savez(os.environ["WEIGHTS_OUT"], *[v.numpy() for v in self.model.weights])
        return metrics


trainer = Recorded
'''


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def project(tmp_path):
    write_image_folder(tmp_path / "images", num_classes=3, per_class=12, size=32)  # 30 training images: 5 batches
    tiny_resnet(32).save(tmp_path / "backbone.keras")

    def recipe(steps, head_steps):
        return write_recipe(tmp_path / f"recipe_{steps}.py", RECIPE.format(
            images=str(tmp_path / "images"), backbone=str(tmp_path / "backbone.keras"), steps=steps,
            head_steps=head_steps))

    return tmp_path, recipe


def start(recipe, out, weights, env):
    environment = dict(os.environ, WEIGHTS_OUT=str(weights), TF_CPP_MIN_LOG_LEVEL="2", **env)
    log = open(f"{weights}.log", "a")
    process = subprocess.Popen([sys.executable, "-m", "tfft.cli", "run", recipe, "--out", str(out)], env=environment,
                               stdout=log, stderr=subprocess.STDOUT)
    process.log_path = log.name
    return process


def start_workers(recipe, out, weights):
    hosts = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    return [start(recipe, out, weights[i], tf_config(hosts, "worker", i)) for i in range(2)]


def finish(processes, timeout=240):
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"workers did not finish in {timeout} s: " + open(process.log_path).read()[-3000:])
    return [p.returncode for p in processes]


def weights(path):
    with np.load(path) as arrays:
        return [arrays[name] for name in arrays.files]


@pytest.mark.slow
def test_two_workers_train_the_weights_one_process_trains(project, tmp_path):
    tmp, recipe = project
    path = recipe(12, 6)
    out = tmp / "run"
    codes = finish(start_workers(path, out, [tmp / "w0.npz", tmp / "w1.npz"]))
    assert codes == [0, 0], open(tmp / "w1.npz.log").read()[-3000:]
    assert finish([start(path, tmp / "single", tmp / "single.npz", {"TF_CONFIG": ""})]) == [0]

    chief, other, single = weights(tmp / "w0.npz"), weights(tmp / "w1.npz"), weights(tmp / "single.npz")
    assert all(np.array_equal(a, b) for a, b in zip(chief, other))  # the workers agree exactly
    # The same global batches (each worker holds half of each), summed in another order:
    # equal to the last bit on some runs, within rounding on others.
    for a, b in zip(chief, single):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    # Two kinds of run, not one run read twice: only the workers joined a cluster.
    assert "worker 1 of 2 (TF_CONFIG)" in open(tmp / "w1.npz.log").read()
    assert "TF_CONFIG" not in open(tmp / "single.npz.log").read()
    # Only the chief wrote the run directory; the other worker removed its own.
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["steps_run"] for s in metrics["stages"]] == [6, 6]
    assert (out / "model.keras").is_file() and (out / "checkpoints").is_dir()
    log = open(tmp / "w1.npz.log").read()
    assert "worker 1 of 2 (TF_CONFIG): done; the chief wrote the run directory" in log
    scratch = log.split("this worker's own files go to ")[1].split(" and are removed")[0]
    assert not os.path.exists(scratch)


@pytest.mark.slow
def test_a_killed_worker_and_a_restart_of_both_finish_with_the_planned_steps(project, tmp_path):
    tmp, recipe = project
    path = recipe(60, 10)
    out = tmp / "run"
    files = [tmp / "w0.npz", tmp / "w1.npz"]
    chief, other = start_workers(path, out, files)
    folder, deadline = out / "checkpoints", time.monotonic() + 180
    while not (folder.is_dir() and any(name.startswith("step-") for name in os.listdir(folder))):
        assert time.monotonic() < deadline and chief.poll() is None, open(chief.log_path).read()[-3000:]
        time.sleep(0.5)
    other.send_signal(signal.SIGKILL)  # mid-stage: the first checkpoint is at step 5 of 60
    assert finish([other, chief], timeout=180)[1] == 75  # the chief notices its lost peer and stops
    # Which the chief sees first depends on where it was: a step waiting on the lost peer's
    # tensors gets its connection reset, an idle moment the end of its heartbeats.
    assert re.search(r"worker 1 of the cluster (stopped sending heartbeats|cannot be reached \(UnavailableError\)); "
                     r"the checkpoint at global step \d+ is kept", open(chief.log_path).read())
    assert not (out / "metrics.json").exists()

    assert finish(start_workers(path, out, files)) == [0, 0]
    log = open(chief.log_path).read()
    assert "resuming " in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["steps_run"] for s in metrics["stages"]] == [10, 50]
    assert all(np.array_equal(a, b) for a, b in zip(weights(files[0]), weights(files[1])))
