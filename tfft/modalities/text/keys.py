"""The `data` keys only text recipes read."""

import dataclasses
from typing import Optional


@dataclasses.dataclass
class TextKeys:
    """Text keys of the `data` section.

    Args:
        task: `"classify"`: a class per text (or, multi-label, any number of classes);
            `"tokens"`: a tag per word, token classification such as named entities
            (IOB2 tags; sources `conll` and `jsonl`).
        jsonl: a JSON-lines file: for `task="classify"` with the keys `text_column` and
            `label_column`; for `task="tokens"` with `tokens_column` and `tags_column`.
        conll: for `task="tokens"`, a CoNLL file: one word and its tag per line (the tag in
            the last column), a blank line between sentences.
        text_column: column (CSV), key (JSON lines) or feature (TFDS) holding the text.
        label_column: column, key or feature holding the label(s).
        tokens_column: for `task="tokens"`, the JSON-lines key holding a sentence's words.
        tags_column: for `task="tokens"`, the JSON-lines key holding a tag per word.
        multi_label: any number of labels per example (a JSON list, or a string split by
            `label_delimiter`); trained with a sigmoid per class.
        label_delimiter: separator of labels in one string, e.g. `"|"`.
        sequence_length: tokens per text after padding or truncation.
    """

    task: str = "classify"
    jsonl: Optional[str] = None
    conll: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    multi_label: bool = False
    label_delimiter: Optional[str] = None
    sequence_length: int = 128


KEYS = TextKeys
