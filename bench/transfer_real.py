"""Few-shot transfer on real data tfft did not make: tfft's defaults and `schedule.kind="auto"`
against the Keras guide's two-phase recipe written by hand, and against training from scratch.

The data (`bench/real_data.py`, from Debian packages, offline):

| set | classes | few-shot training | test | backbone |
|---|---|---|---|---|
| icons | 10 icon concepts | 10 drawings each, from some icon themes | every drawing of the other themes | `image_cnn` pretrained by tfft on 30 other concepts |
| manpages | 7 manual sections | 10 pages each | other pages (no page family on both sides) | all-MiniLM-L6-v2 |
| words | 10 spoken words | 5 clips each, from 5 voices | 12 other voices, 9 of them MBROLA (recorded diphones) | `audio_cnn` pretrained by tfft on 25 other words |

The arms, each on the same few-shot split, seeds 0, 1, 2 (the seed draws the few-shot sample
and sets the initialisation and the order of the batches):

- `tfft`: `tfft.Trainer` with the recipe defaults: only the data and the backbone are set.
- `tfft_auto`: the same with `schedule.kind="auto"`.
- `tfft_lora`: the same with `schedule.lora={"rank": 8}`: the groups the defaults fine-tune
  in full (the top two) train through LoRA adapters instead, their pretrained weights held.
- `keras_guide`: the Keras transfer-learning guide, hand-written: the pretrained base frozen
  and called with `training=False`, global average pooling, dropout 0.2 and a dense layer,
  Adam at 1e-3; then the base unfrozen, Adam at a low rate. The guide's 20 + 20 epochs are
  stretched so that it trains at least as many steps as tfft, and its fine-tuning rate is
  picked from 1e-4 and 1e-5 on a held-out fifth of the training split. For text: keras-hub's
  `BertTextClassifier` on the same MiniLM, its rate picked from 5e-5, 1e-4 and 2e-4 the
  same way, at least as many steps as tfft.
- `scratch`: the backbone's architecture from random weights, every layer training, twice
  tfft's steps in one one-cycle stage, its rate picked from 3e-3 and 1e-2 on the held-out
  fifth. For
  text: TF-IDF (word 1-2-grams) and logistic regression, C picked by 5-fold cross-validation.
- `contrastive` (text only): SetFit's recipe written by hand: the MiniLM encoder fine-tuned
  on pairs of training texts (for each text, in each of 20 rounds, one of its class and one
  of another) to make the cosine of their pooled embeddings 1 or 0, AdamW at 2e-5, 16 pairs
  a step; then logistic regression on the normalised embeddings. SetFit's published
  defaults, nothing picked; it also reports the frozen encoder's logistic regression.

The test split scores every arm and is never used for a choice. The source models are
trained once (seed 0) and kept in the work directory.

    python bench/transfer_real.py                      # everything, several hours on 2 cores
    python bench/transfer_real.py --sets icons --seeds 1 --arms tfft,keras_guide
    python bench/transfer_real.py --sets manpages --arms tfft,tfft_lora --seeds 3   # LoRA against full
    python bench/transfer_real.py --sets manpages --arms contrastive,scratch          # SetFit, TF-IDF
    python bench/transfer_real.py --sets manpages --arms tfft --seeds 1 --shots 30   # 30 pages a section
    python bench/transfer_real.py --quick              # a smoke run of every step

The last line of output is one JSON object: per set and arm, the test accuracy of each seed,
its mean and sample standard deviation.
"""

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import real_data  # noqa: E402
import tfft  # noqa: E402  (imports TensorFlow without its start-up noise)
from tfft.adapters import optimizer_state  # noqa: E402
from tfft.data import audio_datasets, image_datasets, text_datasets  # noqa: E402
from tfft.evaluation import predict_outputs  # noqa: E402

import keras  # noqa: E402

