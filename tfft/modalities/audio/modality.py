"""Recordings: class folders and CSV manifests of WAV files, cut to log-mel spectrograms;
tfft's `audio_cnn` and Keras applications on spectrograms; misclassified examples shown
as playable clips beside their spectrograms."""

import os

import numpy as np

from tfft.errors import BackboneError
from tfft.modalities import Modality
from tfft.modalities.audio.decode import COMPRESSED
from tfft.modalities.audio.keys import DEFAULT_AUGMENT, STRONG_AUGMENT
from tfft.modalities.image.modality import augment_candidates


class AudioModality(Modality):
    name = "audio"
    synthetic = "keywords"
    augment = DEFAULT_AUGMENT
    strong_augment = STRONG_AUGMENT
    takes_applications = True
    file_argument = "wav_bytes"
    extensions = (".wav",) + COMPRESSED
    tfds_feature = "Audio"
    per_class = None  # every voice, speed and pitch

    @staticmethod
    def features(config):
        """The `AudioFeatures` that an audio `data` section describes."""
        from tfft.modalities.audio.features import AudioFeatures

        return AudioFeatures(sample_rate=config.sample_rate, duration=config.duration, n_fft=config.n_fft,
                             hop_length=config.hop_length, n_mels=config.n_mels, f_min=config.f_min,
                             f_max=config.f_max)

    def backbone_options(self, recipe):
        return dict(spectrogram_shape=tuple(self.features(recipe.data).shape[:2]))

    def build_backbone(self, name, weights="pretrained", input_size=224, family=None, load_weights=True,
                       spectrogram_shape=None):
        from tfft.backbones import application_backbone, no_weights
        from tfft.modalities.audio import cnn

        if name == cnn.AUDIO_CNN:
            no_weights(name, weights)
            return cnn.build_audio_cnn(tuple(spectrogram_shape) + (1,))
        backbone = application_backbone(name, weights, tuple(spectrogram_shape), load_weights, family=family)
        backbone.preprocess = cnn.spectrogram_to_image(backbone.preprocess)
        return backbone

    def file_backbone(self, backbone, input_size=None, spectrogram_shape=None):
        """A `.keras` backbone must take this recipe's spectrograms: one channel, or three
        for an image CNN (fed as tfft feeds ImageNet CNNs)."""
        from tfft.modalities.audio import cnn

        expected = tuple(spectrogram_shape) if spectrogram_shape else None
        got = tuple(backbone.model.input_shape[1:3])
        if expected and got != expected:
            raise BackboneError(
                f"Backbone '{backbone.name}' takes spectrograms of {got[0]} frames x {got[1]} mels, but this recipe "
                f"makes {expected[0]} x {expected[1]}: use the sample_rate, duration, hop_length and n_mels it was "
                "trained with."
            )
        channels = backbone.model.input_shape[-1]
        if channels == 3:
            backbone.preprocess = cnn.spectrogram_to_image(backbone.preprocess)
        elif channels != 1:
            raise BackboneError(
                f"Backbone '{backbone.name}' takes {channels} input channels; spectrograms have 1 (or 3 for an "
                "image CNN)."
            )
        else:
            backbone.preprocess = None
        return backbone

    def datasets(self, config, backbone, input_size, dry_run=False, sources=None, statistics=None):
        from tfft.data.build import expand
        from tfft.modalities.audio.pipeline import audio_datasets

        return audio_datasets(
            path=expand(sources["path"]),
            manifest=expand(sources["manifest"]),
            validation_path=expand(sources["validation_path"]),
            validation_split=config.validation_split,
            sample_rate=config.sample_rate,
            duration=config.duration,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            f_min=config.f_min,
            f_max=config.f_max,
            normalize=config.normalize,
            augment=self.resolve_augment(config.augment),
            batch_size=config.batch_size,
            seed=config.seed,
            cache=expand(config.cache),
            class_weights=config.class_weights,
            verify=config.verify and not dry_run,
            preprocess=backbone.preprocess,
            holdout=config.holdout,
            on_error=config.on_error if not dry_run else "raise",
            statistics=statistics,
        )

    def collect_inputs(self, inputs, recipe=None, stdin=None):
        """WAV bytes for `serving_wav`, which decodes 16-bit PCM: such files as they are;
        other WAV encodings, FLAC, Ogg and MP3 decoded by the pipeline's reader and passed
        as 16-bit PCM at their own rate (resampled to the run's rate, or 16 kHz for an
        export, when theirs is none an export takes)."""
        import io

        import soundfile

        from tfft.modalities.audio.decode import read_audio, resample, wav_info
        from tfft.modalities.audio.serving import SAMPLE_RATES
        from tfft.predict import file_contents

        names, values = file_contents(inputs, self.extensions)
        target = recipe.data.sample_rate if recipe is not None else 16000
        for index, name in enumerate(names):
            if not name.lower().endswith(COMPRESSED):
                wav_info(name)  # a broken file is named here, in tfft's words
                if _serving_decodes(values[index], SAMPLE_RATES):
                    continue
            samples, rate = read_audio(name)
            mono = samples.mean(axis=1)
            if rate not in SAMPLE_RATES:
                mono, rate = resample(mono, rate, target), target
            buffer = io.BytesIO()
            soundfile.write(buffer, np.clip(mono, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
            values[index] = buffer.getvalue()
        return names, values

    def tfds_file(self, value, feature, stem):
        from tfft.data.tfds_files import write_audio

        return write_audio(value, feature, stem)

    def demo_set(self, config, input_size, verbose=0):
        from tfft.data.build import cache_dir, say_demo
        from tfft.modalities.audio.demo import KEYWORDS_A, make_keyword_set

        per_class = config.synthetic_per_class or self.per_class
        directory = os.path.join(
            cache_dir(), f"keywords_{config.sample_rate}hz_{config.duration:g}s_{per_class or 'all'}_seed{config.seed}")
        say_demo(verbose, self.synthetic, directory)
        return dict(path=make_keyword_set(directory, KEYWORDS_A, per_word=per_class, sample_rate=config.sample_rate,
                                          duration=config.duration, seed=config.seed))

    def unreadable(self, files):
        from tfft.modalities.audio.decode import find_unreadable

        return [path for path, _ in find_unreadable(files)]

    def log_misclassified(self, logger, tag, raw, labels, total, config):
        from tfft.callbacks.examples import misclassified_table

        features = self.features(config)
        clips = np.stack([np.asarray(x, "float32") for x in raw])
        logger.log_examples(tag, images=spectrogram_images(features.log_mel(clips)), audio=np.clip(clips, -1, 1),
                            sample_rate=features.sample_rate, text=misclassified_table(labels, total))

    def model_metadata(self, recipe, datasets):
        features = self.features(recipe.data)
        return dict(audio=dict(sample_rate=features.sample_rate, duration=features.duration, n_fft=features.n_fft,
                               hop_length=features.hop_length, n_mels=features.n_mels, f_min=features.f_min,
                               f_max=features.f_max, normalize=recipe.data.normalize))

    def serving(self, recipe, backbone, metadata):
        """The SavedModel takes float waveforms `[n, samples]` in [-1, 1] with their
        `sample_rate` (any of `SAMPLE_RATES`), and has a second signature `serving_wav` for
        WAV bytes (16-bit PCM, channels averaged); TFLite takes waveforms at the training
        rate. Each is cropped or padded, turned into log-mel spectrograms and normalised
        as the validation pipeline does, with the statistics saved in `model.keras`."""
        import tensorflow as tf

        from tfft.errors import TfftError
        from tfft.export import Serving
        from tfft.modalities.audio import serving

        features = self.features(recipe.data)
        statistics = (metadata or {}).get("statistics")
        if recipe.data.normalize == "dataset" and not statistics:
            raise TfftError("This model.keras holds no normalisation statistics (data.normalize='dataset'): "
                            "train it again with this version of tfft to export it.")
        spectrograms = serving.spectrogram_function(features, recipe.data.normalize, statistics, backbone.preprocess)
        target = features.sample_rate

        def from_waveforms(waveform, sample_rate):
            resampled = tf.map_fn(lambda w: serving.resample_to(w, sample_rate, target), waveform,
                                  fn_output_signature=tf.TensorSpec([None], tf.float32))
            return spectrograms(resampled)

        def from_wav(wav_bytes):
            def one(contents):
                audio, rate = tf.audio.decode_wav(contents)
                return spectrograms(serving.resample_to(tf.reduce_mean(audio, axis=-1), rate, target)[None])[0]

            return tf.map_fn(one, wav_bytes, fn_output_signature=tf.TensorSpec(features.shape, tf.float32))

        return Serving(
            signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                       tf.TensorSpec([], tf.int32, name="sample_rate")],
            features=from_waveforms,
            lite_signature=[tf.TensorSpec([None, features.samples], tf.float32, name="waveform")],
            lite_features=lambda waveform: spectrograms(waveform, crop=False),
            extra={"serving_wav": ([tf.TensorSpec([None], tf.string, name="wav_bytes")], from_wav)},
            file_features=from_wav,
            file_signature="serving_wav",
        )

    def tune_candidates(self, base):
        return augment_candidates(base)


def _serving_decodes(contents, rates):
    """Whether `serving_wav`'s decoder (`tf.audio.decode_wav`: plain 16-bit PCM, not the
    EXTENSIBLE header multichannel recorders write) reads `contents` at one of `rates`."""
    import tensorflow as tf

    try:
        return int(tf.audio.decode_wav(contents).sample_rate) in rates
    except tf.errors.InvalidArgumentError:
        return False


def spectrogram_images(spectrograms):
    """`[n, time, mels, 1]` log-mel spectrograms as images: time across, low frequencies at
    the bottom, each scaled to [0, 1]."""
    images = np.flip(np.transpose(np.asarray(spectrograms), (0, 2, 1, 3)), axis=1)
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    return (images - low) / np.maximum(high - low, 1e-6)
