"""Audio transfer: a keyword CNN pretrained with tfft, fine-tuned on new words from a few clips.

Everything happens in one run, on spoken words made offline by espeak-ng
(`tfft.modalities.audio.demo`), as 8 kHz log-mel spectrograms:

1. pretrain: `audio_cnn` from random weights on `KEYWORDS_A` (yes, no, up, ...), every voice,
   speed and pitch of `DEFAULT_VOICES`; the run's `model.keras` is the pretrained backbone.
2. finetuned: that `model.keras` (`backbone.name=<file>`) fine-tuned on `KEYWORDS_B` (the
   digits zero ... nine, none of them a pretraining word) from `--shots` clips per word,
   with the built-in staged schedule that scores best on held-out few-shot clips.
3. scratch: the same `audio_cnn` from random weights on exactly the same clips, every layer
   and BatchNorm training from the first step, three times the passes of the fine-tune, its
   learning rate picked on the same held-out clips.

The few-shot clips come from four default voices. Both arms are scored on a test split of
the digits spoken by the four other default voices (tfft's validation split is that test
split), and on a second one spoken by voices that neither pretraining nor fine-tuning
used. The test splits are never used for a choice.

    python bench/audio_transfer.py                 # the full benchmark, about 15 minutes
    python bench/audio_transfer.py --quick         # a smoke run of every step, 3-5 minutes

The last line of output is one JSON object with the test accuracy of each arm.
"""

import argparse
import dataclasses
import gc
import json
import os
import shutil
import statistics
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfft  # noqa: E402  (imports TensorFlow without its start-up noise)
from tfft.data import KEYWORDS_A, KEYWORDS_B, audio_datasets, make_keyword_set  # noqa: E402
from tfft.modalities.audio.demo import DEFAULT_VOICES  # noqa: E402
from tfft.evaluation import predict_outputs  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

# 8 kHz telephone-band features: half the cost of 16 kHz, and the words stay intelligible.
FEATURES = dict(sample_rate=8000, duration=1.0, n_fft=256, hop_length=80, n_mels=40)
AUGMENT = dict(time_mask=2, time_mask_width=10, freq_mask=2, freq_mask_width=6, noise_snr_db=20, shift=0.1, gain_db=6)
# The few-shot clips and the test split share no voice: each side gets two accents and two
# male/female variants of the default voices.
TRAIN_VOICES = ("en-us", "en-gb-x-rp", "en+m3", "en+f2")
TEST_VOICES = tuple(v for v in DEFAULT_VOICES if v not in TRAIN_VOICES)
# Accents and variants outside DEFAULT_VOICES: pretraining never heard them either.
NEW_VOICES = ("en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd+f3", "en-us-nyc+m1")
SCRATCH_LRS = (3e-3, 1e-2, 3e-2, 1e-1)
HEAD_LR, FINETUNE_LR = 3e-3, 1e-3
BATCH_SIZE = 16
PASSES = 3  # passes over the few-shot clips per epoch (`PassesTrainer`)

_START = time.time()


def log(message):
    elapsed = int(time.time() - _START)
    print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {message}", flush=True)


def release():
    """Drop the previous model's graphs, so later runs do not slow down."""
    keras.backend.clear_session()
    gc.collect()