SETS = ("icons", "manpages", "words")
ARMS = ("tfft", "tfft_auto", "tfft_lora", "keras_guide", "scratch", "contrastive")
LORA = "schedule.lora={'rank': 8}"
KIND = {"icons": "image", "manpages": "text", "words": "audio"}
IMAGE_SIZE = 64
SEQUENCE_LENGTH = 64
GUIDE_RATES = (1e-4, 1e-5)
HUB_RATES = (5e-5, 1e-4, 2e-4)
# SetFit's defaults (Tunstall et al., 2022): pair rounds per example, rate, batch of pairs.
PAIR_ROUNDS, PAIR_RATE, PAIR_BATCH = 20, 2e-5, 16
SCRATCH_RATES = (3e-3, 1e-2)
SCRATCH_TIMES = 2


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def release():
    keras.backend.clear_session()
    gc.collect()


def build(name, seed, shots=None):
    """The splits of set `name` for `seed`, with `shots` target examples per class (None:
    the set's own default)."""
    builder = {"icons": real_data.build_icons, "manpages": real_data.build_manpages, "words": real_data.build_words}[name]
    return builder(seed=seed) if shots is None else builder(seed=seed, shots=shots)


def data_overrides(name, train, test):
    values = [f"data.kind={KIND[name]!r}", f"data.path={train!s}", f"data.validation_path={test!s}"]
    if name == "icons":
        values.append(f"backbone.input_size={IMAGE_SIZE}")
    if name == "manpages":
        values += ["backbone.name='minilm-l6'", f"data.sequence_length={SEQUENCE_LENGTH}"]
    return values


def run_tfft(overrides, workdir, name):
    recipe = tfft.Recipe().with_overrides(overrides)
    start = time.perf_counter()
    trainer = tfft.Trainer(recipe, out_dir=os.path.join(workdir, name), overwrite=True, verbose=0, save=False)
    metrics = trainer.run()
    steps = sum(stage["steps_run"] for stage in metrics["stages"])
    count, size = optimizer_state(trainer.optimizer)
    result = dict(accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"], steps=steps,
                  seconds=round(time.perf_counter() - start, 1),
                  stages=[(s["name"], s["steps_run"], s["lr"]) for s in metrics["stages"]],
                  trainable_params=max(s["trainable_params"] for s in metrics["stages"]),
                  optimizer_variables=count, optimizer_mb=round(size / 1e6, 2))
    if "search" in metrics:
        result["chosen"] = metrics["search"]["chosen"]
        result["search_steps"] = metrics["search"]["steps"]
    release()
    return result


# -- pretraining ------------------------------------------------------------------------------

def pretrain(name, workdir, quick):
    """The source model of a set, trained once by tfft from random weights; its model.keras."""
    path = os.path.join(workdir, f"{name}_source", "model.keras")
    if os.path.isfile(path):
        return path
    sets = build(name, 0)
    epochs = 3 if quick else {"icons": 40, "words": 30}[name]
    stages = [dict(name="all", epochs=epochs, train="all", lr=3e-3, shape="one_cycle")]
    backbone = "image_cnn" if name == "icons" else "audio_cnn"
    overrides = data_overrides(name, sets["source_train"], sets["source_val"]) + [
        f"backbone.name={backbone!r}", "backbone.weights=None", "schedule.kind='custom'", f"schedule.stages={stages!r}",
        "train.weight_decay=5e-4"]
    if name == "icons":  # 30 concepts drawn in ~60 styles: strong augmentation generalises across styles
        overrides.append("data.augment='strong'")
    log(f"{name}: pretraining {backbone} on {sets['source_train']} for {epochs} epochs")
    recipe = tfft.Recipe().with_overrides(overrides)
    metrics = tfft.Trainer(recipe, out_dir=os.path.dirname(path), overwrite=True, verbose=0).run()
    log(f"{name}: source validation accuracy {metrics['accuracy']:.4f}")
    release()
    return path


# -- hand-written baselines -------------------------------------------------------------------

def load_datasets(name, train, test, seed, holdout=None, batch_size=32):
    if name == "icons":
        return image_datasets(train, validation_path=test, image_size=IMAGE_SIZE, batch_size=batch_size, augment={},
                              seed=seed, holdout=holdout)
    return audio_datasets(train, validation_path=test, batch_size=batch_size, augment={}, seed=seed, holdout=holdout)


def unwrap(path):
    """The backbone inside a classifier tfft saved."""
    model = keras.models.load_model(path, compile=False)
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def accuracy(model, dataset):
    labels, logits = predict_outputs(model, dataset)
    return float(np.mean(np.argmax(logits, axis=-1) == labels.reshape(-1)))


