"""Token-classification datasets (`data.task="tokens"`) from CoNLL or JSON-lines files.

`token_datasets` reads tagged sentences (`token_sources`), reads every `I-X` that starts
an entity as `B-X` (conlleval's reading, now strict IOB2), takes the tag set from the
training split (`O`, then `B-` and `I-` of each entity type), splits the sentences, and
aligns the tags to word pieces once, in memory (`alignment.align_tags`): each example is
the encoder's inputs and `[sequence_length]` labels, a tag index on each word's first piece
and -1 elsewhere.

Splits are made of whole sentences, so they cannot be stratified by tag. Without a
`validation_path`, sentences are grouped by the rarest entity type they hold (by how many
sentences of the source hold it; sentences without entities form one group) and each
group is split like a class (`stratified_split`): every entity type is in both parts as
far as whole sentences allow. `holdout` (`schedule.kind="auto"`, `tfft tune`) splits the
training split the same way.

Example:
    >>> data = token_datasets(conll="contracts_train.conll", validation_path="contracts_test.conll",
    ...                       preprocess=preprocessor)
    >>> data.class_names[:3]
    ['O', 'B-AMOUNT', 'I-AMOUNT']
"""

import collections
import hashlib

import numpy as np
import tensorflow as tf

from tfft.data import sources
from tfft.data.checks import check_cache, check_validation_split, positive_int
from tfft.data.pipeline import cache_dataset, filled, finish_datasets, shuffle_epoch
from tfft.errors import DataError
from tfft.modalities.text.alignment import WordAligner, align_tags, check_wordpiece
from tfft.modalities.text.entities import repair, spans, tag_names
from tfft.modalities.text.token_sources import read_conll, read_tagged, read_tagged_jsonl


