"""tf.data pipelines: listing, splitting and loading labelled images, texts and recordings."""

from tfft.modalities.audio.pipeline import AUDIO_EXTENSIONS, AudioFeatures, audio_datasets, log_mel, read_wav
from tfft.data.datasets import Datasets
from tfft.modalities.image.pipeline import IMAGE_EXTENSIONS, image_datasets
from tfft.data.sources import class_weights, list_class_folders, read_manifest, stratified_split
from tfft.modalities.audio.demo import KEYWORDS_A, KEYWORDS_B, make_keyword_set
from tfft.modalities.image.demo import SYNTHETIC_MRI_CLASSES, make_synthetic_mri
from tfft.modalities.text.contract_entities import contract_entity_splits, make_contract_entities
from tfft.modalities.text.demo import SUPPORT_TICKET_CLASSES, make_support_tickets, support_ticket_splits
from tfft.modalities.text.contract_clauses import CONTRACT_CLAUSE_CLASSES, contract_clause_splits, make_contract_clauses
from tfft.modalities.text.financial_news import FINANCIAL_NEWS_CLASSES, financial_news_splits, make_financial_news
from tfft.modalities.text.pipeline import TEXT_EXTENSIONS, text_datasets
from tfft.modalities.text.token_pipeline import token_datasets

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioFeatures",
    "CONTRACT_CLAUSE_CLASSES",
    "Datasets",
    "FINANCIAL_NEWS_CLASSES",
    "IMAGE_EXTENSIONS",
    "KEYWORDS_A",
    "KEYWORDS_B",
    "SUPPORT_TICKET_CLASSES",
    "SYNTHETIC_MRI_CLASSES",
    "TEXT_EXTENSIONS",
    "audio_datasets",
    "class_weights",
    "contract_clause_splits",
    "contract_entity_splits",
    "financial_news_splits",
    "image_datasets",
    "list_class_folders",
    "log_mel",
    "make_contract_clauses",
    "make_contract_entities",
    "make_financial_news",
    "make_keyword_set",
    "make_support_tickets",
    "make_synthetic_mri",
    "read_manifest",
    "read_wav",
    "stratified_split",
    "support_ticket_splits",
    "text_datasets",
    "token_datasets",
]
