"""Financial-news headlines and sentences labelled with their sentiment, for demos offline.

Three classes, as in the Financial PhraseBank: `positive`, `negative` and `neutral`, the
effect the news is likely to have on the company's share price as an investor reads it.
Each example is a wire headline ("Norvik Steel raises full-year profit outlook") or a
sentence from a news story about a company: results, guidance, analysts' ratings, orders
and deals, dividends and buybacks, job cuts and writedowns, fines and recalls, results
dates and appointments. The company names are made up.

The hard cases are those that defeat counting words:

- neutral statements full of financial words: figures without a comparison ("net sales
  totalled EUR 307 million"), results in line with forecasts, unchanged guidance or
  ratings, results dates, bond issues, gains and losses that cancel out;
- negation: "did not fall as analysts had feared" is positive, "no longer expects revenue
  to grow" negative, "neither raised nor lowered its forecast" neutral;
- mixed news: a detail going one way (revenue, orders, margins, a contract, the dividend)
  and headline news going the other (the forecast, profit against estimates), joined by
  "but", "although", "however", "yet" or "while". The headline news, stated last as news
  writers stress it, decides: "revenue rose 5%, but the company cut its full-year
  forecast" is negative, "although orders dropped sharply, the company beat analysts'
  profit estimates" positive. Each detail also occurs on its own, in the class it goes
  the way of, so the same words are news of both kinds.

Sentences come in paraphrase families (one per kind of news), and every family and fact
pool is split three ways (`paraphrases.split_pool`): validation examples report the same
kinds of news as training examples in partly different words. Positive and negative
families mirror each other ("beat"/"missed", "raised"/"cut"), so the topic never gives the
class away. Headlines are often in title case, some carry a wire tag ("UPDATE 1-") or a
neutral sentence of background, and a few are lowercased or mistyped.
"""

import os
import tempfile

from tfft.data.checks import check_int
from tfft.modalities.text import financial_news_phrases as phrases
from tfft.modalities.text.paraphrases import (
    add_typos, class_splits, fill, pick, split_pool, write_splits,
)

FINANCIAL_NEWS_CLASSES = ("negative", "neutral", "positive")
NAME = "financial_news"

# Bump when the pools or the assembly change, so that older sets are regenerated.
_VERSION = 1
_STREAM = 3  # tells this set's random numbers apart from the other sets' (same seed)
# Words a headline in title case leaves in lower case.
_SMALL_WORDS = frozenset("a an and as at but by for from in of on or over the to up via with".split())


def _title_case(headline):
    words = headline.split(" ")
    return " ".join(
        word if (i and word.lower() in _SMALL_WORDS) or not word[:1].islower() else word[0].upper() + word[1:]
        for i, word in enumerate(words)
    )


def _facts(label):
    """The details and the headline facts that go the way of `label`."""
    if label == "positive":
        return phrases.GOOD_DETAILS, phrases.GOOD_HEADLINE_FACTS
    return phrases.BAD_DETAILS, phrases.BAD_HEADLINE_FACTS


def _mixed(label, split, rng, values):
    """A detail going against `label`, then headline news going its way, in one sentence."""
    details = _facts("negative" if label == "positive" else "positive")[0]
    # The headline news refers back to the company: "its", "the company".
    last = pick(rng, split_pool(_facts(label)[1], split)).replace("{co}'s", "its").replace("{co}", "the company")
    template = pick(rng, phrases.CONTRASTS).format(x=pick(rng, split_pool(details, split)), y=last)
    return fill(template, rng, phrases.SLOTS, values) + "."