def token_datasets(
    conll=None,
    jsonl=None,
    validation_path=None,
    validation_split=0.2,
    tokens_column="tokens",
    tags_column="tags",
    batch_size=32,
    seed=0,
    preprocess=None,
    cache=True,
    shuffle_buffer=10000,
    holdout=None,
    encoder="encoder",
    verbose=1,
):
    """Build training and validation datasets of tagged sentences.

    Args:
        conll: a CoNLL file (a word and its tag per line, a blank line between sentences).
        jsonl: a JSON-lines file, one sentence per object (`tokens_column`, `tags_column`).
        validation_path: the validation split, a CoNLL or JSON-lines file (by its
            extension: `.jsonl` / `.json`, else CoNLL); its entity types must occur in the
            training data.
        validation_split: share of the sentences held out for validation when there is no
            `validation_path` (grouped by entity type, see the module docstring).
        tokens_column: the JSON-lines key of a sentence's words.
        tags_column: the JSON-lines key of their tags.
        batch_size: sentences per batch.
        seed: seed of the split and of the shuffle.
        preprocess: the encoder's keras-hub WordPiece preprocessor; None yields each
            sentence's text and its tags as one string (what `tfft check-data` reads).
        cache: True caches the examples in memory, a string in files with that prefix.
        shuffle_buffer: upper bound on the shuffle buffer.
        holdout: None, or a share of the training sentences that replaces the validation
            split, which is then not read at all.
        encoder: the encoder's name (`backbone.name`), for errors.
        verbose: 0 to say nothing of words cut off by the sequence length.

    Returns:
        A `Datasets` whose `items` are `(text, tag indices)` per sentence (`text`: the words
        joined by spaces) and whose `validation_examples` yield each validation sentence's
        text and labels.

    Raises:
        DataError: no or two sources, a file that is not UTF-8, a line without a tag, a tag
            that is not IOB2, no entity type, a validation type the training data does not
            have, a word the tokenizer keeps nothing of: each naming the file and line.
    """
    given = {key: value for key, value in (("conll", conll), ("jsonl", jsonl)) if value is not None}
    if len(given) != 1:
        raise DataError("data.task='tokens' reads one source: data.conll (a CoNLL file) or data.jsonl (JSON lines "
                        f"of words and tags). Received: {', '.join(f'{k}={v!r}' for k, v in given.items()) or 'none'}")
    positive_int("batch_size", batch_size)
    positive_int("shuffle_buffer", shuffle_buffer)
    check_cache(cache)
    if validation_path is None or holdout is not None:
        check_validation_split(validation_split, "give a separate validation file (validation_path)")
    (kind, source), = given.items()
    columns = (tokens_column, tags_column)
    train = _repaired(read_tagged_jsonl(source, *columns) if kind == "jsonl" else read_conll(source))
    types = sorted({kind_ for s in train for kind_, _, _ in spans(s.tags)})
    if not types:
        raise DataError(f"{source} tags no entity (every tag is O): a tagger needs at least one entity type. "
                        f"Received: {kind}={source!r}")
    class_names = tag_names(types)
    validation = None
    if holdout is None and validation_path is not None:
        validation = _repaired(read_tagged(validation_path, *columns))
        _check_types(validation, types)
    strata = _strata(train)
    if holdout is not None:
        if validation_path is None:
            kept, _ = sources.stratified_split(strata, validation_split, seed)
            train, strata = [train[i] for i in kept], [strata[i] for i in kept]
        fit, held = sources.holdout_split(strata, holdout, seed, f"{kind}={source!r}")
        train, validation = [train[i] for i in fit], [train[i] for i in held]
    elif validation is None:
        fit, held = sources.stratified_split(strata, validation_split, seed)
        if not len(held):
            raise DataError(f"The split left no validation sentence; add sentences or give a validation file. "
                            f"Received: {kind}={source!r}, num_sentences={len(train)}")
        train, validation = [train[i] for i in fit], [train[i] for i in held]
    index = {name: i for i, name in enumerate(class_names)}
    train_tags = [[index[t] for t in s.tags] for s in train]
    val_tags = [[index[t] for t in s.tags] for s in validation]
    items = dict(train=[(" ".join(s.words), tuple(t)) for s, t in zip(train, train_tags)],
                 validation=[(" ".join(s.words), tuple(t)) for s, t in zip(validation, val_tags)])
    if preprocess is None:
        train_xy = ([text for text, _ in items["train"]], [" ".join(s.tags) for s in train])
        val_xy = ([text for text, _ in items["validation"]], [" ".join(s.tags) for s in validation])
    else:
        check_wordpiece(preprocess, encoder)
        aligner = WordAligner(preprocess)
        inputs, labels, seen = align_tags(aligner, train, train_tags)
        train_xy = (inputs, labels)
        val_inputs, val_labels, val_seen = align_tags(aligner, validation, val_tags)
        val_xy = (val_inputs, val_labels)
        cut = {split: (int(sum(len(s.words) - n for s, n in zip(sentences, counts))),
                       int(sum(len(s.words) > n for s, n in zip(sentences, counts))))
               for split, sentences, counts in (("training", train, seen), ("validation", validation, val_seen))}
        if verbose and any(words for words, _ in cut.values()):
            print("; ".join(f"{words} words of {sentences} {split} sentences lie past data.sequence_length="
                            f"{aligner.sequence_length} word pieces" for split, (words, sentences) in cut.items() if words)
                  + ": they are not trained on, and count as tagged O in the scores (raise data.sequence_length "
                  "to read them)", flush=True)

    def slices(xy):
        return tf.data.Dataset.from_tensor_slices(xy)

    examples = cache_dataset(slices(train_xy), cache, "train", lambda: _fingerprint(train_xy))
    buffer = min(int(shuffle_buffer), len(train))
    batch_size = int(batch_size)

    def train_epoch(epoch, skip=0):
        return shuffle_epoch(examples, buffer, seed, epoch).skip(skip * batch_size).batch(batch_size)

    val_examples = cache_dataset(slices(val_xy), cache, "validation", lambda: _fingerprint(val_xy))
    validation_batches = val_examples.batch(batch_size)
    raw = tf.data.Dataset.from_tensor_slices(([text for text, _ in items["validation"]], val_xy[1]))
    return finish_datasets(
        train_epoch, validation_batches, class_names, None, len(train), len(validation), raw, batch_size,
        prime=filled(cache, examples, len(train)), items=items,
        in_order=lambda: (examples if cache is True else slices(train_xy)).batch(batch_size),
        shuffle=(buffer, seed),
    )


def _repaired(sentences):
    return [s._replace(tags=repair(s.tags)[0]) for s in sentences]


def _check_types(sentences, types):
    for sentence in sentences:
        for kind, _, _ in spans(sentence.tags):
            if kind not in types:
                raise DataError(f"{sentence.where}: entity type '{kind}' does not occur in the training data; known "
                                f"types: {types}. Received: tag='B-{kind}'")


def _strata(sentences):
    """Per sentence, the group it is split in: its rarest entity type (by the number of
    sentences holding it), or one group for the sentences without entities."""
    holding = [{kind for kind, _, _ in spans(s.tags)} for s in sentences]
    frequency = collections.Counter(kind for kinds in holding for kind in kinds)
    order = {kind: rank for rank, (kind, _) in enumerate(sorted(frequency.items(), key=lambda kv: (kv[1], kv[0])))}
    return [min((order[k] for k in kinds), default=len(order)) for kinds in holding]


def _fingerprint(examples):
    """12 hex digits of what a split's examples hold: a file cache of other data, or of
    another sequence length, is not replayed."""
    digest = hashlib.sha1()
    for part in examples:
        for key, value in sorted(part.items()) if isinstance(part, dict) else [("", part)]:
            digest.update(key.encode("utf-8") + np.asarray(value).tobytes())
    return digest.hexdigest()[:12]
