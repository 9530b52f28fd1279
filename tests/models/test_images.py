"""Image features: tiny random vision encoders (ViT, CLIP's vision tower, a whole CLIP) against
their models run by hand, the image-vector cache (hit, miss, invalidation by image and by
encoder, missing and unreadable files), fusion against hand computations, items without an
image, config errors, and an end-to-end run on shop_sim's rendered images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from divrec.errors import ConfigError
from divrec.models.embed_cache import EmbeddingCache
from divrec.models.fusion import ImageFusion
from divrec.models.image_encoder import ImageEncoder, cached_image_vectors, image_feature_dim
from divrec.models.tiny import build_tiny_vision
from divrec.models.towers import TwoTower


@pytest.fixture(scope="module")
def vision(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("vision")
    out = {a: build_tiny_vision(root / a, arch=a, seed=0) for a in ("vit", "clip_vision", "clip")}
    out["vit_seed1"] = build_tiny_vision(root / "vit1", arch="vit", seed=1)
    return out


def _images(n: int, size: int = 32, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)
    ]


def test_vit_vectors_match_the_model_run_by_hand(vision):
    from transformers import ViTModel

    imgs = _images(3)  # already 32 x 32: resizing keeps them as they are
    # the processor by hand: rescale to [0, 1], normalise with mean = std = 0.5, CHW
    pixels = torch.stack(
        [torch.from_numpy(np.asarray(i, dtype=np.float32) / 255.0).permute(2, 0, 1) for i in imgs]
    )
    pixels = (pixels - 0.5) / 0.5
    model = ViTModel.from_pretrained(vision["vit"]).eval()
    with torch.no_grad():
        ref = model(pixel_values=pixels).pooler_output
    enc = ImageEncoder(vision["vit"])
    torch.testing.assert_close(enc.encode(imgs), ref, atol=1e-5, rtol=1e-4)
    assert image_feature_dim(vision["vit"]) == enc.output_dim == 32
    assert not any(p.requires_grad for p in enc.parameters())


def test_clip_vision_tower_and_whole_clip(vision):
    from transformers import AutoImageProcessor, CLIPModel, CLIPVisionModel

    imgs = _images(2, size=40)
    pixels = AutoImageProcessor.from_pretrained(vision["clip"])(images=imgs, return_tensors="pt")
    assert tuple(pixels["pixel_values"].shape) == (2, 3, 32, 32)  # shortest edge, centre crop
    with torch.no_grad():
        tower = CLIPVisionModel.from_pretrained(vision["clip_vision"]).eval()
        ref_tower = tower(pixel_values=pixels["pixel_values"]).pooler_output
        clip = CLIPModel.from_pretrained(vision["clip"]).eval()
        pooled = clip.vision_model(pixel_values=pixels["pixel_values"]).pooler_output
        ref_clip = clip.visual_projection(pooled)
    torch.testing.assert_close(ImageEncoder(vision["clip_vision"]).encode(imgs), ref_tower)
    out = ImageEncoder(vision["clip"]).encode(imgs)
    assert out.shape == (2, 16) and image_feature_dim(vision["clip"]) == 16
    torch.testing.assert_close(out, ref_clip)


def _write(folder, n: int) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(_images(n, seed=5)):
        img.save(folder / f"{i}.png")
        paths.append(folder / f"{i}.png")
    return paths


def test_image_cache_hit_miss_and_invalidation(vision, tmp_path):
    cache = EmbeddingCache(tmp_path / "emb")
    files = _write(tmp_path / "img", 4)
    bad = tmp_path / "img" / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    table = [files[0], None, files[1], bad, files[2], files[3]]
    v, has, hit = cached_image_vectors(cache, vision["vit"], table)
    assert not hit and v.shape == (6, 32)
    assert has.tolist() == [True, False, True, False, True, True]
    assert (v[~has] == 0).all()
    ref = ImageEncoder(vision["vit"]).encode([Image.open(f).convert("RGB") for f in files])
    torch.testing.assert_close(v[has], ref, atol=1e-5, rtol=1e-4)
    v2, has2, hit2 = cached_image_vectors(cache, vision["vit"], table)
    assert hit2 and torch.equal(v2, v) and torch.equal(has2, has)
    # a changed image: a new entry, only its row differs
    Image.new("RGB", (32, 32), (250, 0, 0)).save(files[1])
    v3, _, hit3 = cached_image_vectors(cache, vision["vit"], table)
    assert not hit3
    changed = (v3 - v).abs().sum(1) > 1e-6
    assert changed.tolist() == [False, False, True, False, False, False]
    # another encoder (other weights): a new entry
    _, _, hit4 = cached_image_vectors(cache, vision["vit_seed1"], table)
    assert not hit4
    assert len(list((tmp_path / "emb").glob("images-*.safetensors"))) == 3


def _hand_fusion(f: ImageFusion, t, x, m):
    xs = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5)
    if f.mode == "gated":
        g = torch.sigmoid(torch.cat([t, xs], 1) @ f.gate.weight.T + f.gate.bias)
        return t + m[:, None] * g * (xs @ f.proj.weight.T)
    xm = torch.where(m[:, None] > 0, xs, f.missing.expand_as(xs))
    if f.mode == "concat":
        return torch.cat([t, xm], 1) @ f.proj.weight.T + f.proj.bias
    return t + xm @ f.proj.weight.T


@pytest.mark.parametrize("mode", ["concat", "sum", "gated"])
def test_fusion_against_a_hand_computation(mode):
    torch.manual_seed(0)
    f = ImageFusion(6, 4, mode)
    t, x = torch.randn(5, 6), torch.randn(5, 4) * 3 + 1
    m = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    torch.testing.assert_close(f(t, x, m.bool()), t)  # starts as the text vector alone
    with torch.no_grad():
        for p in f.parameters():
            p.copy_(torch.randn_like(p))
    out = f(t, x, m.bool())
    assert out.shape == (5, 6)
    torch.testing.assert_close(out, _hand_fusion(f, t, x, m), atol=1e-5, rtol=1e-5)
    if mode == "gated":  # no image: gate 0, the text vector exactly, whatever x holds
        torch.testing.assert_close(out[m == 0], t[m == 0])
        x2 = x.clone()
        x2[m == 0] = 100.0
        torch.testing.assert_close(f(t, x2, m.bool())[m == 0], t[m == 0])
    else:  # no image: the learned no-image vector, whatever x holds
        x2 = x.clone()
        x2[m == 0] = -7.0
        torch.testing.assert_close(f(t, x2, m.bool()), out)


@pytest.mark.parametrize("fusion", ["concat", "sum", "gated"])
def test_items_without_images_score_and_train(vision, tiny_model_dir, fusion):
    net = TwoTower(
        n_items=4,
        n_users=2,
        encoder={"pretrained": tiny_model_dir},
        head_hidden=8,
        dropout=0.0,
        image={"encoder": vision["clip"], "fusion": fusion},
    )
    torch.manual_seed(1)
    net.item_base = torch.randn(4, net.item_encoder.hidden_size)
    with pytest.raises(ConfigError, match="no image vectors are attached"):
        net.item_vectors(torch.arange(4))
    net.attach_images(torch.randn(4, 16), torch.tensor([True, False, True, False]))
    v = net.item_vectors(torch.arange(4))
    assert v.shape == (4, net.dim) and torch.isfinite(v).all()
    torch.testing.assert_close(v.norm(dim=1), torch.ones(4))
    # at start every fusion is the text vector: the same as a model without images
    plain = F.normalize(net.item_head(net.item_base), dim=-1)
    torch.testing.assert_close(v, plain)
    (v @ torch.randn(net.dim)).sum().backward()
    grads = {n: p.grad for n, p in net.image_fusion.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    if fusion != "gated":
        assert grads["missing"] is not None  # the no-image vector learns


def test_no_encoder_is_todays_model(tiny_model_dir):
    net = TwoTower(4, 2, encoder={"pretrained": tiny_model_dir}, image={"encoder": None})
    assert net.image_fusion is None
    assert not any("image" in k for k in net.state_dict())


@pytest.mark.parametrize(
    ("image", "match"),
    [
        ({"encoder": None, "fusion": "mean"}, "model.image.fusion: expected one of"),
        ({"encoder": "/no/such/folder"}, "model.image.encoder: '/no/such/folder' is not a local"),
        ({"encoders": "x"}, "model.image: unknown key"),
    ],
)
def test_bad_image_options_are_one_config_error(tiny_model_dir, image, match):
    with pytest.raises(ConfigError, match=match):
        TwoTower(4, 2, encoder={"pretrained": tiny_model_dir}, image=image)


def test_end_to_end_on_rendered_shop_images(vision, compose, tmp_path):
    from divrec.run.train import train

    cfg = compose(
        "data.render_images=true",
        f"model.image.encoder={vision['vit']}",
        "model.image.fusion=gated",
        "model.user_tower=history",
        "trainer.limit_train_batches=2",
    )
    assert math.isfinite(train(cfg))
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["meta"]["status"] == "ok"
    assert 0.0 <= m["test/ndcg@10"] <= 1.0
    assert m["meta"]["data_stats"]["images/with_image"] == 300  # every shop item has one
