"""What training health (`output.health`, `tfft.callbacks.health`) costs, measured side by side.

Every figure is a ratio of medians measured in this one process (the machine is shared and
noisy; no absolute time means much on it), over `--repeats` interleaved rounds of the same
run with health on and off:

- H1: seconds per training step with health over without (median of every step but each
  fit's first): between validations health runs one comparison per step (goal <= 1.02).
- H2: wall time of the whole run with health over without: the validations' measurements
  and their TensorBoard points included.
- H3: one health measurement (`TrainingHealth.measure`: the distance of every backbone
  group, the gradient norm on the probe batch, the frozen groups' digests) in median
  training steps of the run's last stage: the stage's first (which traces the gradient
  pass of a model above `tfft.health.TRACE_ABOVE` parameters), its second, and the median
  of the later ones (goal <= 2 for these: the probe is about a step).

Measured on a tiny run (the test ResNet at 32 px on 48 images, the head then the top two
groups, 120 steps, 10 validations) and on MobileNetV3Small at 96 px (random weights, the
head then every layer, 60 steps, 10 validations); with `--text`, H3 also for
all-MiniLM-L6-v2 (sequence 64, batch 16, the head and the top two transformer layers
training), when it is installed.

    python bench/health_overhead.py            # about 5 minutes on 2 cores
    python bench/health_overhead.py --text     # and MiniLM: about 1 minute more

The last line of output is one JSON object with H1, H2, H3 (first, second, later) per
model and the raw medians.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tfft  # noqa: E402
from tfft.callbacks.health import for_stage  # noqa: E402
from tfft.testing import TinyTrainer, write_image_folder  # noqa: E402

from performance import Clock, log  # noqa: E402


def timed(base):
    class Timed(base):
        """`base` with every stage's fit clocked."""

        def build_callbacks(self, stage, index):
            return [self.clock]

    return Timed


def run(recipe, base, workdir):
    trainer = timed(base)(recipe, out_dir=workdir, overwrite=True, verbose=0, save=False)
    trainer.clock = Clock()
    start = time.perf_counter()
    trainer.run()
    return trainer, time.perf_counter() - start


def measurement_seconds(trainer, calls=5):
    """Seconds of `calls` successive `TrainingHealth.measure` of the run's last stage, as it
    ends: `(first, second, median of the later ones)`."""
    health = for_stage(trainer, trainer.stages[-1])
    health.logger = None
    health.set_model(trainer.model)
    health.on_train_begin()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        health.measure()
        times.append(time.perf_counter() - start)
    return times[0], times[1], statistics.median(times[2:])


def compare(name, recipe, base, workdir, repeats):
    """H1, H2, H3 of one recipe, over `repeats` interleaved rounds with health on and off."""
    steps, walls, probes = {True: [], False: []}, {True: [], False: []}, []
    for index in range(repeats):
        for on in (True, False):
            trainer, wall = run(recipe.with_overrides([f"output.health={on}"]), base,
                                os.path.join(workdir, f"{name}{index}{on}"))
            last = len(trainer.clock.fits) - 1  # the last stage's fits: its step time
            steps[on].append(statistics.median(trainer.clock.steps(*range(len(trainer.clock.fits)))))
            walls[on].append(wall)
            if on:
                step = statistics.median(trainer.clock.steps(*range(last, len(trainer.clock.fits))))
                probes.append([seconds / step for seconds in measurement_seconds(trainer)])
            log(f"{name} round {index + 1}, health {'on' if on else 'off'}: {wall:.1f} s, median step "
                f"{steps[on][-1] * 1e3:.1f} ms" + (", measurements {:.2f}, {:.2f}, then {:.2f} steps".format(
                    *probes[-1]) if on else ""))
    median = {on: (statistics.median(steps[on]), statistics.median(walls[on])) for on in (True, False)}
    return dict(H1=median[True][0] / median[False][0], H2=median[True][1] / median[False][1],
                H3=[statistics.median(p[i] for p in probes) for i in range(3)], step_seconds=median[False][0],
                run_seconds=median[False][1])


def text_measurement(workdir):
    """H3 for MiniLM: a short real run, then one measurement in its last stage's steps."""
    stages = [dict(name="head", steps=4, train="head", lr=2e-3),
              dict(name="top", steps=12, train=["head", "top:2"], lr=3e-4)]
    recipe = tfft.Recipe().with_overrides([
        "backbone.name='minilm-l6'", "data.kind='text'", "data.synthetic='tickets'", "data.synthetic_per_class=16",
        "data.sequence_length=64", "data.batch_size=16", "schedule.kind='custom'", f"schedule.stages={stages!r}",
        "train.validate_every=4"])
    trainer, _ = run(recipe, tfft.Trainer, os.path.join(workdir, "text"))
    step = statistics.median(trainer.clock.steps(len(trainer.clock.fits) - 1))
    seconds = measurement_seconds(trainer)
    log("MiniLM: median step {:.2f} s; measurements {:.2f}, {:.2f}, then {:.2f} s".format(step, *seconds))
    return dict(H3=[value / step for value in seconds], step_seconds=step, measurement_seconds=list(seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--text", action="store_true", help="also H3 for MiniLM")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        images = os.path.join(workdir, "images")
        write_image_folder(images, num_classes=3, per_class=20, size=32)
        tiny = tfft.Recipe().with_overrides([
            f"data.path={images!r}", "data.batch_size=8", "data.augment={}", "backbone.input_size=32",
            "schedule.kind='two_phase'", "schedule.steps=120", "schedule.lr=0.01", "schedule.finetune_lr=0.003"])
        results["tiny"] = compare("tiny", tiny, TinyTrainer, workdir, args.repeats)
        mobilenet = tfft.Recipe().with_overrides([
            f"data.path={images!r}", "data.batch_size=16", "data.augment={}", "backbone.name='MobileNetV3Small'",
            "backbone.weights=None", "backbone.input_size=96", "schedule.kind='two_phase'", "schedule.steps=60",
            "schedule.unfreeze=0", "schedule.lr=0.01", "schedule.finetune_lr=0.001"])
        results["mobilenet"] = compare("mobilenet", mobilenet, tfft.Trainer, workdir, args.repeats)
        if args.text:
            results["minilm"] = text_measurement(workdir)
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