def _news(label, split, rng):
    """One headline or news sentence of class `label`, from the phrases `split` may use."""
    values = dict(co=pick(rng, phrases.COMPANIES))
    kind = rng.random() if label != "neutral" else 1.0  # neutral news has no facts going either way
    if kind < 0.2:
        text = _mixed(label, split, rng, values)
    elif kind < 0.3:  # a fact on its own, as the mixed news of the other class holds it
        details, headlines = _facts(label)
        text = fill(pick(rng, split_pool(details, split) + split_pool(headlines, split)), rng, phrases.SLOTS,
                    values) + "."
    else:
        family = pick(rng, phrases.NEWS[label])
        text = fill(pick(rng, split_pool(family, split)), rng, phrases.SLOTS, values)
    text = text[0].upper() + text[1:]
    if text.endswith("."):
        if rng.random() < 0.25:
            text += " " + fill(pick(rng, phrases.BACKGROUND), rng, phrases.SLOTS, values)
        if rng.random() < 0.2:
            text = fill(pick(rng, phrases.DATELINES), rng, phrases.SLOTS) + text
    else:
        if rng.random() < 0.45:
            text = _title_case(text)
        if rng.random() < 0.15:
            text = pick(rng, phrases.WIRE_TAGS) + text
    noise = rng.random()
    if noise < 0.06:
        text = text.lower()
    elif noise < 0.08:
        text = text.upper()
    if rng.random() < 0.1:
        text = add_typos(text, rng, 1)
    return text


def financial_news_splits(per_class_train=64, per_class_test=200, seed=0):
    """Generate training and test financial-news sentences in memory.

    Training examples use the training and shared phrase pools, test examples the test
    and shared pools, so a test example usually reports its news in words no training
    example uses. Both splits are shuffled; the same arguments always give the same
    examples.

    Args:
        per_class_train: training examples per class.
        per_class_test: test examples per class.
        seed: integer seed.

    Returns:
        `(train_texts, train_labels, test_texts, test_labels, class_names)`: lists of
        strings, int32 numpy arrays of indices into `class_names`, and
        `list(FINANCIAL_NEWS_CLASSES)`.

    Example:
        >>> x, y, test_x, test_y, names = financial_news_splits(32, 100, seed=0)
        >>> len(x), len(test_x), names
        (96, 300, ['negative', 'neutral', 'positive'])
    """
    per_class_train = check_int("per_class_train", per_class_train, 1)
    per_class_test = check_int("per_class_test", per_class_test, 1)
    seed = check_int("seed", seed, 0)
    splits = class_splits(_news, FINANCIAL_NEWS_CLASSES, per_class_train, per_class_test, seed, _STREAM)
    return (*splits, list(FINANCIAL_NEWS_CLASSES))


def make_financial_news(directory=None, per_class=64, seed=0, test_per_class=200):
    """Write the financial-news sentences as CSV files and return their folder.

    `financial_news.csv` holds `per_class` training examples per class and
    `financial_news_test.csv` `test_per_class` test examples per class, both with a
    `text,label` header, so that `text_datasets(csv=..., validation_path=...)` reads them
    directly. The folder is written whole and renamed into place; a `.complete` marker
    records the parameters, and a second call with the same ones returns at once.

    Args:
        directory: folder for the files; created if needed. None uses
            `tfft-financial-news` in the system's temporary folder.
        per_class: training examples per class; the default suits few-shot fine-tuning.
        seed: integer seed.
        test_per_class: test examples per class.

    Returns:
        The folder, as a string.

    Raises:
        DataError: for bad arguments, when `directory` is a file, or when it holds files
            that this function did not write (they are never overwritten).

    Example:
        >>> folder = make_financial_news("/tmp/news", per_class=32)
        >>> data = text_datasets(csv=os.path.join(folder, "financial_news.csv"),
        ...                      validation_path=os.path.join(folder, "financial_news_test.csv"))
        >>> data.num_train
        96
    """
    per_class = check_int("per_class", per_class, 1)
    test_per_class = check_int("test_per_class", test_per_class, 1)
    seed = check_int("seed", seed, 0)
    if directory is None:
        directory = os.path.join(tempfile.gettempdir(), "tfft-financial-news")
    params = dict(classes=list(FINANCIAL_NEWS_CLASSES), per_class=per_class, test_per_class=test_per_class,
                  seed=seed, version=_VERSION)
    return write_splits(directory, NAME, lambda: financial_news_splits(per_class, test_per_class, seed), params)