def summary(values):
    """`mean` and `std` (sample; 0 for one value) of a list."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


# --- data ----------------------------------------------------------------------------


def make_sets(root, quick):
    """The pretraining set, the pool of few-shot clips and the two test splits."""
    rate = FEATURES["sample_rate"]
    speeds, pitches = ((130, 190), (35, 65)) if quick else ((130, 160, 190), (35, 50, 65))
    return dict(
        pretrain=make_keyword_set(os.path.join(root, "pretrain"), KEYWORDS_A, sample_rate=rate, seed=0,
                                  speeds=speeds, pitches=pitches),
        pool=make_keyword_set(os.path.join(root, "pool"), KEYWORDS_B, voices=TRAIN_VOICES, sample_rate=rate,
                              seed=1),
        test=make_keyword_set(os.path.join(root, "test"), KEYWORDS_B, voices=TEST_VOICES, sample_rate=rate,
                              seed=2),
        new_voices=make_keyword_set(os.path.join(root, "new_voices"), KEYWORDS_B, voices=NEW_VOICES,
                                    sample_rate=rate, seed=3),
    )


def class_files(folder):
    return {name: sorted(os.listdir(os.path.join(folder, name)))
            for name in sorted(os.listdir(folder)) if not name.startswith(".")}


def sample_shots(pool, root, shots, held, seed):
    """Copy `shots` random clips per word into `root/train`; split them into `fit` and `held`.

    `held` clips per word form the held-out part used for every choice; `fit` the rest.
    """
    rng = np.random.default_rng([seed, 17])
    if os.path.isdir(root):
        shutil.rmtree(root)
    for word, files in class_files(pool).items():
        chosen = [files[i] for i in rng.permutation(len(files))[:shots]]
        for part, names in (("train", chosen), ("held", chosen[:held]), ("fit", chosen[held:])):
            os.makedirs(os.path.join(root, part, word), exist_ok=True)
            for name in names:
                shutil.copyfile(os.path.join(pool, word, name), os.path.join(root, part, word, name))
    return {part: os.path.join(root, part) for part in ("train", "fit", "held")}


def voices_of(folder):
    """The voices in a set's file names (`word_0003_en-us_s130_p50.wav`)."""
    return sorted({name.split("_", 2)[2].rsplit("_s", 1)[0] for files in class_files(folder).values()
                   for name in files})


# --- runs ----------------------------------------------------------------------------


class PassesTrainer(tfft.Trainer):
    """A `tfft.Trainer` whose epoch is `passes` passes over the training clips.

    Keras validates after every epoch. Sixty few-shot clips are four steps, so checking
    360 test clips after each pass would cost more than the training; each pass still
    draws its own crops and augmentation.
    """

    def __init__(self, recipe, passes=1, **kwargs):
        super().__init__(recipe, **kwargs)
        self.passes = passes

    def build_datasets(self):
        datasets = super().build_datasets()
        if self.passes == 1:
            return datasets
        return dataclasses.replace(datasets, train=datasets.train.repeat(self.passes))


def feature_overrides():
    return ["data.kind='audio'", f"data.augment={AUGMENT!r}", f"data.batch_size={BATCH_SIZE}"] + [
        f"data.{key}={value!r}" for key, value in FEATURES.items()
    ]


def one_stage(epochs, lr):
    """Every group from the first step, one-cycle rate: how a random `audio_cnn` trains."""
    return ["schedule.kind='custom'",
            "schedule.stages=" + repr([dict(name="all", epochs=epochs, train="all", lr=lr, shape="one_cycle")])]


