"""Build a run's datasets from the recipe's `data` section, for every modality."""

import dataclasses
import os
import re

from tfft.errors import DataError

KINDS = ("image", "text", "audio")
SYNTHETIC = {"image": "mri", "text": "tickets", "audio": "keywords"}
PER_CLASS = {"image": 150, "text": 32, "audio": None}  # None: every voice, speed and pitch
IMAGE_AUGMENT = dict(flip=True, rotation=0.05, zoom=0.1, contrast=0.1)
# `data.augment="strong"`: for few examples per class, where a model sees each one many times.
STRONG_AUGMENT = {
    "image": dict(flip=True, rotation=0.1, zoom=0.2, translation=0.1, contrast=0.2, rand_augment=2),
    "audio": dict(time_mask=3, time_mask_width=15, freq_mask=3, freq_mask_width=12, shift=0.2, gain_db=9),
}


def cache_dir():
    """Where tfft keeps generated data: `$TFFT_CACHE`, else `~/.cache/tfft`."""
    return os.path.expanduser(os.environ.get("TFFT_CACHE", os.path.join("~", ".cache", "tfft")))


def expand(path):
    return os.path.expanduser(path) if isinstance(path, str) else path


def resolve_augment(kind, augment):
    """`data.augment` as the builders take it: None is the modality's default, `"strong"`
    its strong preset (`STRONG_AUGMENT`), a dict itself."""
    if augment is None:
        return default_augment(kind)
    if isinstance(augment, str):
        if augment != "strong" or kind not in STRONG_AUGMENT:
            raise DataError(f"data.augment takes None, a dict of steps or 'strong' (images and audio). "
                            f"Received: data.augment={augment!r}")
        return dict(STRONG_AUGMENT[kind])
    return augment


def default_augment(kind):
    """The augmentation a modality gets when `data.augment` is None."""
    if kind == "audio":
        from tfft.modalities.audio.pipeline import DEFAULT_AUGMENT

        return dict(DEFAULT_AUGMENT)
    return dict(IMAGE_AUGMENT) if kind == "image" else {}


def audio_features(config):
    """The `AudioFeatures` an audio `DataConfig` describes."""
    from tfft.modalities.audio.pipeline import AudioFeatures

    return AudioFeatures(sample_rate=config.sample_rate, duration=config.duration, n_fft=config.n_fft,
                         hop_length=config.hop_length, n_mels=config.n_mels, f_min=config.f_min, f_max=config.f_max)


def datasets_from_recipe(config, backbone, input_size, dry_run=False, verbose=0):
    """Return the `Datasets` that `config` (a `DataConfig`) describes; errors name recipe keys.

    Args:
        config: the recipe's `data` section.
        backbone: the built `Backbone`: its `preprocess` runs in the pipeline.
        input_size: the backbone's input size (images).
        dry_run: list the data without decoding every file.
        verbose: say where generated data comes from.
    """
    try:
        return _datasets(config, backbone, input_size, dry_run, verbose)
    except DataError as error:
        raise DataError(recipe_keys(str(error))) from None


# Builder arguments that are `data.` keys under the same name, and the few that are not.
_RENAMED = {"csv": "manifest", "image_size": "image_size"}


def recipe_keys(message):
    """A builder's message with its argument names as a recipe writes them: `verify=False`
    becomes `--set data.verify=false`, `text_column='x'` becomes `data.text_column='x'`.

    Example:
        >>> recipe_keys("pass verify=False to skip this check. Received: label_column='y'")
        "pass --set data.verify=false to skip this check. Received: data.label_column='y'"
    """
    from tfft.recipe import DataConfig

    message = re.sub(r"\b(?:pass|or) (verify|on_error)=(False|'skip')",
                     lambda m: ("pass " if m.group(0).startswith("pass") else "or ")
                     + f"--set data.{m.group(1)}={'false' if m.group(2) == 'False' else 'skip'}", message)
    fields = "|".join(sorted({f.name for f in dataclasses.fields(DataConfig)} | set(_RENAMED), key=len, reverse=True))
    return re.sub(rf"(?<![\w.-])({fields})=", lambda m: f"data.{_RENAMED.get(m.group(1), m.group(1))}=", message)


