"""Two towers over a language-model encoder: item vectors v_i and user vectors v_u.

The item tower encodes item text; the user tower either encodes the user's text (``text``,
the seed's v_u from d_u) or pools the vectors of the user's training items (``history``,
with a ``model.pooling`` from :mod:`divrec.models.pooling`: the head follows the pooling,
except for target-aware poolings, which pool head-transformed history items).
Both end in a residual head and L2 normalisation, so scores are cosines s_ui = <v_u, v_i>.

With ``model.image.encoder`` set, each item's pooled text vector is first fused with its
frozen image vector (:mod:`divrec.models.fusion`; vectors from
:mod:`divrec.models.image_encoder`, attached with :meth:`TwoTower.attach_images`).

Under ``finetune=frozen`` the backbone's pooled outputs for all items (and user texts) are
computed once through :class:`~divrec.models.embed_cache.EmbeddingCache` and only the
heads, ID embeddings and temperature train: the CPU default.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from divrec.errors import ConfigError
from divrec.models.encoder import TextEncoder
from divrec.models.fusion import FUSIONS, ImageFusion
from divrec.models.pooling import build_history_pooling

log = logging.getLogger(__name__)


class ResidualHead(nn.Module):
    """x -> x + W2 gelu(W1 x) (W2 zero-initialised: starts as the identity), then optional
    projection to ``out_dim``. ``x``: [B, H] -> [B, out_dim or H]."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, out_dim, bias=False) if out_dim else nn.Identity()
        self.out_dim = out_dim or dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x + self.fc2(self.drop(F.gelu(self.fc1(x)))))


