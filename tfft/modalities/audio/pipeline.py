"""Audio classification datasets: WAV clips in, log-mel spectrograms out.

`audio_datasets` lists and splits the files (`tfft/data/sources.py`), checks every WAV
header, and builds `tf.data` pipelines that decode, mix to mono, resample, cache, crop or
pad to a fixed duration, augment (training only), and turn each batch into a log-mel
spectrogram shaped like a one-channel image, `[batch, time, n_mels, 1]`.

Decoding and resampling live in `tfft/modalities/audio/decode.py`, cropping, log-mel features and
normalisation in `tfft/modalities/audio/features.py`, and augmentation in
`tfft/modalities/audio/augment.py`. Their public names are importable from here as well, next to
`audio_datasets`, which assembles them into pipelines.
"""

import numbers

import tensorflow as tf

from tfft.data import sources
from tfft.modalities.audio.augment import DEFAULT_AUGMENT, AudioAugment, build_audio_augment
from tfft.modalities.audio.features import (
    AudioFeatures,
    _dataset_statistics,
    crop_or_pad,
    log_mel,
    normalized_log_mel,
    statistics_tensors,
)
from tfft.data.checks import (
    check_cache,
    check_path_or_manifest,
    check_preprocess,
    check_validation_split,
    positive_int,
)
from tfft.data.pipeline import cache_dataset, shuffle_epoch, example_seeds, filled, finish_datasets, fingerprint, listing
from tfft.modalities.audio.decode import (
    COMPRESSED, WavInfo, audio_info, find_unreadable, load_audio, read_audio, read_wav, resample, wav_info,
)
from tfft.errors import DataError

__all__ = [
    "AUDIO_EXTENSIONS",
    "COMPRESSED",
    "DEFAULT_AUGMENT",
    "AudioAugment",
    "AudioFeatures",
    "WavInfo",
    "audio_datasets",
    "audio_info",
    "build_audio_augment",
    "crop_or_pad",
    "find_unreadable",
    "load_audio",
    "log_mel",
    "read_audio",
    "read_wav",
    "resample",
    "wav_info",
]

AUDIO_EXTENSIONS = (".wav",) + COMPRESSED


# --- pipelines -------------------------------------------------------------------------


def _load(ds, sample_rate):
    def decode(path):
        return load_audio(path.decode("utf-8"), sample_rate)

    def load(path, label):
        waveform = tf.numpy_function(decode, [path], tf.float32, stateful=False)
        waveform.set_shape([None])
        return waveform, label

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def _cache(ds, cache, split, paths, labels, sample_rate):
    # A file cache's name carries a fingerprint of the files, labels and rate, so changing
    # any of them starts a new cache.
    return cache_dataset(
        ds, cache, f"audio-{split}", lambda: fingerprint((paths, labels, sample_rate))
    )


def _check_arguments(
    path, manifest, validation_path, validation_split, normalize, cache, preprocess, seed
):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"seed must be an int >= 0. Received: seed={seed!r}")
    check_path_or_manifest(path, manifest)
    if validation_path is None:
        check_validation_split(validation_split)
    if normalize not in ("example", "dataset", None):
        raise DataError(
            "normalize must be 'example' (each spectrogram to mean 0, std 1), 'dataset' "
            "(per mel band, statistics of the training split) or None. "
            f"Received: normalize={normalize!r}"
        )
    check_cache(cache)
    check_preprocess(preprocess)


