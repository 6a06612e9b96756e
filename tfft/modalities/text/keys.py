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
    """

    jsonl: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    multi_label: bool = False
    label_delimiter: Optional[str] = None
    sequence_length: int = 128


KEYS = TextKeys
