"""Words and their word pieces, with where each word is in the text and in the encoder's
input: what token classification needs, in core TensorFlow ops.

`WordAligner` splits raw UTF-8 text into the words a WordPiece tokenizer splits it into
(at whitespace and control characters; every punctuation mark, and every CJK character
where the tokenizer splits them, a word of its own), keeping each word's character span
in the text, then tokenises the words into pieces and packs them as the encoder's
preprocessor does (`WordPieceGraph`: the very token ids). For each word it gives the
sequence position of its first piece, or -1 when `sequence_length` cuts the word off.

Training aligns tags with it (`align_tags`): each word of a tagged sentence gets its tag
on its first piece, its other pieces and the special and padding tokens are ignored
(label -1). The export serves with it, so that the tags of the words land back on the raw
text as character spans.

Offsets count characters (Unicode code points), as Python indexes a `str`:
`text[start:end]` is the word.

Example:
    >>> aligner = WordAligner(preprocessor)        # a keras-hub WordPiece preprocessor
    >>> out = aligner(tf.constant(["Acme Ltd. pays EUR 5,000."]))
    >>> out["start"][0], out["end"][0], out["position"][0]   # Acme, Ltd, ., pays, EUR, 5, ",", 000, .
"""

import numpy as np
import tensorflow as tf

from tfft.errors import DataError
from tfft.modalities.text.serving import _KEEP, WordPieceGraph, _map_characters, unsupported

IGNORED = -1


class WordAligner(tf.Module):
    """A keras-hub WordPiece preprocessor that also says where every word is.

    Args:
        preprocessor: a keras-hub text classifier preprocessor with a WordPiece tokenizer
            (`tfft.modalities.text.serving.unsupported(preprocessor)` is "").

    Calling it on a `[n]` string tensor returns a dict:
    `inputs` (the preprocessor's dict: `token_ids`, `padding_mask`, `segment_ids` where it
    has them, `[n, sequence_length]`), and `start`, `end`, `position`, each `[n, words]`
    int32 padded with -1: the word's character span and the position of its first piece
    (-1 for a word cut off by `sequence_length`).

    Example:
        >>> WordAligner(preprocessor)(tf.constant(["Acme pays"]))["position"]
        <tf.Tensor: shape=(1, 2), dtype=int32, numpy=array([[1, 2]], dtype=int32)>
    """

    def __init__(self, preprocessor):
        super().__init__(name="word_aligner")
        self.graph = WordPieceGraph(preprocessor)
        self.sequence_length = self.graph.sequence_length
        self.first = len(self.graph.start)
        self.capacity = self.sequence_length - len(self.graph.start) - len(self.graph.end)

    def __call__(self, text):
        text = tf.reshape(text, [-1])
        words, start, end = self.words(text)
        pieces = self.graph.pieces(words.flat_values)
        ids = tf.RaggedTensor.from_row_splits(pieces, words.row_splits).merge_dims(1, 2)
        counts = tf.cast(pieces.row_lengths(), tf.int32)
        before = tf.cumsum(counts, exclusive=True)  # pieces before each word, all texts together
        totals = tf.concat([before, tf.reduce_sum(counts, keepdims=True)], 0)
        base = tf.gather(totals, words.row_starts())  # pieces before each text's first word
        first = before - tf.gather(base, words.value_rowids())
        position = tf.where(first < self.capacity, first + self.first, IGNORED)
        position = words.with_flat_values(position)
        return dict(inputs=self.graph.pack(ids), start=start.to_tensor(IGNORED), end=end.to_tensor(IGNORED),
                    position=position.to_tensor(IGNORED))

    def words(self, text):
        """`[n]` strings -> `(words, start, end)`, ragged `[n, (words)]`: each word as the
        tokenizer sees it (accents stripped, case folded, as the tokenizer does) and its
        character span in the text."""
        characters = tf.strings.unicode_split(text, "UTF-8")
        flat = characters.flat_values
        rows = characters.value_rowids()
        column = tf.range(tf.size(flat, out_type=tf.int64)) - tf.gather(characters.row_starts(), rows)
        space = tf.strings.regex_full_match(flat, self.graph.whitespace)
        single = tf.strings.regex_full_match(flat, self.graph.punctuation)  # and CJK, where it splits them
        letter = ~space & ~single
        # Shifted by one, for each character what comes before it (nothing for the first).
        same_row = tf.equal(rows, tf.concat([[-1], rows], 0)[:-1])
        follows_letter = tf.concat([[False], letter], 0)[:-1] & same_row
        starts = single | (letter & ~follows_letter)
        index = tf.cumsum(tf.cast(starts, tf.int64)) - 1
        count = tf.reduce_sum(tf.cast(starts, tf.int64))
        keep = ~space
        kept = tf.boolean_mask(flat, keep)
        if self.graph.strip is not None:
            mapped = self.graph.strip.lookup(kept)
            kept = tf.where(tf.equal(mapped, _KEEP), kept, mapped)
        word = tf.boolean_mask(index, keep)
        values = tf.strings.unsorted_segment_join(kept, word, count)
        first = tf.math.unsorted_segment_min(tf.boolean_mask(column, keep), word, count)
        last = tf.math.unsorted_segment_max(tf.boolean_mask(column, keep), word, count)
        row = tf.math.unsorted_segment_min(tf.boolean_mask(rows, keep), word, count)
        if self.graph.fold is not None:
            values = _map_characters(values, self.graph.fold)
        # A word of marks that accent stripping removes is no word (keras-hub drops it too).
        real = tf.strings.length(values) > 0
        row = tf.boolean_mask(row, real)
        nrows = tf.shape(text, out_type=tf.int64)[0]

        def ragged(values):
            return tf.RaggedTensor.from_value_rowids(tf.boolean_mask(values, real), row, nrows=nrows)

        return ragged(values), ragged(tf.cast(first, tf.int32)), ragged(tf.cast(last + 1, tf.int32))