def guide_model(base, shape, num_classes, name):
    inputs = keras.Input(shape)
    x = inputs
    if name == "icons":  # the guide's augmentation: flips and small rotations
        x = keras.layers.RandomFlip("horizontal")(x)
        x = keras.layers.RandomRotation(0.1)(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def keras_guide(name, source, train, test, seed, steps, rate=None, holdout=None):
    """The guide's two phases, at least `steps` in all; returns the test (or held-out) accuracy."""
    keras.utils.set_random_seed(seed)
    data = load_datasets(name, train, test, seed, holdout)
    per_epoch = data.steps_per_epoch
    head_epochs = max(20, math.ceil(steps / 2 / per_epoch))
    base = unwrap(source)
    base.trainable = False
    shape = tuple(base.input_shape[1:])
    model = guide_model(base, shape, data.num_classes, name)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    stream = data.train_stream(0)
    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    model.fit(stream, steps_per_epoch=per_epoch, epochs=head_epochs, verbose=0)
    base.trainable = True
    model.compile(keras.optimizers.Adam(rate), loss, metrics=["accuracy"])
    model.fit(stream, steps_per_epoch=per_epoch, initial_epoch=head_epochs, epochs=2 * head_epochs, verbose=0)
    result = accuracy(model, data.validation)
    release()
    return result, 2 * head_epochs * per_epoch


def hub_classifier(train_texts, train_labels, eval_texts, num_classes, rate, steps, seed):
    import keras_hub

    from tfft.modalities.text.encoders import resolve_preset

    keras.utils.set_random_seed(seed)
    preset = resolve_preset("minilm-l6")
    classifier = keras_hub.models.BertTextClassifier(
        backbone=keras_hub.models.BertBackbone.from_preset(preset),
        preprocessor=keras_hub.models.BertTextClassifierPreprocessor.from_preset(preset,
                                                                                 sequence_length=SEQUENCE_LENGTH),
        num_classes=num_classes)
    classifier.compile(optimizer=keras.optimizers.AdamW(rate, weight_decay=0.01),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    per_epoch = math.ceil(len(train_texts) / 32)
    epochs = max(10, math.ceil(steps / per_epoch))
    classifier.fit(x=list(train_texts), y=np.asarray(train_labels), batch_size=32, epochs=epochs, verbose=0)
    logits = classifier.predict(list(eval_texts), batch_size=64, verbose=0)
    release()
    return np.argmax(logits, axis=-1), epochs * per_epoch


def text_splits(train, test, seed, holdout=None):
    data = text_datasets(path=train, validation_path=test, seed=seed, holdout=holdout, batch_size=10_000)
    texts, labels = [], []
    for batch_texts, batch_labels in data.epoch(0):
        texts += [t.decode("utf-8") for t in batch_texts.numpy()]
        labels += batch_labels.numpy().tolist()
    val_texts, val_labels = [], []
    for batch_texts, batch_labels in data.validation:
        val_texts += [t.decode("utf-8") for t in batch_texts.numpy()]
        val_labels += batch_labels.numpy().tolist()
    return texts, labels, val_texts, np.asarray(val_labels), data.class_names


def keras_hub_arm(train, test, seed, steps):
    """keras-hub's classifier, its rate picked on the held-out fifth; returns (accuracy, rate, steps)."""
    texts, labels, held, held_labels, names = text_splits(train, test, seed, holdout=0.2)
    scores = {}
    for rate in HUB_RATES:
        predicted, _ = hub_classifier(texts, labels, held, len(names), rate, steps, seed)
        scores[rate] = float(np.mean(predicted == held_labels))
    rate = max(HUB_RATES, key=lambda r: (scores[r], -r))
    texts, labels, test_texts, test_labels, names = text_splits(train, test, seed)
    predicted, used = hub_classifier(texts, labels, test_texts, len(names), rate, steps, seed)
    return float(np.mean(predicted == test_labels)), dict(rate=rate, selection=scores, steps=used)


def tfidf_arm(train, test, seed):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline

    texts, labels, test_texts, test_labels, _ = text_splits(train, test, seed)
    pipeline = Pipeline([("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                         ("lr", LogisticRegression(max_iter=5000))])
    search = GridSearchCV(pipeline, {"lr__C": np.logspace(-2, 3, 11)},
                          cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    search.fit(texts, labels)
    return float(np.mean(search.predict(test_texts) == test_labels)), dict(C=float(search.best_params_["lr__C"]))


def contrastive_arm(train, test, seed):
    """SetFit's two steps by hand: a contrastive fine-tune of the encoder on sentence pairs,
    then logistic regression on its embeddings; returns (accuracy, details)."""
    import tensorflow as tf
    from sklearn.linear_model import LogisticRegression

    from tfft.modalities.text.encoders import build_text_encoder

    texts, labels, test_texts, test_labels, _ = text_splits(train, test, seed)
    labels = np.asarray(labels)
    keras.utils.set_random_seed(seed)
    backbone = build_text_encoder("minilm-l6", sequence_length=SEQUENCE_LENGTH)
    encoder, tokenize = backbone.model, backbone.preprocess

    def embed(batch_texts):
        pooled = np.concatenate([np.asarray(encoder(tokenize(batch_texts[i:i + 64]), training=False))
                                 for i in range(0, len(batch_texts), 64)])
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def logistic_accuracy():
        head = LogisticRegression(max_iter=5000).fit(embed(texts), labels)
        return float(np.mean(head.predict(embed(test_texts)) == test_labels))

    frozen = logistic_accuracy()
    rng = np.random.default_rng(seed)
    first, second, same = [], [], []
    for _ in range(PAIR_ROUNDS):
        for i, label in enumerate(labels):
            first += [i, i]
            second += [rng.choice(np.flatnonzero(labels == label)), rng.choice(np.flatnonzero(labels != label))]
            same += [1.0, 0.0]
    order = rng.permutation(len(first))
    first, second, same = np.asarray(first)[order], np.asarray(second)[order], np.asarray(same, "float32")[order]
    tokens = tokenize(texts)
    optimizer = keras.optimizers.AdamW(PAIR_RATE, weight_decay=0.01)

    @tf.function
    def step(a, b, target):
        with tf.GradientTape() as tape:
            u, v = encoder(a, training=True), encoder(b, training=True)
            cosine = tf.reduce_sum(tf.math.l2_normalize(u, -1) * tf.math.l2_normalize(v, -1), -1)
            loss = tf.reduce_mean((cosine - target) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, encoder.trainable_variables), encoder.trainable_variables))
        return loss

    def take(rows):
        return {key: tf.gather(value, rows) for key, value in tokens.items()}

    steps = 0
    for start in range(0, len(first), PAIR_BATCH):
        rows = slice(start, start + PAIR_BATCH)
        step(take(first[rows]), take(second[rows]), same[rows])
        steps += 1
    accuracy = logistic_accuracy()
    release()
    return accuracy, dict(frozen_logistic=frozen, steps=steps)


# -- one set, one seed ---------------------------------------------------------------------------

def run_arm(arm, name, source, sets, seed, workdir, tfft_steps, quick=False, extra=()):
    train, test = sets["target_train"], sets["target_test"]
    common = data_overrides(name, train, test) + [f"runtime.seed={seed}", f"data.seed={seed}"]
    if quick:
        common.append("schedule.min_steps=30")
    if name != "manpages":
        common.append(f"backbone.name={source!r}")
    if arm == "tfft":
        return run_tfft(common + list(extra), workdir, f"{name}_{seed}_tfft")
    if arm == "tfft_auto":
        return run_tfft(common + list(extra) + ["schedule.kind='auto'"], workdir, f"{name}_{seed}_auto")
    if arm == "tfft_lora":
        return run_tfft(common + list(extra) + [LORA], workdir, f"{name}_{seed}_lora")
    if arm == "keras_guide" and name == "manpages":
        acc, extra = keras_hub_arm(train, test, seed, tfft_steps)
        return dict(accuracy=acc, **extra)
    if arm == "keras_guide":
        scores = {rate: keras_guide(name, source, train, test, seed, tfft_steps, rate, holdout=0.2)[0]
                  for rate in GUIDE_RATES}
        rate = max(GUIDE_RATES, key=lambda r: (scores[r], r))
        acc, steps = keras_guide(name, source, train, test, seed, tfft_steps, rate)
        return dict(accuracy=acc, rate=rate, selection=scores, steps=steps)
    if arm == "contrastive":
        if name != "manpages":
            return None
        acc, extra = contrastive_arm(train, test, seed)
        return dict(accuracy=acc, **extra)
    if arm == "scratch" and name == "manpages":
        acc, extra = tfidf_arm(train, test, seed)
        return dict(accuracy=acc, **extra)
    backbone = "image_cnn" if name == "icons" else "audio_cnn"
    scratch = common + [f"backbone.name={backbone!r}", "backbone.weights=None", "schedule.kind='custom'"]
    steps = SCRATCH_TIMES * tfft_steps

    def stage(rate, length):
        return f"schedule.stages={[dict(name='all', steps=length, train='all', lr=rate, shape='one_cycle')]!r}"

    scores = {}
    for rate in SCRATCH_RATES:
        held = run_tfft(scratch + [stage(rate, tfft_steps), "data.holdout=0.2"], workdir, f"{name}_{seed}_scratch_sel")
        scores[rate] = held["accuracy"]
    rate = max(SCRATCH_RATES, key=lambda r: (scores[r], -r))
    result = run_tfft(scratch + [stage(rate, steps)], workdir, f"{name}_{seed}_scratch")
    return dict(result, rate=rate, selection=scores)


def summarise(values):
    mean = statistics.mean(values)
    return dict(mean=round(mean, 4), std=round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                seeds=[round(v, 4) for v in values])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: icons, manpages, words")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated: " + ", ".join(ARMS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="run seeds first-seed .. first-seed + seeds - 1 (to add seeds to an earlier run)")
    parser.add_argument("--workdir", default=os.path.expanduser("~/.cache/tfft-bench/transfer_real"))
    parser.add_argument("--shots", type=int, default=None,
                        help="target training examples per class (default: each set's own: 10, 10 and 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one seed, short pretraining, short runs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override for the tfft arms (repeatable), e.g. schedule.unfreeze=0; "
                             "the baselines keep the budget of the tfft arm so changed")
    args = parser.parse_args(argv)
    args.sets = [s for s in args.sets.split(",") if s]
    args.arms = [a for a in args.arms.split(",") if a]
    for value, known in ((args.sets, SETS), (args.arms, ARMS)):
        unknown = sorted(set(value) - set(known))
        if unknown:
            parser.error(f"unknown {unknown}; known: {list(known)}")
    if args.quick:
        args.seeds = 1
    return args


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    results = {}
    for name in args.sets:
        source = None if name == "manpages" else pretrain(name, args.workdir, args.quick)
        per_arm = {arm: [] for arm in args.arms}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            sets = build(name, seed, args.shots)
            tfft_steps = None
            # tfft runs first, also when not asked for, if a baseline takes its steps as budget.
            budget = {"tfft", "keras_guide"} | ({"scratch"} if name != "manpages" else set())
            first = ["tfft"] if budget & set(args.arms) else []
            for arm in first + [a for a in args.arms if a != "tfft"]:
                result = run_arm(arm, name, source, sets, seed, args.workdir, tfft_steps, args.quick,
                                 args.overrides)
                if result is None:
                    continue  # an arm for another kind of data
                if arm == "tfft":
                    tfft_steps = result["steps"]
                if arm in args.arms:
                    per_arm[arm].append(result)
                    log(f"{name} seed {seed} {arm}: accuracy {result['accuracy']:.4f} "
                        f"{ {k: v for k, v in result.items() if k not in ('accuracy', 'macro_f1')} }")
        results[name] = {arm: dict(summarise([r["accuracy"] for r in runs]), runs=runs)
                         for arm, runs in per_arm.items() if runs}
    print_table(results)
    print(json.dumps({name: {arm: {k: v for k, v in row.items() if k != "runs"} for arm, row in arms.items()}
                      for name, arms in results.items()}))


def print_table(results):
    print("\n| set | " + " | ".join(ARMS) + " |")
    print("|---|" + "---|" * len(ARMS))
    for name, arms in results.items():
        cells = [f"{arms[a]['mean']:.3f} ± {arms[a]['std']:.3f}" if a in arms else "-" for a in ARMS]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