class TwoTower(nn.Module):
    """Item and user towers.

    ``item_tokens``/``user_tokens`` are attached with :meth:`attach` (the catalogue's token ids
    [N, L]); they are data, not parameters, and are not saved in checkpoints.
    """

    def __init__(
        self,
        n_items: int,
        n_users: int,
        encoder: dict,
        user_tower: str = "text",
        share_encoder: bool = True,
        head_hidden: int = 512,
        projection_dim: int | None = None,
        dropout: float = 0.1,
        id_embeddings: bool = False,
        temperature: float = 0.05,
        learn_temperature: bool = True,
        pooling: dict | None = None,
        image: dict | None = None,
    ) -> None:
        super().__init__()
        if user_tower not in ("text", "history"):
            raise ConfigError(f"model.user_tower: '{user_tower}' is not one of text, history")
        self.user_tower = user_tower
        self.item_encoder = TextEncoder(**encoder)
        if user_tower == "text" and not share_encoder:
            self.user_encoder = TextEncoder(**encoder)
        else:
            self.user_encoder = self.item_encoder
        self.frozen = encoder.get("finetune", "frozen") == "frozen"
        hidden = self.item_encoder.hidden_size
        self.item_head = ResidualHead(hidden, head_hidden, projection_dim, dropout)
        dim = self.item_head.out_dim
        if user_tower == "text":
            self.user_head = ResidualHead(hidden, head_hidden, projection_dim, dropout)
        else:  # the history tower's head maps pooled item vectors (already [d]) to [d]
            self.user_head = ResidualHead(dim, head_hidden, None, dropout)
        self.dim = dim
        self.item_id = nn.Embedding(n_items, dim) if id_embeddings else None
        self.user_id = nn.Embedding(n_users, dim) if id_embeddings else None
        for emb in (self.item_id, self.user_id):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.01)
        self.pool = build_history_pooling(dim=dim, **(pooling or {"name": "mean"}))
        log_t = torch.tensor(math.log(temperature))
        self.log_temperature = nn.Parameter(log_t, requires_grad=learn_temperature)
        self.item_tokens: tuple[torch.Tensor, torch.Tensor] | None = None
        self.user_tokens: tuple[torch.Tensor, torch.Tensor] | None = None
        self.register_buffer("item_base", torch.empty(0), persistent=False)
        self.register_buffer("user_base", torch.empty(0), persistent=False)
        self.image_fusion = build_image_fusion(hidden, image)
        self.register_buffer("item_image", torch.empty(0), persistent=False)  # [N, D]
        self.register_buffer("item_has_image", torch.empty(0, dtype=torch.bool), persistent=False)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(1e-3, 10.0)

    # ------------------------------------------------------------- data
    def attach(self, item_tokens, user_tokens, item_base=None, user_base=None) -> None:
        """Give the towers the catalogue's tokens (and frozen pooled vectors [N, H], [T, H]).

        User texts have T >= U rows: row u < U is user u's full-history text; training pairs
        point at other rows (texts without the pair's positive) through ``user_text_idx``."""
        self.item_tokens = (item_tokens.input_ids, item_tokens.attention_mask)
        self.user_tokens = (user_tokens.input_ids, user_tokens.attention_mask)
        device = self.log_temperature.device
        if item_base is not None:
            self.item_base = item_base.to(device)
        if user_base is not None:
            self.user_base = user_base.to(device)

    def attach_images(self, vectors: torch.Tensor, has_image: torch.Tensor) -> None:
        """Frozen image vectors of the catalogue ``[N, D]`` and the has-image mask ``[N]``."""
        device = self.log_temperature.device
        self.item_image = vectors.float().to(device)
        self.item_has_image = has_image.bool().to(device)

    def _tokens(self, which: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.item_tokens if which == "item" else self.user_tokens
        m = mask[idx.cpu()]
        length = max(1, int(m.sum(1).max()))
        dev = idx.device
        return ids[idx.cpu(), :length].to(dev), m[:, :length].to(dev)

    # ------------------------------------------------------------- towers
    def item_vectors(self, idx: torch.Tensor) -> torch.Tensor:
        """v_i for item indices ``idx`` [B] -> [B, d] (unique items encoded once)."""
        uniq, inverse = torch.unique(idx, return_inverse=True)
        if self.frozen:
            base = self.item_base[uniq]
        else:
            base = self.item_encoder.pool_backbone(*self._tokens("item", uniq))
        base = base.float()
        if self.image_fusion is not None:
            if self.item_image.numel() == 0:
                raise ConfigError("model.image.encoder is set but no image vectors are attached")
            base = self.image_fusion(base, self.item_image[uniq], self.item_has_image[uniq])
        v = self.item_head(base)
        if self.item_id is not None:
            v = v + self.item_id(uniq)
        return F.normalize(v, dim=-1)[inverse]

    def all_item_vectors(self, batch_size: int = 512) -> torch.Tensor:
        """Vectors of the whole catalogue: [N, d]."""
        n = self.item_tokens[0].shape[0] if self.item_tokens else self.item_base.shape[0]
        dev = self.log_temperature.device
        out = [
            self.item_vectors(torch.arange(s, min(n, s + batch_size), device=dev))
            for s in range(0, n, batch_size)
        ]
        return torch.cat(out)

    def history_vectors(
        self, hist: torch.Tensor, item_vecs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Item vectors of history indices ``hist`` [B, H] -> [B, H, d] (from ``item_vecs``
        [N, d] when given, else encoded)."""
        if item_vecs is not None:
            return item_vecs[hist]
        return self.item_vectors(hist.flatten()).view(*hist.shape, -1)

    def history_values(self, h: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """What a target-aware pooling averages: the user head applied per history item (plus
        the user's ID embedding): ``h [B, H, d] -> [B, H, d]``. Pooling after the head keeps
        the candidate-specific user vector linear in the weights, so full-catalogue scoring
        needs no [B, N, d] tensor (see ``AdditivePooling.score``)."""
        g = self.user_head(h)
        if self.user_id is not None and users is not None:
            g = g + self.user_id(users.clamp_min(0)).unsqueeze(1) * (users >= 0)[:, None, None]
        return g

    def pool_history(
        self, h: torch.Tensor, mask: torch.Tensor, users: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """History tower: ``h [B, H, d], mask [B, H]`` -> (v_u [B, d] normalised, weights
        [B, H]). ``users`` [B] (training-user indices, -1 for none) adds ID embeddings. A
        target-aware pooling uses the history mean as the query here."""
        if self.pool.target_aware:
            v, w = self.pool(h, mask, values=self.history_values(h, users))
            return F.normalize(v, dim=-1), w
        pooled, w = self.pool(h, mask)
        v = self.user_head(pooled)
        if self.user_id is not None and users is not None:
            v = v + self.user_id(users.clamp_min(0)) * (users >= 0)[:, None]
        return F.normalize(v, dim=-1), w

    def target_scores(
        self, batch: dict, items: torch.Tensor, item_vecs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Target-aware scores of the batch's users against ``items`` [M, d] -> [B, M]: each
        candidate gets its own user vector (``model.pooling`` additive)."""
        h = self.history_vectors(batch["history_idx"], item_vecs)
        values = self.history_values(h, batch.get("user_idx"))
        return self.pool.score(h, batch["history_mask"].bool(), values, items)[0]

    def encode_user_texts(
        self, users: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Pooled backbone output of the batch's user texts: ``users [B]`` (text rows, see
        :meth:`attach`), ``ids, mask [B, L]`` -> ``[B, H]``. A text met several times in the
        batch (training pairs of active users) is encoded once, cut to the longest unique
        text; rows with index -1 (users unknown to training, each with its own text) are
        always encoded."""
        if bool((users < 0).any()):
            return self.user_encoder.pool_backbone(ids, mask)
        uniq, inverse = torch.unique(users, return_inverse=True)
        rows = torch.arange(len(users), device=users.device)
        first = torch.full_like(uniq, len(users)).scatter_reduce(0, inverse, rows, "amin")
        m = mask[first]
        length = max(1, int(m.sum(1).max()))
        return self.user_encoder.pool_backbone(ids[first, :length], m[:, :length])[inverse]

    def user_vectors_and_weights(
        self, batch: dict, item_vecs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(v_u [B, d], history pooling weights [B, H] or None for the text tower).

        The text tower reads text row ``batch["user_text_idx"]`` [B] (default: ``user_idx``,
        the full-history text); ID embeddings always use ``user_idx`` [B]."""
        users = batch["user_idx"]
        if self.user_tower == "history":
            h = self.history_vectors(batch["history_idx"], item_vecs)
            return self.pool_history(h, batch["history_mask"].bool(), users)
        rows = batch.get("user_text_idx", users)
        if self.frozen:
            base = self.user_base[rows]
        else:
            base = self.encode_user_texts(
                rows, batch["user_input_ids"], batch["user_attention_mask"]
            )
        v = self.user_head(base.float())
        if self.user_id is not None:
            v = v + self.user_id(users)
        return F.normalize(v, dim=-1), None

    def user_vectors(self, batch: dict, item_vecs: torch.Tensor | None = None) -> torch.Tensor:
        """v_u for a batch -> [B, d]. ``item_vecs`` ([N, d]) avoids re-encoding history items."""
        return self.user_vectors_and_weights(batch, item_vecs)[0]


IMAGE_KEYS = ("encoder", "fusion", "batch_size")


def build_image_fusion(text_dim: int, image: dict | None) -> ImageFusion | None:
    """The fusion module of ``model.image`` (None when ``image.encoder`` is null)."""
    image = dict(image or {})
    unknown = sorted(set(image) - set(IMAGE_KEYS))
    if unknown:
        raise ConfigError(f"model.image: unknown key(s) {unknown}; allowed {list(IMAGE_KEYS)}")
    fusion = str(image.get("fusion", "concat"))
    if fusion not in FUSIONS:
        raise ConfigError(f"model.image.fusion: expected one of {FUSIONS}, got {fusion!r}")
    if not image.get("encoder"):
        return None
    from divrec.models.image_encoder import image_feature_dim

    dim = image_feature_dim(str(image["encoder"]))
    return ImageFusion(text_dim, dim, fusion)