def audio_datasets(
    path=None,
    manifest=None,
    validation_path=None,
    validation_split=0.2,
    sample_rate=16000,
    duration=1.0,
    n_fft=512,
    hop_length=160,
    n_mels=64,
    f_min=20.0,
    f_max=None,
    normalize="example",
    augment=None,
    batch_size=32,
    seed=0,
    cache=True,
    class_weights=None,
    verify=True,
    preprocess=None,
    shuffle_buffer=10000,
    holdout=None,
    on_error="raise",
    statistics=None,
):
    """Build training and validation datasets of log-mel spectrograms from WAV clips.

    The clips come from a class-per-folder tree (`path`) or a CSV manifest (`manifest`)
    and are split per class unless `validation_path` gives a separate tree. Each clip is
    mixed to mono, resampled to `sample_rate` and cached; then cut or zero-padded to
    `duration` (a random window for training, the centre for validation), turned into a
    log-mel spectrogram `[batch, frames, n_mels, 1]` and normalised. Training clips are
    shuffled every epoch and augmented; validation is never augmented and keeps its order.

    Args:
        path: folder holding one sub-folder of recordings per class (`.wav`, `.flac`,
            `.ogg`, `.opus`, `.mp3`).
        manifest: CSV with `path,label` columns; give exactly one of `path` and `manifest`.
        validation_path: optional class-per-folder tree used as the validation split.
        validation_split: share of each class held out for validation.
        sample_rate, duration, n_fft, hop_length, n_mels, f_min, f_max: the feature
            settings; see `AudioFeatures`.
        normalize: `"example"` scales each spectrogram to mean 0 and std 1; `"dataset"`
            scales each mel band with the mean and std of the training split (centre
            crops, before augmentation, computed once); None keeps raw log-mel values.
        statistics: with `normalize="dataset"`, the per-band `mean` and `std` to use instead
            of computing them (those a trained model was normalised with:
            `Datasets.statistics`, saved in its `model.keras`).
        augment: None, True or a dict with keys of `DEFAULT_AUGMENT`, e.g.
            `dict(time_mask=2, time_mask_width=10, noise_snr_db=20, gain_db=6)` (no noise by default); see
            `AudioAugment`. Masked bins are set to 0, the mean after normalisation.
        batch_size: examples per batch.
        seed: seed for the split, the shuffle, the crops and the augmentation.
        cache: True caches decoded mono waveforms in memory; a string caches them in
            files with that path prefix; False decodes every epoch.
        class_weights: None, `"balanced"` or a dict `{class: weight}`.
        verify: read every file's header first and raise one `DataError` naming the first
            bad file; turn off only for data known to be clean.
        holdout: None, or a share of each class of the training split that replaces the
            validation split, which is then not read at all (see `sources.split_files`).
        on_error: `"raise"` at the first file that cannot be read, or `"skip"`: check every
            file first and leave out the bad ones (`Datasets.skipped` lists them).
        preprocess: callable applied last to each spectrogram batch, e.g. to repeat the
            channel three times for an ImageNet backbone.
        shuffle_buffer: upper bound on the shuffle buffer, in clips.

    Returns:
        A `Datasets` whose `validation_examples` holds unbatched `(waveform, label)` pairs:
        float32 `[samples]` at `sample_rate`, centre-cropped, in validation order.

    Raises:
        DataError: for bad arguments, a missing or empty folder, fewer than two classes,
            mismatched validation classes, or unreadable WAV files.

    Example:
        >>> data = audio_datasets("data/keywords", augment=dict(time_mask=2, gain_db=6))
        >>> data.train.element_spec[0].shape
        TensorShape([None, 97, 64, 1])
    """
    _check_arguments(
        path, manifest, validation_path, validation_split, normalize, cache, preprocess,
        seed,
    )
    sources.check_on_error(on_error)
    features = AudioFeatures(sample_rate, duration, n_fft, hop_length, n_mels, f_min, f_max)
    batch_size = positive_int("batch_size", batch_size)
    shuffle_buffer = positive_int("shuffle_buffer", shuffle_buffer)
    seed = int(seed)
    augmenter = build_audio_augment(augment, features)

    split = sources.split_files(
        path, manifest, validation_path, validation_split, seed, AUDIO_EXTENSIONS, holdout
    )
    train_paths, train_labels, val_paths, val_labels, class_names, source = split[:6]
    everything = split.all_paths
    skipped = []
    if verify or on_error == "skip":
        # Listing order, so "first" means the same file a user would find first.
        bad = find_unreadable(everything)
        if bad and on_error == "raise":
            raise DataError(
                f"{len(bad)} of {len(everything)} audio files cannot be read, first: "
                f"{bad[0][1]} Fix or delete them, pass on_error='skip' to train without them, "
                f"or verify=False to skip this check. Received: {source}"
            )
        if bad:
            skipped = [(path, str(error)) for path, error in bad]
            split = sources.drop_files(split, {path for path, _ in bad})
            train_paths, train_labels, val_paths, val_labels = split[:4]
            missing = sorted(set(class_names) - {class_names[label] for label in train_labels})
            if missing:
                raise DataError(f"After leaving out the files that cannot be read, classes {missing} have no "
                                f"training example left. Received: {source}")
    weights = sources.class_weights(
        train_labels, len(class_names), class_weights, class_names=class_names
    )

    length = features.samples
    train_waves = _cache(
        _load(listing(train_paths, train_labels), sample_rate),
        cache, "train", train_paths, train_labels, sample_rate,
    )
    val_decoded = _load(listing(val_paths, val_labels), sample_rate)
    val_waves = _cache(val_decoded, cache, "validation", val_paths, val_labels, sample_rate)

    if normalize == "dataset":
        # This pass also fills the training cache, so the first epoch reads from it.
        centred = train_waves.map(
            lambda x, y: crop_or_pad(x, length), num_parallel_calls=tf.data.AUTOTUNE
        )
        if statistics is not None:
            mean, std = statistics_tensors(statistics, features.n_mels)
        else:
            mean, std = _dataset_statistics(centred, features, batch_size)

    if normalize != "dataset":
        mean = std = None

    def to_features(waveforms, labels, time_keep=None, freq_keep=None):
        spectrogram = normalized_log_mel(waveforms, features, normalize, mean, std)
        if time_keep is not None:
            spectrogram = spectrogram * time_keep[:, :, None, None]
            spectrogram = spectrogram * freq_keep[:, None, :, None]
        if preprocess is not None:
            spectrogram = preprocess(spectrogram)
        return spectrogram, labels

    def train_example(example, example_seed):
        waveform, label = example
        waveform = crop_or_pad(waveform, length, seed=example_seed)
        if augmenter is None:
            return waveform, label
        waveform = augmenter.waveform(waveform, example_seed)
        if not augmenter.masks:
            return waveform, label
        time_keep, freq_keep = augmenter.mask_keep(
            example_seed, features.frames, features.n_mels
        )
        return waveform, label, time_keep, freq_keep

    # Shuffle after the cache: a cache fed in shuffled order would freeze the first
    # epoch's order. Every example gets its own seed from its place in the stream
    # (`example_seeds`); stateless ops then make crops and augmentation reproducible, with
    # parallel calls and from any starting batch.
    buffer = min(shuffle_buffer, len(train_paths))

    def train_epoch(epoch, skip=0):
        ds = shuffle_epoch(train_waves, buffer, seed, epoch)
        ds = ds.skip(skip * batch_size)
        ds = tf.data.Dataset.zip(ds, example_seeds(seed, epoch, skip * batch_size))
        ds = ds.map(train_example, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size).map(to_features, num_parallel_calls=tf.data.AUTOTUNE)

    val_cropped = val_waves.map(
        lambda x, y: (crop_or_pad(x, length), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    validation = val_cropped.batch(batch_size).map(
        to_features, num_parallel_calls=tf.data.AUTOTUNE
    )
    # A memory cache can be shared; a file cache cannot be read by two iterators while
    # it is being written, so the examples then decode on their own.
    if cache is True:
        validation_examples = val_cropped
    else:
        validation_examples = val_decoded.map(
            lambda x, y: (crop_or_pad(x, length), y), num_parallel_calls=tf.data.AUTOTUNE
        )

    datasets = finish_datasets(
        train_epoch, validation, class_names, weights, len(train_paths), len(val_paths),
        validation_examples, batch_size, prime=filled(cache, train_waves, len(train_paths)), skipped=skipped,
        items=dict(train=list(zip(train_paths, train_labels)), validation=list(zip(val_paths, val_labels))),
    )
    if normalize == "dataset":
        datasets.statistics = dict(mean=mean.numpy().reshape(-1).tolist(), std=std.numpy().reshape(-1).tolist())
    return datasets
