"""History pooling for the ``history`` user tower: item vectors ``h [B, H, d]`` -> user ``[B, d]``.

Every pooling has one signature, ``forward(h, mask, target=None, values=None) -> (pooled [B, d],
weights [B, H])``: ``mask [B, H]`` marks real history items, ``target [B, d]`` is a candidate
item (used by target-aware poolings only), ``values [B, H, d']`` are pooled instead of ``h``
when given (``h`` still decides the weights). The weights are returned for explanations; over
a non-empty history they are a distribution (>= 0, sum 1); an empty history gives zero
weights and the zero vector (scores 0 for every item; the evaluator counts such users).

- ``mean``: uniform weights 1/|I|.
- ``similarity`` (the seed's formula): v_u = mean of the history (first pass), s_ui =
  cos(v_u, v_i), a_ui = s_ui / sum_j s_uj, pooled = sum_i a_ui v_i. Cosines can be <= 0, so the
  ratio is not a distribution as written; ``mode: clamp`` uses max(s, 0) and renormalises,
  falling back to uniform weights when every s <= 0; ``mode: softmax`` uses
  softmax(s / temperature) (small temperature: sharp; large: close to mean).
- ``additive``: DIN-style target-aware attention (Zhou et al. 2018). A candidate c attends over
  the history: logit_i = MLP([h_i', c', h_i' * c', h_i' - c']) (one ReLU layer) with h', c' projections to
  ``attn_dim``; weights = softmax over the history. Without a target the history mean is the
  query. Cost: scoring a full catalogue of N items is [B, N, H] attention work (about
  B*N*H*attn_dim*hidden multiply-adds for the MLP's first layer), done in item chunks of at most
  ``chunk_elems`` elements; it never materialises [B, N, d] (see :meth:`AdditivePooling.score`).
- ``multihead``: ``torch.nn.MultiheadAttention`` with one learned query vector over the history
  (``key_padding_mask``); weights are the head-averaged attention.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from divrec.errors import ConfigError


def _empty_rows(mask: torch.Tensor) -> torch.Tensor:
    """[B] bool: rows whose history is empty."""
    return ~mask.any(dim=1)


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to ``mask`` (broadcastable); all-masked rows -> 0."""
    logits = logits.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


def uniform_weights(mask: torch.Tensor) -> torch.Tensor:
    """1/|I| on real history items: ``mask [B, H] -> [B, H]`` (zeros for an empty history)."""
    m = mask.float()
    return m / m.sum(dim=1, keepdim=True).clamp_min(1.0)


