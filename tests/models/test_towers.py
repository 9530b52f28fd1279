"""Two towers: repeated users/items in a batch are encoded once and get identical vectors."""

import torch

from divrec.models.towers import TwoTower


def _towers(tiny_model_dir):
    torch.manual_seed(0)
    net = TwoTower(
        n_items=5,
        n_users=4,
        encoder={"pretrained": tiny_model_dir, "finetune": "full"},
        head_hidden=16,
        dropout=0.0,
    )
    return net.eval()


def _rows_seen(backbone_owner):
    """Records the batch size of every backbone call."""
    seen: list[int] = []

    def hook(mod, args, kwargs):
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        seen.append(int(ids.shape[0]))

    backbone_owner.backbone.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def test_repeated_users_are_encoded_once_with_the_same_vectors(tiny_model_dir, tok):
    net = _towers(tiny_model_dir)
    texts = ["likes red shoes", "a long text about many different things", "tea", "green tea"]
    enc = tok(texts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    users = torch.tensor([2, 0, 2, 2, 3, 0])
    seen = _rows_seen(net.user_encoder)
    with torch.no_grad():
        dedup = net.encode_user_texts(users, ids[users], mask[users])
        per_row = torch.stack(
            [net.user_encoder.pool_backbone(ids[u : u + 1], mask[u : u + 1])[0] for u in users]
        )
    assert seen[0] == 3  # users 0, 2, 3: one backbone row each
    torch.testing.assert_close(dedup, per_row, atol=1e-5, rtol=1e-5)
    # Unknown users (-1) carry their own texts: nothing is merged.
    seen.clear()
    with torch.no_grad():
        net.encode_user_texts(torch.tensor([-1, -1, 0]), ids[[1, 2, 0]], mask[[1, 2, 0]])
    assert seen == [3]


def test_repeated_items_are_encoded_once_with_the_same_vectors(tiny_model_dir, tok):
    net = _towers(tiny_model_dir)
    enc = tok(["a", "bb cc", "dd", "ee ff gg", "hh"], padding=True, return_tensors="pt")

    class Tokens:
        input_ids, attention_mask = enc["input_ids"], enc["attention_mask"]

    net.attach(Tokens, Tokens)
    seen = _rows_seen(net.item_encoder)
    idx = torch.tensor([4, 1, 4, 4, 0])
    with torch.no_grad():
        v = net.item_vectors(idx)
        alone = torch.cat([net.item_vectors(torch.tensor([i])) for i in idx.tolist()])
    assert seen[0] == 3
    torch.testing.assert_close(v, alone, atol=1e-5, rtol=1e-5)


def test_text_tower_reads_the_batch_text_rows_not_the_user_rows(tiny_model_dir, tok):
    """Two pairs of one user with different texts (fold variants) get different vectors, each
    that of its own text, in the trainable and the frozen path; ID embeddings follow the user."""
    net = _towers(tiny_model_dir)
    texts = ["likes red shoes", "tea", "red shoes only", "likes tea and shoes"]
    enc = tok(texts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    users, rows = torch.tensor([0, 0, 1]), torch.tensor([2, 3, 1])
    batch = {
        "user_idx": users,
        "user_text_idx": rows,
        "user_input_ids": ids[rows],
        "user_attention_mask": mask[rows],
    }
    with torch.no_grad():
        v = net.user_vectors(batch)
        one = [
            {"user_idx": torch.tensor([r]), "user_input_ids": ids[r : r + 1]}
            | {"user_attention_mask": mask[r : r + 1]}
            for r in rows.tolist()
        ]
        alone = torch.cat([net.user_vectors(b) for b in one])  # each text on its own
        torch.testing.assert_close(v, alone, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(v[0], v[1])
        net.frozen = True  # frozen path: pooled vectors per text row
        base = torch.randn(len(texts), net.item_encoder.hidden_size)
        net.user_base = base
        want = torch.nn.functional.normalize(net.user_head(base[rows]), dim=-1)
        torch.testing.assert_close(net.user_vectors(batch), want)
