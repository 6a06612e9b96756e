"""Tiny backbones, data and recipes for tests and examples.

Everything here runs in seconds on two CPU cores: backbones of a few conv blocks at
16–64 px, image folders of a few dozen files. The tiny ResNet uses the layer names of
`keras.applications.ResNet50`, so the ResNet layer-group rules apply to it unchanged.
"""

import os
import textwrap

import keras
import numpy as np
import tensorflow as tf

from tfft.trainer import Trainer


def tiny_resnet(input_size=32, filters=(8, 16, 32), blocks=1, name="tiny_resnet"):
    """A ResNet of a few basic blocks, named like `keras.applications.ResNet50`.

    Args:
        input_size: height and width of the RGB input.
        filters: filters of each stage `conv2`, `conv3`, ...; each stage after the first
            halves the resolution.
        blocks: residual blocks per stage.
        name: model name.

    Returns:
        A functional `keras.Model` from images to a 4D feature map, with BatchNorm in every
        block and a projection shortcut where the shape changes.

    Example:
        >>> model = tiny_resnet(32)
        >>> model.output.shape
        (None, 4, 4, 32)
    """
    inputs = keras.Input((input_size, input_size, 3), name="input")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1_conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    for stage, width in enumerate(filters, start=2):
        for block in range(1, blocks + 1):
            prefix = f"conv{stage}_block{block}"
            strides = 2 if stage > 2 and block == 1 else 1
            shortcut = x
            if strides != 1 or x.shape[-1] != width:
                # ResNet-D's shortcut (pool, then a 1x1 convolution) rather than a strided 1x1
                # convolution: with fewer than 16 input channels the latter's backward pass
                # corrupts the heap on AVX-512 CPUs (uxlfoundation/oneDNN#6035).
                if strides != 1:
                    shortcut = keras.layers.AveragePooling2D(strides, name=f"{prefix}_0_pool")(shortcut)
                shortcut = keras.layers.Conv2D(width, 1, name=f"{prefix}_0_conv")(shortcut)
                shortcut = keras.layers.BatchNormalization(name=f"{prefix}_0_bn")(shortcut)
            y = keras.layers.Conv2D(width, 3, strides=strides, padding="same", name=f"{prefix}_1_conv")(x)
            y = keras.layers.BatchNormalization(name=f"{prefix}_1_bn")(y)
            y = keras.layers.Activation("relu", name=f"{prefix}_1_relu")(y)
            y = keras.layers.Conv2D(width, 3, padding="same", name=f"{prefix}_2_conv")(y)
            y = keras.layers.BatchNormalization(name=f"{prefix}_2_bn")(y)
            x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            x = keras.layers.Activation("relu", name=f"{prefix}_out")(x)
    return keras.Model(inputs, x, name=name)


def tiny_cnn(input_size=32, filters=(8, 16, 16, 32), name="tiny_cnn"):
    """A plain conv stack with no family naming: layer groups come from the depth split.

    Example:
        >>> tiny_cnn(32).output.shape
        (None, 2, 2, 32)
    """
    inputs = keras.Input((input_size, input_size, 3))
    x = inputs
    for width in filters:
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
    return keras.Model(inputs, x, name=name)


def tiny_images(num_classes=3, per_class=12, size=32, seed=0):
    """Images whose class is the position of a bright square, with noise.

    Returns:
        `(images, labels)`: float32 `[n, size, size, 3]` in 0–255 and int32 `[n]`.
    """
    rng = np.random.default_rng(seed)
    n = num_classes * per_class
    images = rng.normal(60.0, 20.0, size=(n, size, size, 3))
    labels = np.repeat(np.arange(num_classes), per_class).astype("int32")
    cell = size // max(2, num_classes)
    for i, label in enumerate(labels):
        top = int(rng.integers(0, size - cell + 1))
        left = label * cell
        images[i, top : top + cell, left : left + cell] += 150.0
    return np.clip(images, 0, 255).astype("float32"), labels


