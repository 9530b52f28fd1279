"""Evaluation metrics: per-user accuracy and beyond-accuracy values of top-K lists."""

from divrec.metrics.evaluator import RankingEvaluator, metric_names

__all__ = ["RankingEvaluator", "metric_names"]