def weighted_sum(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``weights [B, H], values [B, H, d] -> [B, d]``."""
    return torch.einsum("bh,bhd->bd", weights.to(values.dtype), values)


class HistoryPooling(nn.Module):
    """Base class. ``attentive``: the weights depend on the items (explanations use them);
    ``target_aware``: the weights depend on the candidate item."""

    attentive = False
    target_aware = False

    def weights(
        self, h: torch.Tensor, mask: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooling weights ``[B, H]``."""
        raise NotImplementedError

    def forward(
        self,
        h: torch.Tensor,
        mask: torch.Tensor,
        target: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = mask.bool()
        w = self.weights(h, mask, target)
        return weighted_sum(w, h if values is None else values), w


class MeanPooling(HistoryPooling):
    """Masked mean: weights 1/|I|."""

    def __init__(self, dim: int = 0) -> None:
        super().__init__()

    def weights(self, h, mask, target=None):
        return uniform_weights(mask)


class SimilarityPooling(HistoryPooling):
    """The seed's a_ui = s_ui / sum_j s_uj with s_ui = cos(mean(h), h_i) (module docstring)."""

    attentive = True

    def __init__(self, dim: int = 0, mode: str = "clamp", temperature: float = 0.1) -> None:
        super().__init__()
        if mode not in ("clamp", "softmax"):
            raise ConfigError(f"model.pooling.mode: '{mode}' is not one of clamp, softmax")
        if not float(temperature) > 0:
            raise ConfigError(f"model.pooling.temperature: must be > 0, got {temperature!r}")
        self.mode, self.temperature = mode, float(temperature)

    def weights(self, h, mask, target=None):
        first = weighted_sum(uniform_weights(mask), h)  # v_u, first pass: [B, d]
        s = F.cosine_similarity(h, first.unsqueeze(1).expand_as(h), dim=-1)  # [B, H]
        if self.mode == "softmax":
            return masked_softmax(s / self.temperature, mask)
        pos = s.clamp_min(0.0) * mask
        total = pos.sum(dim=1, keepdim=True)
        return torch.where(total > 0, pos / total.clamp_min(1e-12), uniform_weights(mask))


class AdditivePooling(HistoryPooling):
    """DIN-style target-aware attention: MLP over [h', c', h'*c', h'-c'] (module docstring).

    The MLP's output layer starts at zero, so the initial weights are uniform (mean pooling).
    """

    attentive = True
    target_aware = True

    def __init__(
        self, dim: int, attn_dim: int = 16, hidden: int = 16, chunk_elems: int = 1 << 24
    ) -> None:
        super().__init__()
        if dim < 1 or attn_dim < 1 or hidden < 1:
            raise ConfigError("model.pooling: additive needs dim, attn_dim and hidden >= 1")
        self.proj = nn.Linear(dim, attn_dim, bias=False)
        self.fc1 = nn.Linear(4 * attn_dim, hidden)
        self.fc2 = nn.Linear(hidden, 1)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.attn_dim, self.hidden, self.chunk_elems = attn_dim, hidden, int(chunk_elems)

    def logits(self, h: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        """Attention logits of each candidate over each history item.

        ``h [B, H, d]``, ``cands [B or 1, M, d]`` -> ``[B, M, H]``. The first layer on the
        concatenation is split into its four blocks, so the h' and c' terms cost O(B*H + M) and
        only the product term is [B, H, hidden, M] work, one batched matmul
        ((h'_k W_ok) @ c'^T) that never builds the [B, M, H, attn_dim] product.
        """
        a, m = self.attn_dim, self.hidden
        w = self.fc1.weight  # [hidden, 4a]: blocks for h', c', h'*c', h'-c'
        w_h, w_c, w_hc, w_d = w[:, :a], w[:, a : 2 * a], w[:, 2 * a : 3 * a], w[:, 3 * a :]
        hq, cq = self.proj(h), self.proj(cands)  # [B, H, a], [B|1, M, a]
        b, n_hist = hq.shape[:2]
        hw = (hq.unsqueeze(2) * w_hc).reshape(b, n_hist * m, a)  # [B, H*hidden, a]
        pre = (hw @ cq.transpose(1, 2)).view(b, n_hist, m, -1)  # [B, H, hidden, M]
        pre.add_((hq @ (w_h + w_d).T + self.fc1.bias).unsqueeze(-1))  # + [B, H, hidden, 1]
        pre.add_((cq @ (w_c - w_d).T).transpose(1, 2).unsqueeze(1))  # + [B|1, 1, hidden, M]
        out = self.fc2.weight.to(pre.dtype) @ pre.relu_()  # [B, H, 1, M]; in place: memory
        return (out.squeeze(2) + self.fc2.bias).transpose(1, 2)

    def candidate_weights(
        self, h: torch.Tensor, mask: torch.Tensor, cands: torch.Tensor
    ) -> torch.Tensor:
        """Weights of every candidate over the history: ``[B, M, H]`` (rows sum to 1)."""
        return masked_softmax(self.logits(h, cands), mask.bool().unsqueeze(1))

    def weights(self, h, mask, target=None):
        if target is None:  # no candidate: the history mean is the query
            target = weighted_sum(uniform_weights(mask), h)
        return self.candidate_weights(h, mask, target.unsqueeze(1)).squeeze(1)

    def chunk_size(self, batch: int, hist: int) -> int:
        """Candidates per chunk so one chunk's [B, M, H, max(attn_dim, hidden)] stays small."""
        per = max(1, batch * hist * max(self.attn_dim, self.hidden))
        return max(1, self.chunk_elems // per)

    def score(
        self,
        h: torch.Tensor,
        mask: torch.Tensor,
        values: torch.Tensor,
        items: torch.Tensor,
        item_sim: Callable[[int, int], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cosine of the candidate-specific user vector with each item, in item chunks.

        For candidate n, u_bn = sum_h a_bnh values_bh and the score is <u_bn, v_n> / |u_bn|,
        computed as (a . G) / sqrt(a^T K a) with G = values @ items^T and K = values values^T,
        so nothing [B, N, d] is built. ``h [B, H, d]`` (attention keys), ``mask [B, H]``,
        ``values [B, H, d]``, ``items [N, d]`` -> ``scores [B, N]``. ``item_sim(s, e)`` gives
        [B, H, e - s] history-to-item similarities for the chunk [s, e); with it, also returns
        sum_h a_bnh item_sim_bhn [B, N] (the item-based CF score with these weights), else None.
        """
        mask = mask.bool()
        b, n_hist = mask.shape
        gram = values @ values.transpose(1, 2)  # [B, H, H]
        step = self.chunk_size(b, n_hist)
        scores, cf = [], []
        for s in range(0, items.shape[0], step):
            chunk = items[s : s + step]
            a = self.candidate_weights(h, mask, chunk.unsqueeze(0))  # [B, n, H]
            num = torch.einsum("bnh,bhn->bn", a, values @ chunk.T)
            norm2 = torch.einsum("bnh,bhk,bnk->bn", a, gram, a)
            scores.append(num / norm2.clamp_min(0.0).sqrt().clamp_min(1e-12))
            if item_sim is not None:
                cf.append(torch.einsum("bnh,bhn->bn", a, item_sim(s, s + len(chunk))))
        return torch.cat(scores, 1), (torch.cat(cf, 1) if item_sim is not None else None)


class MultiheadPooling(HistoryPooling):
    """A learned query vector attends over the history with ``nn.MultiheadAttention``."""

    attentive = True

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim < 1 or heads < 1 or dim % heads:
            raise ConfigError(f"model.pooling.heads: {heads} must divide the vector size {dim}")
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.query = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)

    def _attend(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        empty = _empty_rows(mask)
        # A row with every key masked would give NaN: let it attend, then zero it below.
        pad = ~(mask | empty.unsqueeze(1))
        q = self.query.expand(h.shape[0], 1, -1).to(h.dtype)
        out, w = self.attn(q, h, h, key_padding_mask=pad, need_weights=True)
        keep = (~empty).to(h.dtype).unsqueeze(1)
        return out.squeeze(1) * keep, w.squeeze(1) * keep

    def weights(self, h, mask, target=None):
        return self._attend(h, mask)[1]

    def forward(self, h, mask, target=None, values=None):
        mask = mask.bool()
        if values is not None:  # pool other vectors with the attention over h
            w = self.weights(h, mask)
            return weighted_sum(w, values), w
        return self._attend(h, mask)


POOLINGS: dict[str, type[HistoryPooling]] = {
    "mean": MeanPooling,
    "similarity": SimilarityPooling,
    "additive": AdditivePooling,
    "multihead": MultiheadPooling,
}


def build_history_pooling(name: str = "mean", dim: int = 0, **kwargs) -> HistoryPooling:
    """Pooling module by name (``model.pooling.name``); other keys go to its constructor."""
    if name not in POOLINGS:
        raise ConfigError(f"model.pooling.name: '{name}' unknown; choose from {sorted(POOLINGS)}")
    try:
        return POOLINGS[name](dim=dim, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model.pooling ({name}): {e}") from None
