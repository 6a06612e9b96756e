"""The `data` keys only audio recipes read."""

import dataclasses
from typing import Optional


# The augmentation `augment=True` stands for; also the full list of valid `augment` keys.
# No added noise by default: white noise on clean recordings teaches a mismatch with clean
# test clips (on the real few-shot words of bench/transfer_real.py, seed 0, test accuracy
# 0.86 with 20 dB noise, 0.91 without). Give `noise_snr_db` for noisy deployments.
DEFAULT_AUGMENT = dict(
    time_mask=2,
    time_mask_width=10,
    freq_mask=2,
    freq_mask_width=8,
    noise_snr_db=None,
    shift=0.1,
    gain_db=6,
)
# `data.augment="strong"`: for few examples per class, seen many times.
STRONG_AUGMENT = dict(time_mask=3, time_mask_width=15, freq_mask=3, freq_mask_width=12, shift=0.2, gain_db=9)


@dataclasses.dataclass
class AudioKeys:
    """Audio keys of the `data` section.

    Args:
        sample_rate: clips are mixed to mono and resampled to this rate (Hz).
        duration: clips are cropped (at random for training, centred otherwise) or
            zero-padded to this many seconds.
        n_fft: STFT window and FFT length, in samples.
        hop_length: STFT hop, in samples.
        n_mels: mel bands of the log-mel spectrogram.
        f_min: lowest mel frequency (Hz).
        f_max: highest mel frequency (Hz); None is half the sample rate.
        normalize: `"example"` (each spectrogram to mean 0, std 1), `"dataset"` (per mel
            band, statistics of the training split, saved with the model) or None.
    """

    sample_rate: int = 16000
    duration: float = 1.0
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 20.0
    f_max: Optional[float] = None
    normalize: Optional[str] = "example"


KEYS = AudioKeys
