"""Readers of tagged sentences for token classification (`data.task="tokens"`).

Two formats, each read whole into memory and checked as it goes (UTF-8, a tag per word,
IOB2 tags, words without whitespace), with a `DataError` naming the file and line:

- CoNLL: one word per line, its tag in the last whitespace-separated column (so the
  four-column CoNLL-2003 files read as they are: word, part of speech, chunk, entity tag);
  a blank line between sentences; `-DOCSTART-` lines are skipped.
- JSON Lines: one object per sentence with a list of words under `tokens_column` and a
  list of as many tags under `tags_column`.

Each reader returns `Sentence`s, which `tfft/modalities/text/token_pipeline.py` aligns to
word pieces.

Example:
    >>> sentences = read_conll("contracts_train.conll")
    >>> sentences[0].words[:3], sentences[0].tags[:3]
    (['This', 'Agreement', 'is'], ['O', 'O', 'O'])
"""

from typing import NamedTuple

from tfft.errors import DataError
from tfft.modalities.text.entities import check_tags
from tfft.modalities.text.sources import _decode, _read_bytes, jsonl_records

DOCSTART = "-DOCSTART-"


class Sentence(NamedTuple):
    """One tagged sentence: its words, a tag per word and where it starts (file and line)."""

    words: list
    tags: list
    where: str


def read_conll(path):
    """A CoNLL file: a word and its tag per line (tag last), sentences between blank lines.

    Returns:
        A list of `Sentence`s in file order.

    Example:
        >>> [s.words for s in read_conll("tagged.conll")][:1]
        [['Acme', 'Ltd', 'pays', 'EUR', '500']]
    """
    path, data = _read_bytes(path, "CoNLL file")
    sentences, words, tags, start = [], [], [], None
    for number, line in enumerate(_decode(data, path).splitlines(), start=1):
        columns = line.split()
        if not columns or columns[0] == DOCSTART:
            if words:
                sentences.append(Sentence(words, tags, f"{path}, line {start}"))
            words, tags = [], []
            continue
        where = f"{path}, line {number}"
        if len(columns) < 2:
            raise DataError(f"{where}: a line holds a word and its tag, separated by whitespace (the tag in the "
                            f"last column); a blank line ends a sentence. Received: {line[:120]!r}")
        check_tags([columns[-1]], where)
        if not words:
            start = number
        words.append(columns[0])
        tags.append(columns[-1])
    if words:
        sentences.append(Sentence(words, tags, f"{path}, line {start}"))
    if not sentences:
        raise DataError(f"{path} holds no tagged words; write one word and its tag per line. Received: conll='{path}'")
    return sentences


def read_tagged_jsonl(path, tokens_column="tokens", tags_column="tags"):
    """JSON Lines, one sentence per object: a list of words and a list of their tags.

    Returns:
        A list of `Sentence`s in file order.

    Example:
        >>> read_tagged_jsonl("tagged.jsonl")[0].tags
        ['B-PARTY', 'I-PARTY', 'O', 'B-AMOUNT', 'I-AMOUNT']
    """
    path, records = jsonl_records(path)
    sentences = []
    for where, record, _ in records:
        if not isinstance(record, dict) or tokens_column not in record or tags_column not in record:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise DataError(f"{where}: expected an object with a '{tokens_column}' list and a '{tags_column}' list; "
                            f"rename the keys or pass tokens_column=/tags_column=. Received: keys={keys}")
        words, tags = record[tokens_column], record[tags_column]
        if not isinstance(words, list) or not isinstance(tags, list):
            raise DataError(f"{where}: '{tokens_column}' and '{tags_column}' must be lists. "
                            f"Received: {tokens_column}={str(words)[:80]}")
        if len(words) != len(tags):
            raise DataError(f"{where}: {len(words)} words and {len(tags)} tags; every word needs one tag. "
                            f"Received: {tokens_column}={str(words)[:80]}")
        if not words:
            raise DataError(f"{where}: the sentence has no words; leave it out. Received: {tokens_column}=[]")
        for word in words:
            if not isinstance(word, str) or not word or any(c.isspace() for c in word):
                raise DataError(f"{where}: every word is a non-empty string without whitespace (split the sentence "
                                f"into its words). Received: word={word!r}")
        check_tags(tags, where)
        sentences.append(Sentence(list(words), list(tags), where))
    if not sentences:
        raise DataError(f"{path} holds no JSON objects; write one object per sentence. Received: jsonl='{path}'")
    return sentences


def read_tagged(path, tokens_column="tokens", tags_column="tags"):
    """`read_tagged_jsonl` for a `.jsonl` / `.json` file, else `read_conll`.

    Example:
        >>> read_tagged("dev.conll") == read_conll("dev.conll")
        True
    """
    if str(path).lower().endswith((".jsonl", ".json")):
        return read_tagged_jsonl(path, tokens_column, tags_column)
    return read_conll(path)
