"""Collaborative-filtering variants: how the trained user and item vectors are combined at
scoring time (``model.cf``).

The variant does not change training: the relevance loss stays the in-batch softmax (or BPR)
over s_ui = cos(v_u, v_i). It changes full-catalogue scoring (val/test, ``divrec.serve.recommend``);
``item_based`` and ``user_based`` add no parameters, a learned ``hybrid`` adds three.

- ``two_tower``: score(u, i) = s_ui (with a target-aware pooling, the user vector is built for
  each candidate i).
- ``item_based``: score(u, i) = sum_{j in H_u} a_uj cos(v_j, v_i), a_uj the history pooling's
  weights (uniform for ``mean``, candidate-specific for ``additive``). ``top_n``: keep
  cos(v_j, v_i) only when i is among the ``top_n`` items most similar to j (j itself excluded).
- ``user_based``: score(u, i) = sum_{u' in N_k(u)} cos(v_u, v_u') r_u'i over the k training
  users nearest to u in embedding space (u itself and users without training interactions
  excluded); r is the binary training matrix.
- ``hybrid``: sum_c w_c score_c over the three, with the user-based part divided by
  sum |cos(v_u, v_u')| over the neighbours so that every part is a weighted average on the
  cosine scale. ``weights`` fixes w; ``learn: true`` learns w = exp(theta) with an extra
  in-batch softmax over the mix of the (detached) component scores, so the representations
  still train on s_ui alone.

:meth:`CFScorer.build_context` precomputes what scoring needs at each eval start (all item
vectors; item neighbour lists; every training user's vector and the sparse training matrix),
batched on the device with no Python loop over users or items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from divrec.errors import ConfigError

VARIANTS = ("two_tower", "item_based", "user_based", "hybrid")
COMPONENTS = ("two_tower", "item_based", "user_based")
# Learned hybrid weights start at w_c * 20 (= 1 / temperature 0.05): the mix's in-batch logits
# then have the scale of s / T.
LEARNED_SCALE = 20.0


@dataclass
class CFContext:
    """Catalogue-wide tensors for scoring (one eval pass, or one ``recommend`` call)."""

    items: Tensor  # [N, d] item vectors
    neighbours: tuple[Tensor, Tensor] | None = None  # (indices [N, n], cosines [N, n])
    users: Tensor | None = None  # [U, d] every training user's vector
    active: Tensor | None = None  # [U] bool: users with at least one training interaction
    interactions: Tensor | None = None  # sparse COO [N, U]: 1 where user u' has item i in train


@dataclass
class Query:
    """The users being scored."""

    hist: Tensor  # [B, H] history item indices (into ``CFContext.items``)
    mask: Tensor  # [B, H] bool, real history items
    user_vecs: Tensor  # [B, d] v_u
    weights: Tensor  # [B, H] history pooling weights a_uj
    users: Tensor | None = None  # [B] training-user indices (-1: a user unknown to training)


def item_neighbours(items: Tensor, n: int, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """Each item's ``n`` most similar other items: ``items [N, d]`` -> (indices, cosines) [N, n]."""
    num = items.shape[0]
    n = max(0, min(int(n), num - 1))
    idx, val = [], []
    for s in range(0, num, chunk):
        sims = items[s : s + chunk] @ items.T  # [c, N]
        rows = torch.arange(sims.shape[0], device=items.device)
        sims[rows, rows + s] = float("-inf")  # not its own neighbour
        v, i = sims.topk(n, dim=1)
        idx.append(i)
        val.append(v)
    return torch.cat(idx), torch.cat(val)


