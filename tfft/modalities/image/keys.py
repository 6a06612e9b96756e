"""The `data` keys only image recipes read."""

import dataclasses
from typing import Optional


# What the image pipelines read.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

# The augmentation `data.augment=None` stands for, and `data.augment="strong"`'s preset for
# few examples per class, seen many times.
DEFAULT_AUGMENT = dict(flip=True, rotation=0.05, zoom=0.1, contrast=0.1)
STRONG_AUGMENT = dict(flip=True, rotation=0.1, zoom=0.2, translation=0.1, contrast=0.2, rand_augment=2)


@dataclasses.dataclass
class ImageKeys:
    """Image keys of the `data` section.

    Args:
        image_size: images are resized to this square size; None is `backbone.input_size`.
    """

    image_size: Optional[int] = None


KEYS = ImageKeys
