"""Building blocks of the small CNNs tfft trains from scratch (`image_cnn`, `audio_cnn`)."""

import keras


def conv_blocks(inputs, widths):
    """Blocks `block1` ... `blockN` of two 3x3 conv-BatchNorm-ReLU and a 2x2 max pooling,
    named as VGG names its blocks (so the `vgg` group rules cut them)."""
    x = inputs
    for index, width in enumerate(widths, start=1):
        for conv in (1, 2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{index}_conv{conv}")(x)
            x = keras.layers.BatchNormalization(name=f"block{index}_bn{conv}")(x)
            x = keras.layers.Activation("relu", name=f"block{index}_relu{conv}")(x)
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"block{index}_pool")(x)
    return x
