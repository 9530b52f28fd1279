"""Evaluation metrics and the full-catalogue top-K evaluator."""

from divrec.metrics.evaluator import RankingEvaluator, metric_names
from divrec.metrics.topk import topk_unseen

__all__ = ["RankingEvaluator", "metric_names", "topk_unseen"]
