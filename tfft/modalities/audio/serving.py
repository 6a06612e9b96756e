"""Audio as an exported model takes it: waveforms at any supported sample rate, or WAV
bytes, turned into the normalised log-mel spectrograms of the run's validation pipeline.

Resampling runs in TensorFlow with the very polyphase filters of `decode.resample` (the
same taps and alignment as `scipy.signal.resample_poly`), so a clip at 44.1 kHz reaches
the model as it would have in training.
"""

import math

import numpy as np
import tensorflow as tf

from tfft.modalities.audio.decode import _resampling_filter
from tfft.modalities.audio.features import crop_or_pad, normalized_log_mel, statistics_tensors

# The rates an exported model resamples from; any other is an error naming them.
SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)


def polyphase_resample(waveform, up, down, taps):
    """`scipy.signal.resample_poly(waveform, up, down, window=taps)` for one `[samples]`
    float32 tensor: the zero-stuffed, filtered, decimated signal, computed only at the
    output samples (each a dot product of the input with one phase of the filter)."""
    taps = np.asarray(taps, np.float64) * up
    half_len = (len(taps) - 1) // 2
    pre_pad = down - half_len % down
    h = np.concatenate([np.zeros(pre_pad), taps])
    pre_remove = (half_len + pre_pad) // down
    per_phase = math.ceil(len(h) / up)
    h = tf.constant(np.pad(h, (0, per_phase * up - len(h))), tf.float32)
    n_in = tf.shape(waveform)[0]
    n_out = (n_in * up + down - 1) // down
    position = (tf.range(n_out) + pre_remove) * down
    j = tf.range(per_phase)
    weights = tf.gather(h, (position % up)[:, None] + j[None, :] * up)
    index = (position // up)[:, None] - j[None, :]
    inside = tf.cast((index >= 0) & (index < n_in), tf.float32)
    samples = tf.gather(waveform, tf.clip_by_value(index, 0, n_in - 1))
    return tf.reduce_sum(samples * weights * inside, axis=-1)


def resample_to(waveform, rate, target):
    """Resample one `[samples]` waveform from the scalar tensor `rate` to `target` Hz;
    `rate` must be one of `SAMPLE_RATES` (or `target`)."""
    rates = sorted(set(SAMPLE_RATES) | {int(target)})
    branches = []
    for source in rates:
        if source == target:
            branches.append(lambda: tf.identity(waveform))
        else:
            up, down, taps = _resampling_filter(source, int(target))
            branches.append(lambda up=up, down=down, taps=taps: polyphase_resample(waveform, up, down, taps))
    matches = tf.where(tf.equal(tf.constant(rates, tf.int32), tf.cast(rate, tf.int32)))[:, 0]
    check = tf.debugging.assert_equal(tf.size(matches), 1, message=f"sample_rate must be one of {rates}")
    with tf.control_dependencies([check]):
        return tf.switch_case(tf.cast(tf.reduce_min(matches), tf.int32), branches)


def spectrogram_function(features, normalize, statistics, preprocess):
    """`[batch, samples]` waveforms at `features.sample_rate` -> the model's inputs, as the
    validation pipeline makes them: centred crop or pad, log-mel, normalisation, the
    backbone's preprocessing. `crop=False` takes clips of exactly `features.samples`."""
    mean, std = statistics_tensors(statistics, features.n_mels) if normalize == "dataset" else (None, None)

    def spectrograms(waveforms, crop=True):
        if crop:
            waveforms = tf.map_fn(lambda w: crop_or_pad(w, features.samples), waveforms,
                                  fn_output_signature=tf.TensorSpec([features.samples], tf.float32))
        spectrogram = normalized_log_mel(waveforms, features, normalize, mean, std)
        return preprocess(spectrogram) if preprocess is not None else spectrogram

    return spectrograms
