"""The `data` keys only image recipes read."""

import dataclasses
from typing import Optional


@dataclasses.dataclass
class ImageKeys:
    """Image keys of the `data` section.

    Args:
        image_size: images are resized to this square size; None is `backbone.input_size`.
    """

    image_size: Optional[int] = None