def item_based_scores(
    weights: Tensor,
    hist: Tensor,
    mask: Tensor,
    items: Tensor,
    neighbours: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """sum_j a_uj cos(v_j, v_i): ``weights, hist, mask [B, H]``, ``items [N, d]`` -> [B, N]."""
    w = weights * mask
    if neighbours is None:
        return torch.einsum("bh,bhd->bd", w, items[hist]) @ items.T
    nb_idx, nb_sim = neighbours[0][hist], neighbours[1][hist]  # [B, H, n]
    out = torch.zeros(hist.shape[0], items.shape[0], device=items.device, dtype=items.dtype)
    src = (nb_sim * w.unsqueeze(-1)).flatten(1).to(out.dtype)  # autocast may give bf16
    return out.scatter_add_(1, nb_idx.flatten(1), src)


def train_matrix(users: Tensor, items: Tensor, n_users: int, n_items: int) -> Tensor:
    """Binary sparse [N, U] (items x users) from training pairs ``users, items [nnz]``."""
    ind = torch.stack([items, users])
    ones = torch.ones(ind.shape[1], device=ind.device)
    r = torch.sparse_coo_tensor(ind, ones, (n_items, n_users), check_invariants=False).coalesce()
    return torch.sparse_coo_tensor(
        r.indices(), r.values().clamp_max(1.0), r.shape, check_invariants=False
    ).coalesce()


def user_based_scores(
    user_vecs: Tensor, users: Tensor | None, ctx: CFContext, k: int, normalise: bool = False
) -> Tensor:
    """sum_{u' in N_k(u)} cos(v_u, v_u') r_u'i: ``user_vecs [B, d]`` -> [B, N].

    ``normalise`` divides by sum |cos| over the neighbours (the hybrid's scale).
    """
    if ctx.users is None or ctx.interactions is None or ctx.active is None:
        raise RuntimeError("user_based scoring needs CFContext.users/interactions/active")
    sims = user_vecs @ ctx.users.T  # [B, U]
    invalid = (~ctx.active).unsqueeze(0).expand_as(sims)
    if users is not None:
        own = torch.arange(sims.shape[1], device=sims.device) == users.unsqueeze(1)
        invalid = invalid | own
    sims = sims.masked_fill(invalid, float("-inf"))
    val, idx = sims.topk(max(1, min(int(k), sims.shape[1])), dim=1)
    val = torch.where(torch.isfinite(val), val, torch.zeros_like(val))
    w = torch.zeros_like(sims).scatter_(1, idx, val)  # [B, U], k non-zeros per row
    r = ctx.interactions
    scores = torch.sparse.mm(r, w.T.to(r.dtype)).T  # [B, N]
    if normalise:
        scores = scores / val.abs().sum(1, keepdim=True).clamp_min(1e-12)
    return scores


def _check_weights(weights: dict | None) -> dict[str, float]:
    w = {c: 1.0 for c in COMPONENTS} if weights is None else dict(weights)
    unknown = sorted(set(w) - set(COMPONENTS))
    if unknown:
        raise ConfigError(f"model.cf.weights: unknown part(s) {unknown}; use {list(COMPONENTS)}")
    out = {c: float(w.get(c, 0.0)) for c in COMPONENTS}
    if any(v < 0 for v in out.values()) or not any(v > 0 for v in out.values()):
        raise ConfigError(f"model.cf.weights: need >= 0 values, one > 0; got {out}")
    return out


class CFScorer(nn.Module):
    """Scoring rule ``model.cf.name`` (module docstring); ``explain``: history items named
    per recommendation in the ``because`` column (0: off)."""

    def __init__(
        self,
        name: str = "two_tower",
        explain: int = 3,
        top_n: int | None = None,
        k: int = 50,
        weights: dict | None = None,
        learn: bool = False,
    ) -> None:
        super().__init__()
        if name not in VARIANTS:
            raise ConfigError(f"model.cf.name: '{name}' unknown; choose from {list(VARIANTS)}")
        if top_n is not None and int(top_n) < 1:
            raise ConfigError(f"model.cf.top_n: expected a positive int or null, got {top_n!r}")
        if int(k) < 1:
            raise ConfigError(f"model.cf.k: expected a positive int, got {k!r}")
        self.name, self.explain, self.top_n, self.k = name, int(explain), top_n, int(k)
        self.learn = bool(learn) and name == "hybrid"
        fixed = _check_weights(weights) if name == "hybrid" else {name: 1.0}
        self.fixed = fixed
        if self.learn:
            init = torch.tensor([max(fixed.get(c, 0.0), 1e-3) * LEARNED_SCALE for c in COMPONENTS])
            self.log_mix = nn.Parameter(init.log())
        else:
            self.register_parameter("log_mix", None)

    def mix(self) -> dict[str, Tensor | float]:
        """Weight of each component used (learned ones as tensors)."""
        if self.log_mix is not None:
            return dict(zip(COMPONENTS, self.log_mix.exp().unbind(), strict=True))
        return {c: w for c, w in self.fixed.items() if w > 0}

    def uses(self, component: str) -> bool:
        return component in self.mix()

    # ------------------------------------------------------------------ precompute
    @torch.no_grad()
    def build_context(
        self,
        net,
        items: Tensor,
        recent: Tensor,
        recent_mask: Tensor,
        train_users: Tensor,
        train_items: Tensor,
        batch_size: int = 1024,
    ) -> CFContext:
        """Everything scoring needs: ``items [N, d]``; ``recent, recent_mask [U, H]`` (each
        training user's history, for their vectors); training pairs ``[nnz]``."""
        ctx = CFContext(items)
        if self.uses("item_based") and self.top_n:
            ctx.neighbours = item_neighbours(items, self.top_n)
        if self.uses("user_based"):
            n_users, dev = recent.shape[0], items.device
            vecs = []
            for s in range(0, n_users, batch_size):
                idx = torch.arange(s, min(n_users, s + batch_size), device=dev)
                batch = {
                    "user_idx": idx,
                    "history_idx": recent[idx],
                    "history_mask": recent_mask[idx],
                }
                if net.user_tower == "text" and not net.frozen:
                    batch["user_input_ids"], batch["user_attention_mask"] = net._tokens("user", idx)
                vecs.append(net.user_vectors(batch, items))
            ctx.users = torch.cat(vecs)
            train_users, train_items = train_users.to(dev), train_items.to(dev)
            ctx.active = torch.bincount(train_users, minlength=n_users) > 0
            ctx.interactions = train_matrix(train_users, train_items, n_users, items.shape[0])
        return ctx

    # ------------------------------------------------------------------ scoring
    def components(
        self, net, q: Query, ctx: CFContext, names: set[str] | None = None
    ) -> dict[str, Tensor]:
        """Full-catalogue scores [B, N] of each component in ``names`` (default: those used)."""
        names = set(self.mix()) if names is None else names
        out: dict[str, Tensor] = {}
        target_aware = net.user_tower == "history" and net.pool.target_aware
        if target_aware and names & {"two_tower", "item_based"}:
            h = ctx.items[q.hist]
            sim = self._item_sim(h, q.hist, ctx) if "item_based" in names else None
            tt, ib = net.pool.score(h, q.mask, net.history_values(h, q.users), ctx.items, sim)
            out["two_tower"] = tt
            if ib is not None:
                out["item_based"] = ib
        else:
            if "two_tower" in names:
                out["two_tower"] = q.user_vecs @ ctx.items.T
            if "item_based" in names:
                out["item_based"] = item_based_scores(
                    q.weights, q.hist, q.mask, ctx.items, ctx.neighbours
                )
        if "user_based" in names:
            out["user_based"] = user_based_scores(
                q.user_vecs, q.users, ctx, self.k, normalise=self.name == "hybrid"
            )
        return {c: out[c] for c in names}

    @staticmethod
    def _item_sim(h: Tensor, hist: Tensor, ctx: CFContext):
        """Chunk function (s, e) -> cos(v_j, v_i) [B, H, e - s] (top-n restricted if set)."""
        if ctx.neighbours is None:
            return lambda s, e: h @ ctx.items[s:e].T
        nb_idx, nb_sim = ctx.neighbours[0][hist], ctx.neighbours[1][hist]  # [B, H, n]

        def chunk(s: int, e: int) -> Tensor:
            inside = (nb_idx >= s) & (nb_idx < e)
            out = torch.zeros(*hist.shape, e - s, device=h.device, dtype=h.dtype)
            pos = (nb_idx - s).clamp(0, e - s - 1)
            src = torch.where(inside, nb_sim, torch.zeros_like(nb_sim)).to(out.dtype)
            return out.scatter_add_(2, pos, src)

        return chunk

    def score(self, net, q: Query, ctx: CFContext) -> Tensor:
        """Full-catalogue scores [B, N] of the configured variant."""
        mix = self.mix()
        comps = self.components(net, q, ctx, set(mix))
        if self.name != "hybrid":
            return comps[self.name]
        return sum(w * comps[c] for c, w in mix.items())
