"""Evaluation shared by the CLI (`multimodal eval`) and the trainers: one implementation of each metric."""

from multimodal.evaluation.retrieval import retrieval_metrics
from multimodal.evaluation.zeroshot import zeroshot_metrics

__all__ = ["retrieval_metrics", "zeroshot_metrics"]