def _datasets(config, backbone, input_size, dry_run, verbose):
    if config.kind not in KINDS:
        raise DataError(f"Unknown data kind. Expected one of {list(KINDS)}. Received: data.kind={config.kind!r}")
    sources = [config.path, config.manifest] + ([config.jsonl, config.tfds] if config.kind == "text" else [])
    path, manifest, validation_path = config.path, config.manifest, config.validation_path
    if all(source is None for source in sources):
        generated = _synthetic(config, input_size, verbose)
        if config.kind != "text":
            path = generated
        else:
            # The tickets' test split uses partly different phrasings: it is the validation.
            manifest = os.path.join(generated, "tickets.csv")
            validation_path = validation_path or os.path.join(generated, "tickets_test.csv")
    if config.kind != "text":
        _text_only(config)
    if config.kind == "audio":
        from tfft.modalities.audio.pipeline import audio_datasets

        return audio_datasets(
            path=expand(path),
            manifest=expand(manifest),
            validation_path=expand(validation_path),
            validation_split=config.validation_split,
            sample_rate=config.sample_rate,
            duration=config.duration,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            f_min=config.f_min,
            f_max=config.f_max,
            normalize=config.normalize,
            augment=resolve_augment("audio", config.augment),
            batch_size=config.batch_size,
            seed=config.seed,
            cache=expand(config.cache),
            class_weights=config.class_weights,
            verify=config.verify and not dry_run,
            preprocess=backbone.preprocess,
            holdout=config.holdout,
            on_error=config.on_error if not dry_run else "raise",
        )
    if config.kind == "image":
        from tfft.modalities.image.pipeline import image_datasets

        return image_datasets(
            path=expand(path),
            manifest=expand(manifest),
            validation_path=expand(validation_path),
            validation_split=config.validation_split,
            image_size=config.image_size or input_size,
            batch_size=config.batch_size,
            seed=config.seed,
            augment=resolve_augment("image", config.augment),
            preprocess=backbone.preprocess,
            cache=expand(config.cache),
            class_weights=config.class_weights,
            verify=config.verify and not dry_run,
            holdout=config.holdout,
            on_error=config.on_error if not dry_run else "raise",
        )
    from tfft.modalities.text.pipeline import text_datasets

    if config.augment:
        raise DataError(f"Text data has no augmentation: leave data.augment unset. Received: data.augment={config.augment!r}")
    return text_datasets(
        path=expand(path),
        csv=expand(manifest),
        jsonl=expand(config.jsonl),
        tfds=config.tfds,
        text_column=config.text_column,
        label_column=config.label_column,
        label_delimiter=config.label_delimiter,
        multi_label=config.multi_label,
        validation_path=expand(validation_path),
        validation_split=config.validation_split,
        tfds_split=tuple(config.tfds_split),
        batch_size=config.batch_size,
        seed=config.seed,
        preprocess=backbone.preprocess,
        class_weights=config.class_weights,
        cache=expand(config.cache),
        holdout=config.holdout,
        on_error=config.on_error,
    )


def _text_only(config):
    text_keys = {"jsonl": config.jsonl, "tfds": config.tfds, "multi_label": config.multi_label or None}
    given = [key for key, value in text_keys.items() if value is not None]
    if given:
        raise DataError(f"data.{given[0]} applies to text data only. Received: data.kind={config.kind!r}")


def _synthetic(config, input_size, verbose):
    expected = SYNTHETIC[config.kind]
    if config.synthetic is None:
        where = "data.path=DIR (or data.manifest=FILE.csv)" if config.kind == "image" else \
            "data.path=DIR, data.manifest=FILE.csv, data.jsonl=FILE or data.tfds=NAME"
        raise DataError(f"No {config.kind} data given: set {where}. Received: data.path=None")
    if config.synthetic != expected:
        raise DataError(
            f"Unknown synthetic data set for {config.kind} data: the built-in one is '{expected}'. "
            f"Received: data.synthetic={config.synthetic!r}"
        )
    per_class = config.synthetic_per_class or PER_CLASS[config.kind]
    if config.kind == "image":
        from tfft.modalities.image.demo import make_synthetic_mri

        size = max(64, config.image_size or input_size)
        directory = os.path.join(cache_dir(), f"synthetic_mri_{size}px_{per_class}_seed{config.seed}")
        _say(verbose, expected, directory)
        return make_synthetic_mri(directory, per_class=per_class, image_size=size, seed=config.seed)
    if config.kind == "audio":
        from tfft.modalities.audio.demo import KEYWORDS_A, make_keyword_set

        directory = os.path.join(
            cache_dir(), f"keywords_{config.sample_rate}hz_{config.duration:g}s_{per_class or 'all'}_seed{config.seed}")
        _say(verbose, expected, directory)
        return make_keyword_set(directory, KEYWORDS_A, per_word=per_class, sample_rate=config.sample_rate,
                                duration=config.duration, seed=config.seed)
    from tfft.modalities.text.demo import make_support_tickets

    directory = os.path.join(cache_dir(), f"support_tickets_{per_class}_seed{config.seed}")
    _say(verbose, expected, directory)
    return make_support_tickets(directory, per_class=per_class, seed=config.seed)


def _say(verbose, name, directory):
    if verbose:
        print(f"no data given: using the built-in synthetic '{name}' set in {directory}", flush=True)
