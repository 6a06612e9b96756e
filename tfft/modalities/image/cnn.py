"""`image_cnn`: a compact image CNN to train from scratch on your own source data.

There are ImageNet weights for the Keras applications, but not every team may use them, and
for images far from photographs (scans, icons, spectra) a small network pretrained on the
team's own labelled source data can transfer better. `image_cnn` is that network, the image
twin of `audio_cnn`: four blocks of two 3x3 conv-BatchNorm-ReLU layers and a pooling, with
the pixel scaling inside the model, so its `model.keras` takes 0-255 images as they come and
serves as the backbone of a later fine-tune:

    tfft run recipes/my_source.py --set backbone.name=image_cnn --set backbone.weights=None
    tfft run recipes/my_target.py --set backbone.name=runs/my_source/model.keras
"""

import keras

from tfft.backbones import Backbone
from tfft.backbones.applications import FAMILY_RULES
from tfft.backbones.blocks import conv_blocks

IMAGE_CNN = "image_cnn"


def image_cnn(input_size, widths=(32, 64, 128, 256), name=IMAGE_CNN):
    """A compact CNN from 0-255 RGB images to a 4D feature map.

    Example:
        >>> image_cnn(64).output.shape
        (None, 4, 4, 256)
    """
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="block1_rescale")(inputs)
    return keras.Model(inputs, conv_blocks(x, widths), name=name)


def build_image_cnn(input_size):
    """`image_cnn` as a `Backbone`, randomly initialised (pretrain it, then fine-tune it)."""
    return Backbone(model=image_cnn(input_size), preprocess=None, rules=FAMILY_RULES[IMAGE_CNN], family=IMAGE_CNN,
                    name=IMAGE_CNN, pretrained=False)
