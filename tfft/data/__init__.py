"""tf.data pipelines: listing, splitting and loading labelled images, texts and recordings."""

from tfft.data.audio import AUDIO_EXTENSIONS, AudioFeatures, audio_datasets, log_mel, read_wav
from tfft.data.datasets import Datasets
from tfft.data.image import IMAGE_EXTENSIONS, image_datasets
from tfft.data.sources import class_weights, list_class_folders, read_manifest, stratified_split
from tfft.data.speech import KEYWORDS_A, KEYWORDS_B, make_keyword_set
from tfft.data.synthetic import SYNTHETIC_MRI_CLASSES, make_synthetic_mri
from tfft.data.synthetic_text import SUPPORT_TICKET_CLASSES, make_support_tickets, support_ticket_splits
from tfft.data.text import TEXT_EXTENSIONS, text_datasets

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioFeatures",
    "Datasets",
    "IMAGE_EXTENSIONS",
    "KEYWORDS_A",
    "KEYWORDS_B",
    "SUPPORT_TICKET_CLASSES",
    "SYNTHETIC_MRI_CLASSES",
    "TEXT_EXTENSIONS",
    "audio_datasets",
    "class_weights",
    "image_datasets",
    "list_class_folders",
    "log_mel",
    "make_keyword_set",
    "make_support_tickets",
    "make_synthetic_mri",
    "read_manifest",
    "read_wav",
    "stratified_split",
    "support_ticket_splits",
    "text_datasets",
]
