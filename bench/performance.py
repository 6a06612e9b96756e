"""What tfft costs against plain Keras, measured side by side in one run.

Every figure is a ratio of two medians measured in this one process (the machine is shared
and noisy; no absolute time means much on it); P1, P3 and P5 are the medians of `--repeats`
interleaved rounds, each round measuring both sides of each ratio:

- P1: tfft's training step / plain `keras.Model.fit`'s, same model (MobileNetV3Small at
  96 px, random weights, every layer training) and the same batches: median seconds per
  step of plain fit over tfft's (goal >= 0.98: tfft's callbacks, validation bookkeeping
  and progress cost at most 2%).
- P2: plain Keras's frozen fit over E epochs / tfft's head stage of E epochs on features
  computed once (`tfft.feature_cache`; the feature pass, compiling and the stage's
  validation included), wall time, the same 3,000 JPEGs at 160 px, each side decoding them
  in its first pass (goal >= 0.8 E).
- P3: backbone inference on a batch / tfft's frozen-backbone training step on it (goal
  >= 0.8: a head stage costs little more than running the frozen backbone).
  `P3_plain` is the same ratio for plain Keras's `fit` with the base frozen: the part of
  a miss that is Keras's own.
- P4: tfft's image pipeline (JPEG decode, resize, the default augmentation) in
  examples/s over what the training step consumes (goal >= 1.5), and tfft's pipeline
  without augmentation over `keras.utils.image_dataset_from_directory` on the same files
  (goal >= 1.0).
  `P4_audio`: the audio pipeline with its default augmentation (SpecAugment masks,
  gain, shift) on cached clips over what `audio_cnn`'s training step consumes; the raw
  figures give each part: the first pass (decoding, resampling 44.1 to 16 kHz), cached
  passes without and with augmentation.
- P5: the first step of a stage after a transition (new freezing, recompiled, retraced)
  over the first step of a run that starts with that stage (its first trace), each less
  a median step (goal <= 1.0: a transition costs no more than starting afresh).
- P6: tokenization in tf.data (tfft's text pipeline, all-MiniLM-L6-v2's WordPiece, 64
  tokens) in texts/s over what MiniLM's training step consumes (goal >= 3).
- scaling: examples/s of tfft's training step on 2 logical CPU devices (mirrored) over 1,
  and the median all-reduce of the model's gradients (one float32 vector of its trainable
  size) over the step: what the all-reduce costs; and examples/s of two `tfft run` worker
  processes on 127.0.0.1 (TF_CONFIG, MultiWorkerMirroredStrategy, the same global batch)
  over one process. On two cores two devices or two workers share the same cores, so the
  ratios are not a speed-up to expect from two GPUs or two hosts.

    python bench/performance.py            # about 14 minutes on 2 shared cores
    python bench/performance.py --quick    # a smoke run of every measurement

P1, P3 and P5 measure stages fitted end to end (`runtime.cache_features=False`), P2 the
cached one. The last line of output is one JSON object with keys P1 ... P6 (numbers, null
where not measured), P2_epochs and the raw medians.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices for the mirrored measurement: configured before TensorFlow starts.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import tfft  # noqa: E402
from tfft.modalities.image.pipeline import image_datasets  # noqa: E402

IMAGE_SIZE = 96
# P2 on 3,000 images at 160 px: an epoch long enough that the backbone's work, not the fixed
# costs of a stage (traces, the validation), is most of a frozen fit.
P2_SIZE = 160
P2_PER_CLASS = 750
BATCH = 32


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Clock(keras.callbacks.Callback):
    """`perf_counter` at the start of each `fit` and at the end of each batch."""

    def __init__(self):
        super().__init__()
        self.fits = []

    def on_train_begin(self, logs=None):
        self.fits.append([time.perf_counter()])

    def on_train_batch_end(self, batch, logs=None):
        self.fits[-1].append(time.perf_counter())

    def first(self, fit=0):
        """Seconds from the fit's start to its first step's end."""
        return self.fits[fit][1] - self.fits[fit][0]

    def steps(self, *fits):
        """Seconds of every step after the first of the given fits."""
        return [b - a for f in fits for a, b in zip(self.fits[f][1:], self.fits[f][2:])]


def write_jpegs(directory, classes=4, per_class=96, size=128, seed=0):
    """Smooth random colour fields as JPEG files, one folder per class (speed only)."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(os.path.join(directory, f"class{c}"), exist_ok=True)
        for i in range(per_class):
            small = rng.uniform(0, 255, (8, 8, 3)).astype("float32")
            image = tf.image.resize(small[None], (size, size), "bicubic")[0]
            data = tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), quality=90)
            tf.io.write_file(os.path.join(directory, f"class{c}", f"{i:04d}.jpg"), data)
    return directory


