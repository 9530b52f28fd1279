"""Training losses: in-batch relevance losses and differentiable diversity regularisers."""

from divrec.losses.diversity import (
    DIVERSITY_SCOPES,
    DIVERSITY_TERMS,
    ILS,
    CategoryEntropy,
    DiversityTerm,
    DPPTerm,
    NoDiversity,
    build_diversity_term,
)
from divrec.losses.relevance import (
    RELEVANCE_LOSSES,
    bpr_loss,
    get_relevance_loss,
    in_batch_logits,
    sampled_softmax_loss,
)

__all__ = [
    "DIVERSITY_SCOPES",
    "DIVERSITY_TERMS",
    "ILS",
    "RELEVANCE_LOSSES",
    "CategoryEntropy",
    "DPPTerm",
    "DiversityTerm",
    "NoDiversity",
    "bpr_loss",
    "build_diversity_term",
    "get_relevance_loss",
    "in_batch_logits",
    "sampled_softmax_loss",
]