def finetune_candidates(epochs):
    """Built-in staged schedules over the same `epochs`, as `(name, overrides)`.

    `audio_cnn` has four groups, block1 (bottom) to block4. Every candidate first trains
    the new head alone for a third of the epochs at `HEAD_LR` (the backbone frozen), then
    backbone groups at `FINETUNE_LR` with a warmup and cosine decay. BatchNorm keeps its
    pretrained statistics (tfft's default for a pretrained backbone) or trains with them
    recomputed at the end of each stage (`train_bn=True`).
    """
    head_epochs = max(1, epochs // 3)
    common = [f"schedule.head_epochs={head_epochs}", f"schedule.epochs={epochs}", f"schedule.lr={HEAD_LR}",
              f"schedule.finetune_lr={FINETUNE_LR}", "schedule.shape='warmup_cosine'"]
    stage_epochs = max(1, (epochs - head_epochs) // 4)
    return [
        ("two_phase top 2", ["schedule.kind='two_phase'", "schedule.unfreeze=2"] + common),
        ("two_phase all", ["schedule.kind='two_phase'", "schedule.unfreeze=0"] + common),
        ("two_phase all, BN", ["schedule.kind='two_phase'", "schedule.unfreeze=0", "schedule.train_bn=True"] + common),
        ("gradual, BN", ["schedule.kind='gradual_unfreezing'", f"schedule.stage_epochs={stage_epochs}",
                         "schedule.train_bn=True"] + common),
    ]


def train(name, train_dir, validation_dir, backbone, schedule, seed, workdir, passes):
    """One tfft run; returns the trainer (its model in memory), its metrics and seconds.

    `validation_dir` is tfft's validation split: the held-out clips during selection, the
    test split in the final runs; None holds out a fifth of `train_dir` (pretraining).
    """
    weights = ["backbone.weights=None"] if backbone == "audio_cnn" else []  # random init
    recipe = tfft.Recipe().with_overrides(feature_overrides() + weights + [
        f"data.path={train_dir!r}", f"data.validation_path={validation_dir!r}", f"backbone.name={backbone!r}",
        "head.dropout=0.3", f"data.seed={seed}", f"runtime.seed={seed}",
    ] + list(schedule))
    start = time.time()
    trainer = PassesTrainer(recipe, passes=passes, out_dir=os.path.join(workdir, "runs", name), overwrite=True,
                            verbose=0)
    metrics = trainer.run()
    return trainer, metrics, time.time() - start


def score(model, folder):
    """Accuracy and mean cross-entropy of `model` on every clip of `folder`, unaugmented."""
    data = audio_datasets(path=folder, validation_path=folder, augment={}, batch_size=64, verify=False,
                          **FEATURES)
    labels, logits = predict_outputs(model, data.validation)
    labels = labels.reshape(-1).astype("int64")
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(np.mean(np.argmax(logits, -1) == labels)), float(-log_probs[np.arange(len(labels)), labels].mean())


def finish(workdir, name):
    shutil.rmtree(os.path.join(workdir, "runs", name), ignore_errors=True)
    release()


def select(label, candidates, splits, backbone, workdir):
    """Fit each candidate on the `fit` clips of every seed in `splits`; score it on the
    `held` clips of that seed.

    Returns the rows and the candidate with the best mean held-out accuracy; ties, common
    with a few held-out clips, go to the lower mean held-out loss.
    """
    rows = []
    for name, schedule in candidates:
        accuracies, losses, seconds = [], [], 0.0
        for seed, dirs in splits.items():
            trainer, _, took = train("select", dirs["fit"], dirs["held"], backbone, schedule, seed, workdir, PASSES)
            accuracy, loss = score(trainer.model, dirs["held"])
            accuracies.append(accuracy)
            losses.append(loss)
            seconds += took
            finish(workdir, "select")
        rows.append(dict(candidate=name, accuracy=statistics.fmean(accuracies), loss=statistics.fmean(losses),
                         seconds=seconds))
        log(f"{label} select {name:<18} held-out accuracy {rows[-1]['accuracy']:.3f}, "
            f"loss {rows[-1]['loss']:.3f} ({seconds:.0f} s)")
    best = min(rows, key=lambda row: (-row["accuracy"], row["loss"]))
    return rows, best


def final_run(arm, dirs, sets, backbone, schedule, seed, workdir):
    """Train on every few-shot clip of `seed`; score on both test splits and on the clips."""
    trainer, metrics, seconds = train(arm, dirs["train"], sets["test"], backbone, schedule, seed, workdir, PASSES)
    run = dict(seed=seed, accuracy=metrics["accuracy"], new_voices=score(trainer.model, sets["new_voices"])[0],
               train_clean=score(trainer.model, dirs["train"])[0],
               train_last_epoch=float(metrics["stages"][-1].get("accuracy", float("nan"))), seconds=seconds)
    # tfft's validation split must be the test split, clip for clip.
    test_check = score(trainer.model, sets["test"])[0]
    if abs(test_check - run["accuracy"]) > 1e-6:
        raise SystemExit(f"tfft reported test accuracy {run['accuracy']} but the model scores {test_check}")
    finish(workdir, arm)
    log(f"{arm:<9} seed {seed}: test {run['accuracy']:.3f}, new voices {run['new_voices']:.3f}, "
        f"its own clips {run['train_clean']:.3f} (last epoch, augmented: {run['train_last_epoch']:.3f}) "
        f"({seconds:.0f} s)")
    if run["train_clean"] < 0.9:
        log(f"WARNING: {arm} seed {seed} fits only {run['train_clean']:.3f} of its own training clips")
    return run


# --- the benchmark -------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="few-shot samples and initialisations (default 3)")
    parser.add_argument("--shots", type=int, default=6, help="training clips per new word (default 6)")
    parser.add_argument("--select-seeds", type=int, default=1,
                        help="seeds whose held-out clips score the candidates, averaged (default 1: seed 0)")
    parser.add_argument("--pretrain-epochs", type=int, default=20, help="epochs over the 720 pretraining clips")
    parser.add_argument("--finetune-epochs", type=int, default=10,
                        help=f"epochs of every fine-tuning schedule, {PASSES} passes over the clips each (default 10)")
    parser.add_argument("--scratch-epochs", type=int, default=30,
                        help=f"epochs of every from-scratch run, {PASSES} passes over the clips each (default 30)")
    parser.add_argument("--workdir", default=os.path.join("~", ".cache", "tfft", "bench-audio-transfer"),
                        help="generated clips, the pretrained backbone and runs (default ~/.cache/tfft/bench-audio-transfer)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run of every step: 2 seeds, a smaller pretraining set, a few epochs, two rates")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.pretrain_epochs, args.finetune_epochs, args.scratch_epochs = 2, 3, 5, 8
    if args.seeds < 1 or args.shots < 3 or args.finetune_epochs < 5 or args.scratch_epochs < 1:
        parser.error("need --seeds >= 1, --shots >= 3, --finetune-epochs >= 5, --scratch-epochs >= 1")
    args.select_seeds = min(max(1, args.select_seeds), args.seeds)
    return args


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    workdir = os.path.abspath(os.path.expanduser(args.workdir))
    os.makedirs(workdir, exist_ok=True)
    return benchmark(args, list(range(args.seeds)), workdir)


def benchmark(args, seeds, workdir):
    held = max(1, round(args.shots / 3))
    log(f"settings: {args.shots} clips per new word ({held} held out while choosing), seeds {seeds}, epochs: "
        f"pretrain {args.pretrain_epochs}, finetune {args.finetune_epochs} x {PASSES} passes, scratch "
        f"{args.scratch_epochs} x {PASSES} passes; features {FEATURES}; TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}, {os.cpu_count()} CPUs; workdir {workdir}")
    sets = make_sets(os.path.join(workdir, "data"), args.quick)
    for name, folder in sets.items():
        count = sum(len(files) for files in class_files(folder).values())
        log(f"data {name:<10} {count:4d} clips, voices {voices_of(folder)}")
    splits = {seed: sample_shots(sets["pool"], os.path.join(workdir, "data", f"shots_seed{seed}"), args.shots, held,
                                 seed) for seed in seeds}

    # 1. Pretraining on the first vocabulary: every group and BatchNorm train from the start.
    _, metrics, seconds = train("pretrain", sets["pretrain"], None, "audio_cnn", one_stage(args.pretrain_epochs, 3e-3),
                                0, workdir, passes=1)
    pretrained = os.path.join(workdir, "pretrained_audio_cnn.keras")
    shutil.copyfile(os.path.join(workdir, "runs", "pretrain", "model.keras"), pretrained)
    pretrain = dict(accuracy=metrics["accuracy"], epochs=args.pretrain_epochs, seconds=seconds)
    finish(workdir, "pretrain")
    log(f"pretrain: accuracy {pretrain['accuracy']:.3f} on a held-out fifth of the pretraining clips "
        f"({seconds:.0f} s); backbone {pretrained}")

    # 2. Choices on held-out few-shot clips only; the test splits play no part.
    chosen = {seed: splits[seed] for seed in seeds[:args.select_seeds]}
    candidates = finetune_candidates(args.finetune_epochs)
    ft_rows, ft_best = select("finetuned", candidates, chosen, pretrained, workdir)
    lrs = SCRATCH_LRS[:2] if args.quick else SCRATCH_LRS
    scratch_candidates = [(f"lr={lr:g}", one_stage(args.scratch_epochs, lr)) for lr in lrs]
    sc_rows, sc_best = select("scratch", scratch_candidates, chosen, "audio_cnn", workdir)
    edge = " (an end of the grid)" if len(lrs) > 2 and sc_best["candidate"] in (
        scratch_candidates[0][0], scratch_candidates[-1][0]) else ""
    log(f"selected: finetuned {ft_best['candidate']}; scratch {sc_best['candidate']}{edge}")

    # 3. Final runs on every few-shot clip, scored on the test splits.
    runs = {"finetuned": [], "scratch": []}
    for seed in seeds:
        runs["finetuned"].append(final_run("finetuned", splits[seed], sets, pretrained,
                                           dict(candidates)[ft_best["candidate"]], seed, workdir))
        runs["scratch"].append(final_run("scratch", splits[seed], sets, "audio_cnn",
                                         dict(scratch_candidates)[sc_best["candidate"]], seed, workdir))

    results = {
        "finetuned": aggregate(runs["finetuned"], schedule=ft_best["candidate"], passes=args.finetune_epochs * PASSES,
                               selection=ft_rows),
        "scratch": aggregate(runs["scratch"], lr=float(sc_best["candidate"].split("=")[1]),
                             passes=args.scratch_epochs * PASSES, selection=sc_rows),
    }
    total = time.time() - _START
    print_table(results, pretrain, args.shots, held)
    log(f"total wall time {total / 60:.1f} min")
    output = dict(results)
    output["pretrain"] = pretrain
    output["settings"] = dict(shots=args.shots, held_out=held, seeds=seeds, select_seeds=list(chosen),
                              features=FEATURES, train_voices=list(TRAIN_VOICES), test_voices=list(TEST_VOICES),
                              new_voices=list(NEW_VOICES), quick=args.quick, wall_seconds=round(total, 1))
    print(json.dumps(_rounded(output)), flush=True)
    return output


def aggregate(runs, **extra):
    """Mean and sample std over seeds of the test, new-voice and own-clip accuracies."""
    out = {}
    for key in ("accuracy", "new_voices", "train_clean"):
        out[key], out[f"{key}_std"] = summary([r[key] for r in runs])
    out["std"] = out.pop("accuracy_std")
    return dict(out, seeds=runs, median_seconds=statistics.median(r["seconds"] for r in runs), **extra)


def print_table(results, pretrain, shots, held):
    ft, sc = results["finetuned"], results["scratch"]
    rows = [
        ("finetuned", f"pretrained, {ft['schedule']}, {ft['passes']} passes", ft),
        ("scratch", f"random init, lr {sc['lr']:g}, {sc['passes']} passes", sc),
    ]
    print()
    print(f"{'arm':<10} {'setting':<44} {'test':>13} {'new voices':>13} {'own clips':>13} {'s/run':>6}")
    print("-" * 104)
    for name, setting, r in rows:
        cells = [f"{r[key]:.3f} ± {r[key + '_std'] if key != 'accuracy' else r['std']:.3f}"
                 for key in ("accuracy", "new_voices", "train_clean")]
        print(f"{name:<10} {setting:<44} {cells[0]:>13} {cells[1]:>13} {cells[2]:>13} {r['median_seconds']:6.0f}")
    print(f"accuracy, mean ± sample std over seeds {[r['seed'] for r in ft['seeds']]}; chance 0.100. {shots} clips "
          f"per word ({held} held out only while choosing). test: voices no few-shot clip uses; new voices: voices "
          "neither pretraining nor fine-tuning used; own clips: the run's training clips, unaugmented; s/run: median "
          "wall seconds of a final run on a shared machine.")
    print(f"pretraining: accuracy {pretrain['accuracy']:.3f} on held-out pretraining clips ({pretrain['seconds']:.0f} s)")
    print()
    print("per seed: test / new voices / own clips / last epoch's training accuracy (augmented, training mode)")
    for name, _, r in rows:
        for run in r["seeds"]:
            print(f"  {name:<10} seed {run['seed']}: {run['accuracy']:.3f} / {run['new_voices']:.3f} / "
                  f"{run['train_clean']:.3f} / {run['train_last_epoch']:.3f}")
    print()


def _rounded(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


if __name__ == "__main__":
    main()