def check_wordpiece(preprocessor, name):
    """Raise a `DataError` unless token classification can align tags with `preprocessor`'s
    tokenizer (a WordPiece one).

    Args:
        preprocessor: a keras-hub text classifier preprocessor.
        name: `backbone.name`, for the message.

    Example:
        >>> check_wordpiece(roberta_preprocessor, "roberta")   # DataError: ... not WordPiece
    """
    reason = unsupported(preprocessor)
    if reason:
        raise DataError(f"data.task='tokens' aligns tags to WordPiece pieces in core TensorFlow ops, so it needs a "
                        f"WordPiece encoder (BERT, MiniLM, DistilBERT, ELECTRA): {reason}. Received: "
                        f"backbone.name={name!r}")


def align_tags(aligner, sentences, tag_ids, batch_size=256):
    """Tokenise tagged sentences and put each word's tag on its first piece.

    Args:
        aligner: a `WordAligner`.
        sentences: `Sentence`s (`tfft.modalities.text.token_sources`).
        tag_ids: per sentence, the tag index of each word.
        batch_size: sentences tokenised at once.

    Returns:
        `(inputs, labels, seen)`: the encoder's inputs as numpy arrays `[n, sequence_length]`,
        int32 labels of the same shape (-1 where ignored), and per sentence how many of its
        words the sequence holds (its first `seen` words; the rest are cut off).

    Raises:
        DataError: a word with nothing the tokenizer keeps (only control characters, say),
            named by its sentence's file and line.

    Example:
        >>> inputs, labels, seen = align_tags(aligner, sentences, tag_ids)
    """
    texts = [" ".join(sentence.words) for sentence in sentences]
    run = tf.function(aligner.__call__, input_signature=[tf.TensorSpec([None], tf.string)])
    length = aligner.sequence_length
    inputs, labels = {}, np.full((len(texts), length), IGNORED, np.int32)
    seen = np.zeros(len(texts), np.int64)
    for offset in range(0, len(texts), batch_size):
        out = run(tf.constant(texts[offset:offset + batch_size], tf.string))
        for key, value in out["inputs"].items():
            inputs.setdefault(key, []).append(value.numpy())
        starts, positions = out["start"].numpy(), out["position"].numpy()
        for row in range(len(starts)):
            index = offset + row
            sentence = sentences[index]
            lengths = np.array([len(word) for word in sentence.words])
            word_starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
            found = starts[row][starts[row] >= 0]
            first = np.searchsorted(found, word_starts)
            empty = (first >= len(found)) | (found[np.minimum(first, len(found) - 1)] >= word_starts + lengths) \
                if len(found) else np.ones(len(lengths), bool)
            if empty.any():
                word = sentence.words[int(np.flatnonzero(empty)[0])]
                raise DataError(f"{sentence.where}: the word {word!r} holds nothing the tokenizer keeps (only "
                                "control or combining characters): remove it or join it to its neighbour.")
            position = positions[row][first]
            kept = position >= 0
            labels[index, position[kept]] = np.asarray(tag_ids[index])[kept]
            seen[index] = int(kept.sum())
    inputs = {key: np.concatenate(parts) for key, parts in inputs.items()}
    return inputs, labels, seen
