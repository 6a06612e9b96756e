"""What a misclassified validation example looks like in TensorBoard, per modality.

Text goes in a markdown table with its true and predicted labels; images are shown as
images; recordings as playable clips beside their log-mel spectrograms.
"""

import numpy as np


def log_misclassified(logger, tag, kind, raw, labels, total, audio_features=None):
    """Write misclassified examples under `tag` in the validation run.

    Args:
        logger: the run's `TensorBoardLogger`.
        tag: summary tag, e.g. `"misclassified/finetune"`.
        kind: `"image"`, `"text"` or `"audio"`.
        raw: the examples as the data set's `validation_examples` yields them: images
            (float 0-255), texts (strings) or waveforms (float in [-1, 1]).
        labels: `(index, true_label, predicted_label)` for each example in `raw`.
        total: how many examples were misclassified in all.
        audio_features: the `AudioFeatures` of the run, for spectrograms of `raw` clips.
    """
    header = f"{total} misclassified; the first {len(raw)}:\n\n"
    if kind == "text":
        rows = [f"| {_cell(text)} | {truth} | {guess} |" for text, (_, truth, guess) in zip(raw, labels)]
        logger.log_examples(tag, text=header + "| text | true | predicted |\n|---|---|---|\n" + "\n".join(rows))
        return
    rows = [f"| {index} | {truth} | {guess} |" for index, truth, guess in labels]
    table = header + "| example | true | predicted |\n|---|---|---|\n" + "\n".join(rows)
    if kind == "image":
        images = np.stack([np.asarray(x, "float32") for x in raw]) / 255.0
        logger.log_examples(tag, images=np.clip(images, 0, 1), text=table)
    elif kind == "audio":
        clips = np.stack([np.asarray(x, "float32") for x in raw])
        logger.log_examples(tag, images=spectrogram_images(audio_features.log_mel(clips)),
                            audio=np.clip(clips, -1, 1), sample_rate=audio_features.sample_rate, text=table)


def spectrogram_images(spectrograms):
    """`[n, time, mels, 1]` log-mel spectrograms as images: time across, low frequencies at
    the bottom, each scaled to [0, 1]."""
    images = np.flip(np.transpose(np.asarray(spectrograms), (0, 2, 1, 3)), axis=1)
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    return (images - low) / np.maximum(high - low, 1e-6)


def _cell(text):
    text = text.numpy().decode("utf-8", "replace") if hasattr(text, "numpy") else str(text)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 200 else text[:197] + "..."