class Timed(tfft.Trainer):
    """A Trainer whose every stage fit is clocked, and every stage's wall time (from its
    freezing and compile to its end) kept in `stage_seconds`."""

    clock = None

    def build_callbacks(self, stage, index):
        return [self.clock]

    def _run_stage(self, index, stage, resumed=None):
        start = time.perf_counter()
        entry = super()._run_stage(index, stage, resumed)
        self.stage_seconds = getattr(self, "stage_seconds", []) + [time.perf_counter() - start]
        return entry


def tfft_run(images, workdir, steps, extra=(), head=True, everything=True, cached=False, size=IMAGE_SIZE):
    """Two stages of `steps`: the head on the frozen backbone (`head`), then every layer
    (`everything`); end to end unless `cached`."""
    stages = [dict(name="head", steps=steps, train="head", lr=1e-3)] if head else []
    stages += [dict(name="all", steps=steps, train="all", lr=1e-4)] if everything else []
    recipe = tfft.Recipe().with_overrides([
        f"data.path={images!r}", f"data.batch_size={BATCH}", "data.augment={}", "data.validation_split=0.1",
        "backbone.name='MobileNetV3Small'", "backbone.weights=None", f"backbone.input_size={size}",
        "schedule.kind='custom'", f"schedule.stages={stages!r}", "schedule.train_bn=False",
        f"train.validate_every={steps}", f"runtime.cache_features={cached}", *extra])
    trainer = Timed(recipe, out_dir=os.path.join(workdir, "run"), overwrite=True, verbose=0, save=False)
    trainer.clock = Clock()
    trainer.run()
    return trainer


