"""Backbones for log-mel spectrograms.

Two routes, as in audio transfer learning practice:

- `audio_cnn`: a compact CNN of conv blocks made for spectrograms `(time, mels, 1)`, small
  enough to pretrain on your own recordings (or on tfft's keyword set) and fine-tune later
  from its `.keras` file.
- A Keras application (ResNet50, EfficientNetB0, ...) on the spectrogram as an image: the
  normalised spectrogram is mapped to pixel values, its channel repeated to three, and the
  application's own preprocessing applied, so ImageNet weights see inputs on their scale.
"""

import keras

from tfft.backbones import Backbone
from tfft.backbones.blocks import conv_blocks
from tfft.freezing import GroupRules

AUDIO_CNN = "audio_cnn"
AUDIO_CNN_RULES = GroupRules(patterns=((r"(block\d+)_", r"\1"),))


def audio_cnn(input_shape, widths=(32, 64, 128, 256), name=AUDIO_CNN):
    """A compact spectrogram CNN: per block two 3x3 conv-BatchNorm-ReLU and a 2x2 pooling.

    Args:
        input_shape: `(time, mels, channels)`.
        widths: filters of each block; the blocks are named `block1` ... `blockN`.
        name: model name.

    Returns:
        A functional `keras.Model` from spectrograms to a 4D feature map.

    Example:
        >>> audio_cnn((97, 64, 1)).output.shape
        (None, 6, 4, 256)
    """
    inputs = keras.Input(input_shape, name="spectrogram")
    return keras.Model(inputs, conv_blocks(inputs, widths), name=name)


def build_audio_cnn(input_shape):
    """`audio_cnn` as a `Backbone`, randomly initialised (pretrain it, then fine-tune it)."""
    return Backbone(
        model=audio_cnn(input_shape), preprocess=None, rules=AUDIO_CNN_RULES, family=AUDIO_CNN, name=AUDIO_CNN,
        pretrained=False,
    )


def spectrogram_to_image(preprocess):
    """A pipeline step turning normalised spectrograms (mean 0, std 1) into what an ImageNet
    CNN expects: pixel values 128 + 64·x clipped to 0–255, three channels, then the
    application's own `preprocess` (several applications rescale pixels inside the model,
    and would squash unscaled spectrograms to near-constant inputs)."""

    def to_image(spectrograms):
        pixels = keras.ops.clip(128.0 + 64.0 * spectrograms, 0.0, 255.0)
        pixels = keras.ops.repeat(pixels, 3, axis=-1)
        return preprocess(pixels) if preprocess is not None else pixels

    return to_image
