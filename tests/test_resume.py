"""Nothing lost: a run killed mid-stage resumes to bit-identical weights and optimizer state.

Real subprocesses: `tfft run` is killed by SIGKILL (or stopped by SIGTERM) at a chosen step
inside its second stage, between two checkpoints, then run again; with op determinism on,
its final weights and optimizer variables equal an uninterrupted run's bit for bit, and the
TensorBoard step axis has no gap and no repeat.
"""

import glob
import json
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest

from tfft.testing import write_image_folder, write_recipe, write_tone_folder

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A trainer that signals itself at global step TFFT_TEST_SIGNAL="SIGKILL:13" (once).
KILLER = """
import os, signal
import keras
import numpy as np
from tfft.testing import TinyTrainer
from tfft import Trainer


class Kill(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        wanted = os.environ.get("TFFT_TEST_SIGNAL")
        if wanted:
            name, step = wanted.split(":")
            if int(np.asarray(self.model.optimizer.iterations)) == int(step):
                os.environ.pop("TFFT_TEST_SIGNAL")
                os.kill(os.getpid(), getattr(signal, name))


class Killable({base}):
    def build_callbacks(self, stage, index):
        return [Kill()]


trainer = Killable
"""

IMAGES = KILLER.format(base="TinyTrainer") + """
backbone = dict(input_size=32)
data = dict(path={data!r}, batch_size=8, validation_split=0.25, augment=dict(flip=True, rotation=0.1))
schedule = dict(kind="custom", stages=[
    dict(name="head", steps=6, train="head", lr=0.01),
    dict(name="top", steps=9, train=["head", "top:2"], lr=0.003, shape="warmup_cosine", warmup=0.2),
    dict(name="all", steps=5, train="all", lr=0.001, train_bn=True),
], precise_bn=2)
train = dict(checkpoint_every=4, validate_every=5)
runtime = dict(deterministic=True, seed=3)
output = dict(log_every=1, checkpoints="last")  # the finished run's optimizer, to compare
"""

AUDIO = KILLER.format(base="Trainer") + """
backbone = dict(name="audio_cnn", weights=None)
data = dict(kind="audio", path={data!r}, batch_size=6, validation_split=0.25, sample_rate=8000, duration=0.5,
            n_fft=256, hop_length=80, n_mels=16)
schedule = dict(kind="custom", stages=[
    dict(name="head", steps=4, train="head", lr=0.01),
    dict(name="top", steps=8, train=["head", "top:2"], lr=0.003),
    dict(name="all", steps=4, train="all", lr=0.001),
])
train = dict(checkpoint_every=3, validate_every=4)
runtime = dict(deterministic=True)
output = dict(log_every=1, checkpoints="last")  # the finished run's optimizer, to compare
"""

TEXT = KILLER.format(base="Trainer") + """
backbone = dict(name="minilm-l6")
data = dict(kind="text", manifest={data!r}, batch_size=8, validation_split=0.25, sequence_length=16)
head = dict(dropout=0.1)
schedule = dict(kind="custom", stages=[
    dict(name="head", steps=3, train="head", lr=0.003),
    dict(name="top", steps=6, train=["head", "top:1"], lr=1e-4),
    dict(name="all", steps=3, train="all", lr=5e-5),
])
train = dict(checkpoint_every=2, validate_every=3)
runtime = dict(deterministic=True)
output = dict(log_every=1, checkpoints="last")  # the finished run's optimizer, to compare
"""