def plain_fit(trainer, steps, frozen=False, data=None):
    """The guide's way: the same architecture compiled once, `fit` on tfft's batches
    (`frozen`: the base frozen, the head alone training; `data`: other `Datasets` than the
    trainer's, for a fit that decodes its own images)."""
    keras.utils.set_random_seed(0)
    size = trainer.recipe.backbone.input_size
    base = keras.applications.MobileNetV3Small(input_shape=(size, size, 3), weights=None, include_top=False)
    for layer in base.layers:  # as tfft's stage trains it: BatchNorm frozen (schedule.train_bn=False)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    base.trainable = not frozen
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    model = keras.Model(inputs, keras.layers.Dense(trainer.num_classes)(keras.layers.Dropout(0.2)(x)))
    model.compile(keras.optimizers.AdamW(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    clock = Clock()
    stream = (data or trainer.datasets).train_stream(0)
    model.fit(stream, steps_per_epoch=steps, epochs=1, callbacks=[clock], verbose=0)
    return clock


def cached_stage(images, workdir, epochs, rounds):
    """P2: wall seconds of plain Keras's frozen fit over `epochs` epochs and of tfft's head
    stage of as many steps on cached features, medians of interleaved rounds, at
    `P2_SIZE` px: a per-epoch cost that is the backbone's rather than the trace's."""
    tfft_times, plain_times = [], []
    steps = epochs * -(-sum(len(files) for _, _, files in os.walk(images)) * 9 // 10 // BATCH)
    for index in range(rounds):
        trainer = tfft_run(images, os.path.join(workdir, f"cached{index}"), steps, everything=False, cached=True,
                           size=P2_SIZE)
        assert trainer._history[0]["steps_run"] == steps and trainer.plan()[0].features == "cached"
        tfft_times.append(trainer.stage_seconds[0])
        # Batches of the same builder with a cache of their own: the plain fit decodes the
        # images in its first epoch, as tfft's feature pass did.
        clock = plain_fit(trainer, steps, frozen=True, data=trainer.build_datasets())
        plain_times.append(clock.fits[0][-1] - clock.fits[0][0])
        log(f"round {index + 1}: cached stage {tfft_times[-1]:.2f} s, plain frozen fit {plain_times[-1]:.2f} s "
            f"over {epochs} epochs ({steps} steps)")
    return statistics.median(tfft_times), statistics.median(plain_times), steps / trainer.steps_per_epoch


def inference_seconds(trainer, repeats):
    batch = next(iter(trainer.datasets.train_stream(0)))[0]
    backbone = trainer.backbone.model
    forward = tf.function(lambda x: backbone(x, training=False))
    forward(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(forward(batch))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pipeline_rate(dataset, batches, skip=2):
    """Examples per second of a batched dataset, after `skip` warm-up batches."""
    iterator = iter(dataset)
    for _ in range(skip):
        next(iterator)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        count += int(tf.shape(tf.nest.flatten(next(iterator)[0])[0])[0])
    return count / (time.perf_counter() - start)


def image_pipelines(images, batches):
    augmented = image_datasets(images, image_size=IMAGE_SIZE, batch_size=BATCH, cache=False, verify=False,
                               augment=True)  # the default: DEFAULT_AUGMENT
    plain = image_datasets(images, image_size=IMAGE_SIZE, batch_size=BATCH, cache=False, verify=False, augment={})
    keras_ds = keras.utils.image_dataset_from_directory(images, image_size=(IMAGE_SIZE, IMAGE_SIZE),
                                                        batch_size=BATCH, seed=0, verbose=False)
    keras_ds = keras_ds.repeat().prefetch(tf.data.AUTOTUNE)
    rounds = [(pipeline_rate(augmented.train_stream(0), batches), pipeline_rate(plain.train_stream(0), batches),
               pipeline_rate(keras_ds, batches)) for _ in range(3)]  # alternating, medians
    return tuple(statistics.median(r[i] for r in rounds) for i in range(3))


def text_rates(workdir, steps, batches):
    from tfft.modalities.text.demo import make_support_tickets

    folder = make_support_tickets(os.path.join(workdir, "tickets"), per_class=48, test_per_class=8)
    stages = [dict(name="all", steps=steps, train="all", lr=5e-5)]
    recipe = tfft.Recipe().with_overrides([
        "data.kind='text'", f"data.manifest={os.path.join(folder, 'tickets.csv')!r}", "data.batch_size=16",
        "data.sequence_length=64", "data.cache=False", "backbone.name='minilm-l6'", "schedule.kind='custom'",
        f"schedule.stages={stages!r}", f"train.validate_every={steps}"])
    trainer = Timed(recipe, out_dir=os.path.join(workdir, "text"), overwrite=True, verbose=0, save=False)
    trainer.clock = Clock()
    trainer.run()
    train_rate = 16 / statistics.median(trainer.clock.steps(0))
    return pipeline_rate(trainer.datasets.train_stream(0), batches), train_rate


def audio_rates(workdir, steps, batches):
    """The audio pipeline's parts and what `audio_cnn` consumes, on one-second 44.1 kHz
    clips resampled to 16 kHz: the first pass (decoding and resampling, then cached), a
    cached pass without augmentation (crop and log-mel features) and one with the
    default augmentation."""
    from tfft.modalities.audio.pipeline import audio_datasets
    from tfft.testing import write_tone_folder

    clips = os.path.join(workdir, "clips")
    write_tone_folder(clips, frequencies=(300.0, 700.0, 1500.0, 3100.0), per_class=40, sample_rate=44100,
                      duration=1.0)
    per_epoch = 160 // BATCH

    def rates(augment):
        data = audio_datasets(clips, batch_size=BATCH, augment=augment, verify=False, validation_split=0.0001)
        stream = data.train_stream(0)
        iterator = iter(stream)
        start = time.perf_counter()
        for _ in range(per_epoch):  # the first epoch fills the cache
            next(iterator)
        first = per_epoch * BATCH / (time.perf_counter() - start)
        return first, pipeline_rate(stream.skip(per_epoch), batches)

    decode, cached = rates({})
    _, augmented = rates(None)
    stages = [dict(name="all", steps=steps, train="all", lr=3e-3)]
    recipe = tfft.Recipe().with_overrides([
        "data.kind='audio'", f"data.path={clips!r}", f"data.batch_size={BATCH}", "backbone.name='audio_cnn'",
        "backbone.weights=None", "schedule.kind='custom'", f"schedule.stages={stages!r}",
        f"train.validate_every={steps}"])
    trainer = Timed(recipe, out_dir=os.path.join(workdir, "audio"), overwrite=True, verbose=0, save=False)
    trainer.clock = Clock()
    trainer.run()
    return decode, cached, augmented, BATCH / statistics.median(trainer.clock.steps(0))


def mirrored_rate(images, workdir, steps):
    trainer = tfft_run(images, os.path.join(workdir, "mirrored"), steps,
                       ["runtime.strategy='mirrored'", "runtime.devices=['/cpu:0', '/cpu:1']"])
    step = statistics.median(trainer.clock.steps(1))
    strategy = trainer.strategy
    size = sum(int(np.prod(v.shape)) for v in trainer.model.trainable_variables)

    @tf.function
    def all_reduce():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("SUM", tf.ones([size])))

    all_reduce()
    times = []
    for _ in range(10):
        start = time.perf_counter()
        strategy.experimental_local_results(all_reduce())[0].numpy()
        times.append(time.perf_counter() - start)
    return BATCH / step, statistics.median(times), step


WORKER_RECIPE = """
import json
import os
import statistics
import time

import keras

from tfft import Trainer

data = dict(path={images!r}, batch_size={batch}, augment={{}}, validation_split=0.1)
backbone = dict(name="MobileNetV3Small", weights=None, input_size={size})
schedule = dict(kind="custom", stages=[dict(name="all", steps={steps}, train="all", lr=1e-4)], train_bn=False)
train = dict(validate_every={steps})
runtime = dict(cache_features=False)


class Clocked(Trainer):
    \"\"\"Writes the median seconds of its training steps (after the first) to $STEP_SECONDS.\"\"\"

    def build_callbacks(self, stage, index):
        ends = self.ends = []

        class Clock(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                ends.append(time.perf_counter())

        return [Clock()]

    def run(self):
        metrics = super().run()
        steps = [b - a for a, b in zip(self.ends[1:], self.ends[2:])]
        with open(os.environ["STEP_SECONDS"], "w") as file:
            json.dump(statistics.median(steps), file)
        return metrics


trainer = Clocked
"""


def worker_rates(images, workdir, steps):
    """Examples/s of one `tfft run` process and of two worker processes on 127.0.0.1
    (TF_CONFIG, MultiWorkerMirroredStrategy; each worker holds half of every global batch)."""
    import socket
    import subprocess

    recipe = os.path.join(workdir, "workers.py")
    with open(recipe, "w") as file:
        file.write(WORKER_RECIPE.format(images=images, batch=BATCH, size=IMAGE_SIZE, steps=steps))
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()

    def launch(name, tf_config):
        seconds = os.path.join(workdir, f"{name}.json")
        env = dict(os.environ, STEP_SECONDS=seconds, TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL="2")
        process = subprocess.Popen([sys.executable, "-m", "tfft.cli", "run", recipe, "--out",
                                    os.path.join(workdir, name)], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        return process, seconds

    def wait(launched):
        for process, _ in launched:
            if process.wait(timeout=900) != 0:
                raise RuntimeError(f"a worker run failed (exit {process.returncode})")
        with open(launched[0][1]) as file:
            return BATCH / json.load(file)

    one = wait([launch("one_process", "")])
    cluster = {"cluster": {"worker": hosts}}
    two = wait([launch(f"worker{i}", json.dumps(dict(cluster, task={"type": "worker", "index": i})))
                for i in range(2)])
    return one, two


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps of each measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of P1, P3 and P5 (median)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    steps, batches, repeats = (6, 4, 5) if args.quick else (40, 30, 30)
    workdir = tempfile.mkdtemp(prefix="tfft-performance-")
    images = write_jpegs(os.path.join(workdir, "images"), per_class=24 if args.quick else 96)
    results = {}

    log(f"P1, P3, P5: tfft's two stages and plain fit, MobileNetV3Small at 96 px, {args.repeats} rounds")
    rounds = []
    for index in range(args.repeats):  # interleaved, so that a change of load hits both sides
        trainer = tfft_run(images, os.path.join(workdir, f"round{index}"), steps)
        clock = trainer.clock
        fresh = tfft_run(images, os.path.join(workdir, f"fresh{index}"), steps, head=False).clock
        head_step, all_step = statistics.median(clock.steps(0)), statistics.median(clock.steps(1))
        plain_step = statistics.median(plain_fit(trainer, steps).steps(0))
        plain_frozen = statistics.median(plain_fit(trainer, steps, frozen=True).steps(0))
        inference = inference_seconds(trainer, repeats)
        rounds.append(dict(
            P1=plain_step / all_step, P3=inference / head_step, P3_plain=inference / plain_frozen,
            P5=(clock.first(1) - all_step) / (fresh.first(0) - statistics.median(fresh.steps(0))),
            tfft_step=all_step, plain_step=plain_step, frozen_step=head_step, plain_frozen_step=plain_frozen,
            inference=inference, first_trace=fresh.first(0), transition=clock.first(1)))
        log(f"round {index + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in rounds[-1].items() if k.startswith("P")))
    middle = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    results.update({key: middle[key] for key in ("P1", "P3", "P3_plain", "P5")})
    results["raw"] = {key: value for key, value in middle.items() if not key.startswith("P")}
    results["rounds"] = [{k: round(v, 3) for k, v in r.items() if k.startswith("P")} for r in rounds]
    all_step = middle["tfft_step"]

    epochs = 2 if args.quick else 5
    log(f"P2: a head stage of {epochs} epochs on cached features against plain Keras's frozen fit, {P2_SIZE} px")
    larger = write_jpegs(os.path.join(workdir, "larger"), per_class=24 if args.quick else P2_PER_CLASS, size=P2_SIZE)
    cached_seconds, plain_seconds, epochs_run = cached_stage(larger, workdir, epochs, args.repeats)
    results["P2"] = plain_seconds / cached_seconds
    results["P2_epochs"] = epochs_run
    results["raw"].update(cached_stage=cached_seconds, plain_frozen_fit=plain_seconds)

    log("P4: image pipelines on the same JPEG files")
    augmented, unaugmented, keras_rate = image_pipelines(images, batches)
    consumed = BATCH / all_step
    results["P4"] = augmented / consumed
    results["P4_vs_keras"] = unaugmented / keras_rate
    results["raw"].update(pipeline_augmented=augmented, pipeline_plain=unaugmented, keras_pipeline=keras_rate,
                          training_consumes=consumed)

    log("P6: tokenization and MiniLM training")
    tokens, minilm = text_rates(workdir, steps // 2, batches)
    results["P6"] = tokens / minilm
    results["raw"].update(tokenization=tokens, minilm_training=minilm)

    log("P4 for audio: decoding, features and augmentation against audio_cnn's training")
    decode, cached, augmented_audio, audio_training = audio_rates(workdir, steps, batches)
    results["P4_audio"] = augmented_audio / audio_training
    results["raw"].update(audio_first_pass=decode, audio_cached=cached, audio_augmented=augmented_audio,
                          audio_training=audio_training)

    log("scaling: one and two logical CPU devices")
    two, reduce_seconds, two_step = mirrored_rate(images, workdir, steps)
    results["scaling_2_devices"] = two / consumed
    results["all_reduce_share"] = reduce_seconds / two_step
    results["raw"].update(two_devices=two, all_reduce=reduce_seconds)

    log("scaling: one process and two worker processes (MultiWorkerMirroredStrategy on 127.0.0.1)")
    one_process, two_workers = worker_rates(images, workdir, steps)
    results["scaling_2_workers"] = two_workers / one_process
    results["raw"].update(one_process=one_process, two_workers=two_workers)


    print("\n| measure | ratio | goal |\n|---|---|---|")
    goals = {"P1": ">= 0.98", "P2": ">= 0.8 E", "P3": ">= 0.8", "P3_plain": "(plain Keras's frozen fit)",
             "P4": ">= 1.5", "P4_vs_keras": ">= 1.0", "P4_audio": ">= 1.5",
             "P5": "<= 1.0", "P6": ">= 3", "scaling_2_devices": "(2 devices on 2 shared cores)",
             "scaling_2_workers": "(2 worker processes on the same 2 cores)",
             "all_reduce_share": "(of a 2-device step)"}
    for key, goal in goals.items():
        value = results[key]
        print(f"| {key} | {'not measured' if value is None else f'{value:.3f}'} | {goal} |")
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in results.items() if k != "raw"}
                     | {"raw": {k: round(v, 5) for k, v in results["raw"].items()}}))


if __name__ == "__main__":
    sys.exit(main())
