"""One package per modality: what images, texts and recordings each add to tfft.

A modality is a `Modality` subclass in its package (`tfft/modalities/image/modality.py`,
...) with the `data` keys only it reads (a dataclass in its `keys.py`), its readers and
pipeline, its built-in demo set, its backbones and how its misclassified examples look in
TensorBoard. Nothing outside these packages branches on `data.kind`: the rest of tfft asks
`get(kind)`. A new modality is a new package and one line in `MODALITIES`.

Example:
    >>> import dataclasses
    >>> from tfft import modalities
    >>> modalities.get("audio").synthetic
    'keywords'
    >>> [field.name for field in dataclasses.fields(modalities.keys_of("image"))]
    ['image_size']
"""

import dataclasses
import importlib

from tfft.errors import DataError

# kind -> "module:class". Modules are imported on first use, so `import tfft` stays light.
MODALITIES = {
    "image": "tfft.modalities.image.modality:ImageModality",
    "text": "tfft.modalities.text.modality:TextModality",
    "audio": "tfft.modalities.audio.modality:AudioModality",
}
KINDS = tuple(MODALITIES)

_loaded = {}


class Modality:
    """What one modality brings. Subclasses set the attributes and implement the methods.

    Attributes:
        name: the `data.kind` value.
        sources: the `data` keys that name a data source this modality reads.
        synthetic: the name of its built-in demo set (`data.synthetic`); a modality
            with several lists them all in `synthetic_sets`.
        augment: its default training augmentation (`data.augment=None`).
        strong_augment: its `data.augment="strong"` preset, or None if it has none.
        takes_applications: whether Keras applications serve as its backbones (then
            `--demo` may swap ImageNet weights for random ones when they are not on disk).
        file_argument: the name of the exported signature's input that takes file
            contents (`image_bytes`, `wav_bytes`, `text`).
        extensions: the file suffixes of its files, for folders given to `tfft predict`.
        tfds_feature: the TFDS feature class its files come from (`"Image"`, `"Audio"`):
            a `data.tfds` source is written as class folders (`tfft.data.tfds_files`)
            with `tfds_file`; None when the modality reads TFDS itself, or not at all.
        pairs_up_to: training examples per class up to which `schedule.pairs="auto"`
            starts with a pairs stage (`tfft.pairs`); 0: never (not measured to help).
    """

    name = None
    file_argument = None
    extensions = ()
    sources = ("path", "manifest", "tfds")
    tfds_feature = None
    synthetic = None
    augment = {}
    strong_augment = None
    takes_applications = False
    pairs_up_to = 0

    def task(self, config):
        """What a model of this modality predicts per example (`tfft.tasks`): one class
        (or, multi-label, any number of classes) per example."""
        from tfft import tasks

        return tasks.get("classify")

    def source_keys(self, config):
        """The `data` keys that name a source for `config`'s task (default `sources`)."""
        return self.sources

    def synthetic_sets(self, config):
        """The names `data.synthetic` takes for `config`'s task: its built-in demo sets."""
        return (self.synthetic,)

    def backbone_options(self, recipe):
        """What `build_backbone` and `file_backbone` take besides the `backbone` keys, from
        the rest of the recipe (e.g. the spectrogram shape for audio)."""
        return {}

    def build_backbone(self, name, weights="pretrained", input_size=224, family=None, load_weights=True, **options):
        """Return the `Backbone` named `name` (not a file) for this modality."""
        raise NotImplementedError

    def file_backbone(self, backbone, input_size=None, **options):
        """Check (and adapt) a backbone loaded from a `.keras` file for this modality;
        `input_size` is `backbone.input_size` of the recipe."""
        return backbone

    def datasets(self, config, backbone, input_size, dry_run=False, sources=None, statistics=None):
        """Return the `Datasets` that `config` (the `data` section) describes.

        Args:
            config: the recipe's `data` section.
            backbone: the built `Backbone`; its `preprocess` runs in the pipeline.
            input_size: `backbone.input_size` of the recipe.
            dry_run: list the data without decoding every file.
            sources: the data sources to read, `{"path": ..., "manifest": ...,
                "validation_path": ...}` after the demo set filled them in.
            statistics: `Datasets.statistics` of a trained model, to use instead of
                computing them from this training split (`tfft evaluate`).
        """
        raise NotImplementedError

    def demo_set(self, config, input_size, verbose=0):
        """Write (or find in the cache) the built-in demo set `config.synthetic`; return the
        source keys it fills, e.g. `{"path": DIRECTORY}`."""
        raise NotImplementedError

    def log_misclassified(self, logger, tag, raw, labels, total, config):
        """Write misclassified validation examples under `tag` (see
        `tfft.callbacks.examples`)."""
        raise NotImplementedError

    def collect_inputs(self, inputs, recipe=None, stdin=None):
        """`(names, values)` of what `tfft predict` was given: by default the contents of
        the files and of the folders' files with `extensions`."""
        from tfft.predict import file_contents

        return file_contents(inputs, self.extensions)

    def tfds_file(self, value, feature, stem):
        """Write one TFDS example's `value` (of the TFDS `feature`) to `stem` plus an
        extension this modality reads; return the path."""
        raise NotImplementedError

    def tfds_sources(self, config, verbose=0):
        """The folder sources of `data.tfds` (written once in the cache)."""
        from tfft.data.tfds_files import tfds_folders

        if config.path is not None or config.manifest is not None:
            given = [f"data.{key}" for key in ("path", "manifest", "tfds") if getattr(config, key) is not None]
            raise DataError(f"Give one data source: data.path, data.manifest or data.tfds. Received: {', '.join(given)}")
        if not isinstance(config.tfds_split, (list, tuple)) or len(config.tfds_split) != 2:
            raise DataError(f"data.tfds_split is [train_split, validation_split] (None: split the training data). "
                            f"Received: data.tfds_split={config.tfds_split!r}")
        folders = tfds_folders(config.tfds, tuple(config.tfds_split), self.tfds_feature, self.tfds_file, verbose)
        return dict(path=folders["path"], validation_path=config.validation_path or folders["validation_path"])

    def labelled_tfds(self, name, split):
        """The sources that put every example of the TFDS split into the validation
        split (`tfft evaluate --data tfds:NAME:SPLIT`)."""
        from tfft.data.tfds_files import tfds_folders

        if self.tfds_feature is None:
            raise DataError(f"tfft evaluate does not read TFDS data for {self.name} runs. Received: tfds:{name}:{split}")
        folder = tfds_folders(name, (split, None), self.tfds_feature, self.tfds_file, key="--data")["path"]
        return dict(path=folder, validation_path=folder)

    def unreadable(self, files):
        """The files among `files` this modality cannot read, in order (to name the file
        behind an error in the middle of an epoch)."""
        return []

    def labelled_source(self, path, given):
        """The `data` source key a labelled data set at `path` goes to (`tfft evaluate`):
        a class-per-folder tree or a CSV manifest; `given` is the path as the user wrote
        it, for the error."""
        import os

        if os.path.isdir(path):
            return dict(path=path)
        if path.lower().endswith(".csv"):
            return dict(manifest=path)
        raise DataError(f"tfft evaluate reads a class-per-folder tree or a CSV manifest for {self.name} data. "
                        f"Received: {given}")

    def model_metadata(self, recipe, datasets):
        """What this modality adds to `model.keras`'s `tfft.json`: what turns a raw input
        into the model's input (feature settings, statistics of the training split)."""
        return {}

    def save_preprocessing(self, backbone, directory):
        """Write into `directory` the files `model.keras` must carry, beside `tfft.json`, to
        turn raw inputs into the model's inputs (they go under `tfft/` in the archive):
        none by default."""

    def stored_preprocessing(self, model_path, **options):
        """The preprocessing the `.keras` file at `model_path` carries (what
        `save_preprocessing` wrote), or None; `options` as `backbone_options` gives them."""
        return None

    def serving(self, recipe, backbone, metadata):
        """How an exported model takes raw inputs: a `Serving` (see `tfft.export`), or
        None when this modality cannot be exported yet. `metadata` is the `tfft.json`."""
        return None

    def tune_candidates(self, base):
        """Candidates of `schedule.kind="auto"` that only this modality has, as
        `(name, overrides, why)` tuples on top of the `base` overrides."""
        return []

    def resolve_augment(self, augment):
        """`data.augment` as the pipeline takes it: None is the default, `"strong"` the
        strong preset, a dict itself."""
        if augment is None:
            return dict(self.augment)
        if isinstance(augment, str):
            if augment != "strong" or self.strong_augment is None:
                raise DataError(f"data.augment takes None, a dict of steps or 'strong' (images and audio). "
                                f"Received: data.augment={augment!r}")
            return dict(self.strong_augment)
        return augment


def get(kind):
    """The `Modality` of `data.kind`; an unknown kind is a `DataError` naming the key."""
    if kind not in MODALITIES:
        raise DataError(f"Unknown data kind. Expected one of {list(KINDS)}. Received: data.kind={kind!r}")
    if kind not in _loaded:
        module, name = MODALITIES[kind].split(":")
        _loaded[kind] = getattr(importlib.import_module(module), name)()
    return _loaded[kind]


def keys_of(kind):
    """The dataclass of the `data` keys only `kind` reads (light: no TensorFlow import)."""
    return importlib.import_module(MODALITIES[kind].split(":")[0].rsplit(".", 1)[0] + ".keys").KEYS


def readers_of(key):
    """The modalities that read the modality-specific `data` key `key` (empty if none does)."""
    return [kind for kind in KINDS if key in {field.name for field in dataclasses.fields(keys_of(kind))}]