def _tfft(*args, signal_at=None, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    if signal_at:
        env["TFFT_TEST_SIGNAL"] = signal_at
    return subprocess.run([sys.executable, "-m", "tfft.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _final_state(run):
    """model.keras's weights and the newest checkpoint's optimizer variables."""
    import keras

    model = keras.models.load_model(os.path.join(run, "model.keras"), compile=False)
    newest = sorted(glob.glob(os.path.join(run, "checkpoints", "step-*")))[-1]
    with np.load(os.path.join(newest, "optimizer.npz")) as data:
        optimizer = {str(p): data[str(i)] for i, p in enumerate(data["paths"])}
    return [np.array(w) for w in model.weights], optimizer, os.path.basename(newest)


def _loss_steps(run):
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(os.path.join(run, "tensorboard", "train"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    return [e.step for e in acc.Tensors("loss")]


def _health(run):
    """Every group's distance from the pretrained weights and gradient norm, by step."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    figures = {}
    root = os.path.join(run, "tensorboard", "health")
    for group in sorted(os.listdir(root)):
        acc = ea.EventAccumulator(os.path.join(root, group), size_guidance={ea.TENSORS: 0})
        acc.Reload()
        for tag in ("health/distance_from_pretrained", "health/gradient_norm"):
            if tag in acc.Tags()["tensors"]:
                figures[group, tag] = [(e.step, e.tensor_proto.SerializeToString()) for e in acc.Tensors(tag)]
    return figures


def _same(a, b):
    weights_a, optimizer_a, newest_a = a
    weights_b, optimizer_b, newest_b = b
    assert newest_a == newest_b
    assert len(weights_a) == len(weights_b) and all(np.array_equal(x, y) for x, y in zip(weights_a, weights_b))
    assert optimizer_a.keys() == optimizer_b.keys()
    different = [k for k in optimizer_a if not np.array_equal(optimizer_a[k], optimizer_b[k])]
    assert not different, different


def _check_resume(tmp_path, recipe, total_steps, kill_at):
    whole = _tfft("run", recipe, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    reference = _final_state(str(tmp_path / "whole"))
    run = str(tmp_path / "killed")
    killed = _tfft("run", recipe, "--out", run, signal_at=f"SIGKILL:{kill_at}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not os.path.exists(os.path.join(run, "metrics.json"))
    resumed = _tfft("run", recipe, "--out", run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    with open(os.path.join(run, "resumed.txt"), "w") as f:  # for the test to read
        f.write(resumed.stdout)
    _same(_final_state(run), reference)
    assert _loss_steps(run) == list(range(1, total_steps + 1)) == _loss_steps(str(tmp_path / "whole"))
    # Measured from the pretrained weights, on the same steps, as if never interrupted.
    assert _health(run) == _health(str(tmp_path / "whole"))
    return run


def test_images_killed_mid_stage_resume_bit_identical(tmp_path):
    data = tmp_path / "images"
    write_image_folder(data, num_classes=3, per_class=12, size=32)
    recipe = write_recipe(tmp_path / "images.py", IMAGES.format(data=str(data)))
    # Stage 2 runs steps 7-15; checkpoints at steps 4, 5 (validation), 9, 10, 13, ...: the
    # kill comes at a random one of its other steps, between two checkpoints.
    kill_at = random.choice([7, 8, 12, 14])
    print(f"killed at step {kill_at}")  # shown when the test fails
    run = _check_resume(tmp_path, recipe, 20, kill_at=kill_at)
    metrics = json.loads(open(os.path.join(run, "metrics.json")).read())
    assert [s["steps_run"] for s in metrics["stages"]] == [6, 9, 5]


def test_images_killed_between_a_stage_end_checkpoint_and_its_validation(tmp_path):
    """Step 15 ends stage 2 and is due both a `checkpoint_every` checkpoint (at the batch's
    end) and the stage's last validation (at the epoch's end): killed between the two, the
    resumed run validates step 15 before stage 3, so `best/`, the restored best weights and
    TensorBoard are those of an uninterrupted run."""
    data = tmp_path / "images"
    write_image_folder(data, num_classes=3, per_class=12, size=32)
    recipe = write_recipe(tmp_path / "images.py", IMAGES.format(data=str(data)))
    run = _check_resume(tmp_path, recipe, 20, kill_at=15)
    with open(os.path.join(run, "resumed.txt")) as f:
        assert "stage 2/3 'top': resuming after its last step (9): the stage ends here" in f.read()


def test_sigterm_writes_a_checkpoint_prints_one_line_and_resumes(tmp_path):
    data = tmp_path / "images"
    write_image_folder(data, num_classes=3, per_class=12, size=32)
    recipe = write_recipe(tmp_path / "images.py", IMAGES.format(data=str(data)))
    whole = _tfft("run", recipe, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    run = str(tmp_path / "stopped")
    stopped = _tfft("run", recipe, "--out", run, signal_at="SIGTERM:8")
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    # The signal arrives after step 8; step 9 finishes, then the checkpoint is written.
    assert lines[-1].startswith("SIGTERM: stopped at stage 2/3 'top', step 3 of 9 (global step 9")
    assert lines[-1].endswith(f"resume with: tfft resume {run}")
    assert os.path.isdir(os.path.join(run, "checkpoints", "step-000009"))
    assert not glob.glob(os.path.join(run, "checkpoints", ".*tmp-*"))
    resumed = _tfft("resume", run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same(_final_state(run), _final_state(str(tmp_path / "whole")))
    assert _loss_steps(run) == list(range(1, 21))


def test_audio_killed_mid_stage_resume_bit_identical(tmp_path):
    data = tmp_path / "tones"
    write_tone_folder(data, per_class=8)
    recipe = write_recipe(tmp_path / "audio.py", AUDIO.format(data=str(data)))
    _check_resume(tmp_path, recipe, 16, kill_at=7)


def test_text_killed_mid_stage_resume_bit_identical(tmp_path):
    pytest.importorskip("keras_hub")
    rows = ["text,label"] + [f"please refund order {i} it was broken,refund" for i in range(12)] + \
        [f"my password reset link {i} fails,account" for i in range(12)]
    (tmp_path / "tickets.csv").write_text("\n".join(rows) + "\n")
    recipe = write_recipe(tmp_path / "text.py", TEXT.format(data=str(tmp_path / "tickets.csv")))
    _check_resume(tmp_path, recipe, 12, kill_at=7)


def test_images_with_lora_killed_mid_stage_resume_bit_identical(tmp_path):
    """The second stage trains its groups through LoRA adapters, the third every group in full."""
    data = tmp_path / "images"
    write_image_folder(data, num_classes=3, per_class=12, size=32)
    lora = IMAGES.replace('shape="warmup_cosine", warmup=0.2)', 'shape="warmup_cosine", warmup=0.2, lora=dict(rank=2))')
    assert lora != IMAGES
    recipe = write_recipe(tmp_path / "images.py", lora.format(data=str(data)))
    # Killed at step 12, in the LoRA stage (steps 7-15), between two checkpoints.
    run = _check_resume(tmp_path, recipe, 20, kill_at=12)
    with open(os.path.join(run, "resumed.txt")) as f:
        assert "(stage 2 'top'" in f.read()  # resumed mid-way through the LoRA stage
    newest = sorted(glob.glob(os.path.join(run, "checkpoints", "step-*")))[-1]
    assert os.path.isfile(os.path.join(newest, "adapters.npz"))