def write_image_folder(directory, num_classes=3, per_class=12, size=32, seed=0):
    """Write `tiny_images` as a class-per-folder tree of PNG files.

    Returns:
        The class names, `["class0", "class1", ...]`.

    Example:
        >>> write_image_folder(tmp_path / "data", num_classes=2)
        ['class0', 'class1']
    """
    images, labels = tiny_images(num_classes, per_class, size, seed)
    names = [f"class{i}" for i in range(num_classes)]
    for name in names:
        os.makedirs(os.path.join(directory, name), exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        png = tf.io.encode_png(tf.cast(image, tf.uint8)).numpy()
        with open(os.path.join(directory, names[label], f"{i:04d}.png"), "wb") as f:
            f.write(png)
    return names


def write_recipe(path, body):
    """Write a recipe file from an indented string and return its path.

    Example:
        >>> write_recipe(tmp_path / "r.py", '''
        ...     backbone = dict(name="model.keras", weights=None)
        ... ''')
    """
    with open(path, "w") as f:
        f.write(textwrap.dedent(body).lstrip())
    return str(path)


def tiny_backbone(input_size=32, **kwargs):
    """`tiny_resnet` as a `tfft.backbones.Backbone` with the ResNet group rules.

    Example:
        >>> [g.name for g in layer_groups(tiny_backbone().model, rules=tiny_backbone().rules)]
        ['stem', 'conv2', 'conv3', 'conv4']
    """
    from tfft.backbones import Backbone
    from tfft.backbones.applications import FAMILY_RULES

    return Backbone(model=tiny_resnet(input_size, **kwargs), preprocess=None, rules=FAMILY_RULES["resnet"],
                    family="resnet", name="tiny_resnet")


class TinyTrainer(Trainer):
    """A `tfft.Trainer` on `tiny_backbone`, sized by `backbone.input_size`.

    Example:
        >>> recipe = Recipe().with_overrides(["data.path=/tmp/images", "backbone.input_size=32"])
        >>> TinyTrainer(recipe, out_dir="/tmp/run").run()
    """

    def build_backbone(self):
        return tiny_backbone(self.recipe.backbone.input_size)


def write_tone_folder(directory, frequencies=(500.0, 1200.0, 2500.0), per_class=8, sample_rate=8000, duration=0.5, seed=0):
    """Write a class-per-folder tree of 16-bit mono WAVs: class `i` is a noisy tone at
    `frequencies[i]` Hz with a random phase, level and onset.

    Returns:
        The class names, `["tone500", "tone1200", ...]`.

    Example:
        >>> write_tone_folder(tmp_path / "tones")
        ['tone500', 'tone1200', 'tone2500']
    """
    import wave

    rng = np.random.default_rng(seed)
    names = [f"tone{int(f)}" for f in frequencies]
    samples = int(sample_rate * duration)
    t = np.arange(samples) / sample_rate
    for name, frequency in zip(names, frequencies):
        os.makedirs(os.path.join(directory, name), exist_ok=True)
        for i in range(per_class):
            signal = rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
            signal[: int(rng.integers(0, samples // 4))] = 0.0
            signal += rng.normal(0, 0.02, samples)
            pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
            with wave.open(os.path.join(directory, name, f"{i:03d}.wav"), "wb") as f:
                f.setnchannels(1)
                f.setsampwidth(2)
                f.setframerate(sample_rate)
                f.writeframes(pcm.tobytes())
    return names


def array_datasets(x, y, x_val, y_val, class_names=None, batch_size=16, seed=0, holdout=None):
    """A `tfft.data.Datasets` over in-memory arrays, shuffled per epoch like the builders'.

    With `holdout`, a stratified fold of `(x, y)` replaces the validation arrays, which are
    then not used at all (as `data.holdout` does for the real builders).

    Example:
        >>> data = array_datasets(*gaussian_blobs(), batch_size=16)
        >>> data.steps_per_epoch
        8
    """
    from tfft.data.pipeline import finish_datasets, shuffle_epoch
    from tfft.data.sources import holdout_split

    if holdout is not None:
        fit, held = holdout_split(list(y), holdout, seed)
        x, y, x_val, y_val = x[fit], y[fit], x[held], y[held]
    examples = tf.data.Dataset.from_tensor_slices((x, y))

    def train_epoch(epoch, skip=0):
        ds = shuffle_epoch(examples, len(x), seed, epoch)
        return ds.skip(skip * batch_size).batch(batch_size)

    names = class_names or [f"class{i}" for i in range(int(np.max(y)) + 1)]
    validation = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(batch_size)
    return finish_datasets(train_epoch, validation, names, None, len(x), len(x_val), None, batch_size,
                           in_order=lambda: examples.batch(batch_size), shuffle=(len(x), seed))


def gaussian_blobs(num_classes=4, per_class=32, dims=8, spread=1.0, seed=0):
    """Points around one random centre per class: `(x, y, x_val, y_val)`, float32 and int32.

    Example:
        >>> x, y, x_val, y_val = gaussian_blobs()
        >>> x.shape, x_val.shape
        ((128, 8), (64, 8))
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0, size=(num_classes, dims))

    def draw(count):
        labels = np.repeat(np.arange(num_classes), count).astype("int32")
        points = centres[labels] + rng.normal(0.0, spread, size=(len(labels), dims))
        return points.astype("float32"), labels

    return (*draw(per_class), *draw(per_class // 2))


class BlobTrainer(Trainer):
    """A `tfft.Trainer` on `gaussian_blobs` with a two-group dense backbone: seconds per run.

    The backbone's groups are `low` and `high` (a Dense layer each), with BatchNorm in `low`.

    Example:
        >>> BlobTrainer(Recipe().with_overrides(["schedule.epochs=4"]), out_dir="/tmp/run").run()
    """

    blobs = dict(num_classes=4, per_class=32, dims=8, spread=1.0, seed=0)

    def build_backbone(self):
        from tfft.backbones import Backbone
        from tfft.freezing import GroupRules

        inputs = keras.Input((self.blobs["dims"],), name="points")
        x = keras.layers.Dense(32, name="low_dense")(inputs)
        x = keras.layers.BatchNormalization(name="low_bn")(x)
        x = keras.layers.Activation("relu", name="low_relu")(x)
        x = keras.layers.Dense(32, activation="relu", name="high_dense")(x)
        rules = GroupRules(patterns=((r"(low|high)_", r"\1"),))
        return Backbone(keras.Model(inputs, x, name="blob_mlp"), None, rules, "blob", "blob_mlp")

    def build_datasets(self):
        return array_datasets(*gaussian_blobs(**self.blobs), batch_size=self.recipe.data.batch_size,
                              seed=self.recipe.data.seed, holdout=self.recipe.data.holdout)


def write_tiny_bert(directory, texts, sequence_length=32, hidden=16, layers=2, seed=0):
    """Save a tiny random BERT (two layers, 16 wide) with a WordPiece vocabulary of the
    lowercased words of `texts` and of their characters (plain and `##`), as a keras-hub
    preset: a text encoder for tests, named by its folder (`backbone.name=DIRECTORY`).

    Returns:
        The folder.

    Example:
        >>> write_tiny_bert(tmp_path / "bert", ["Acme Ltd shall pay EUR 500."])
    """
    import keras_hub

    from tfft.modalities.text.contract_entities import words_of

    words = [word.lower() for text in texts for word, _, _ in words_of(text)]
    characters = sorted({c for word in words for c in word})
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(dict.fromkeys(
        sorted(set(words)) + characters + ["##" + c for c in characters]))
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), num_layers=layers, num_heads=2,
                                             hidden_dim=hidden, intermediate_dim=2 * hidden,
                                             max_sequence_length=max(64, sequence_length))
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    directory = str(directory)
    backbone.save_to_preset(directory)
    tokenizer.save_to_preset(directory)
    keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=sequence_length) \
        .save_to_preset(directory)
    return directory


def run_probabilities(run_dir, data):
    """`(examples, probabilities)` of a finished run's `model.keras` on labelled `data`
    through the run's own pipeline (what `tfft evaluate` scores): the reference an export
    must match. `examples` are the files (or texts) in the order of the rows."""
    from tfft.evaluate_run import labelled_datasets
    from tfft.model_file import read_metadata
    from tfft.recipe import recipe_from_run

    model_path = os.path.join(run_dir, "model.keras")
    datasets = labelled_datasets(recipe_from_run(run_dir), read_metadata(model_path) or {}, str(run_dir), data)
    logits = keras.models.load_model(model_path).predict(datasets.validation, verbose=0)
    return [example for example, _ in datasets.items["validation"]], tf.nn.softmax(logits).numpy()


def tflite_outputs(path, inputs):
    """The first output of the TFLite model at `path` on the batch `inputs`."""
    interpreter = tf.lite.Interpreter(model_path=str(path))
    entry = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(entry["index"], inputs.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(entry["index"], inputs)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def hparams_sessions(logdir):
    """What TensorBoard's hparams dashboard lists for `logdir`, read with its own plugin code:
    one `(hparams, metrics, sessions)` per session group, `metrics` keyed by `(group, tag)`
    and `sessions` as `(run, status)` pairs.

    Example:
        >>> [metrics[("", "final/accuracy")] for _, metrics, _ in hparams_sessions("runs/mri")]
        [0.91]
    """
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer,
                                                           data_provider=provider))
    statuses = [api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING]
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=1000, allowed_statuses=statuses)
    response = list_session_groups.Handler(context.RequestContext(), plugin, "", request).run()
    return [(dict(group.hparams.items()), {(m.name.group, m.name.tag): m.value for m in group.metric_values},
             [(session.name, session.status) for session in group.sessions]) for group in response.session_groups]
