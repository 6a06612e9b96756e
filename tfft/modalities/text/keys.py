"""The `data` keys only text recipes read."""

import dataclasses
from typing import Optional


@dataclasses.dataclass
class TextKeys:
    """Text keys of the `data` section.

    Args:
        jsonl: a JSON-lines file with the keys `text_column` and `label_column`.
        text_column: column (CSV), key (JSON lines) or feature (TFDS) holding the text.
        label_column: column, key or feature holding the label(s).
        multi_label: any number of labels per example (a JSON list, or a string split by
            `label_delimiter`); trained with a sigmoid per class.
        label_delimiter: separator of labels in one string, e.g. `"|"`.
        sequence_length: tokens per text after padding or truncation.
        tfds: a TensorFlow Datasets name (`"imdb_reviews"`), split by `tfds_split`.
        tfds_split: `[train_split, validation_split]` of a TFDS data set; a validation split
            of None splits the training split.
    """

    jsonl: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    multi_label: bool = False
    label_delimiter: Optional[str] = None
    sequence_length: int = 128
    tfds: Optional[str] = None
    tfds_split: list = dataclasses.field(default_factory=lambda: ["train", "test"])


KEYS = TextKeys
