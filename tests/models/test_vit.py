"""The ViT base model on PATTERN-like inputs, tiny (depth 2, width 32) so it runs on CPU: shapes,
padding, gradients, local pretrained weights (round trip and adaptation), and config errors."""

from __future__ import annotations

import pytest
import torch

from workers.models.spec import FieldSpec
from workers.models.vit import ViT, timm

NODES = 20
INPUTS = {"adj": FieldSpec("pair", (NODES, NODES, 1)), "x": FieldSpec("node", (NODES, 3))}
NODE_OUTPUT = FieldSpec("node", (NODES, 2))
TINY = {"depth": 2, "embed_dim": 32, "heads": 2, "patch": 4}


def tiny(output: FieldSpec = NODE_OUTPUT, seed: int = 0, inputs=INPUTS, **options) -> ViT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ViT(inputs, output, **{**TINY, **options})


def pattern_batch(rows: int = 4, nodes: int = NODES, seed: int = 0) -> dict:
    """Random graphs with one-hot features, padded to ``nodes`` (graph sizes differ)."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.tensor([nodes, nodes - 3, nodes // 2, 5][:rows])
    mask = torch.arange(nodes)[None] < counts[:, None]  # (R, n)
    upper = torch.triu(torch.rand(rows, nodes, nodes, generator=gen) < 0.4, 1)
    adj = (upper | upper.transpose(1, 2)) & mask[:, :, None] & mask[:, None, :]
    labels = torch.randint(3, (rows, nodes), generator=gen)
    x = torch.nn.functional.one_hot(labels, 3).float() * mask[..., None]
    return {"adj": adj[..., None], "x": x, "mask": mask}  # adj (R, n, n, 1) bool, like PATTERN


@pytest.mark.parametrize("patch", [4, 6], ids=["n_multiple_of_patch", "n_padded_to_patch"])
def test_node_output_forward_backward(patch):
    model = tiny(patch=patch)
    batch = pattern_batch()
    out = model(batch)
    assert out.shape == (4, NODES, 2)
    assert model.backbone.patch_embed.grid_size == (-(-NODES // patch),) * 2
    assert bool((out[~batch["mask"]] == 0).all()) and float(out.detach()[batch["mask"]].abs().min()) > 0
    out.square().sum().backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    assert float(model.backbone.patch_embed.proj.weight.grad.abs().sum()) > 0


def test_padded_slots_do_not_influence_real_nodes():
    model = tiny().eval()
    batch = pattern_batch()
    junk = {**batch, "x": batch["x"] + (~batch["mask"])[..., None] * 5.0,
            "adj": batch["adj"] | ~(batch["mask"][:, :, None, None] & batch["mask"][:, None, :, None])}
    with torch.no_grad():
        assert torch.equal(model(batch), model(junk))


def test_invariant_output():
    model = tiny(FieldSpec("invariant", (5,)))
    out = model(pattern_batch())
    assert out.shape == (4, 5)
    out.sum().backward()
    assert model.head.weight.grad is not None


def test_weights_round_trip(tmp_path):
    source = tiny(seed=1)
    path = tmp_path / "vit.pt"
    torch.save(source.backbone.state_dict(), path)
    model = tiny(seed=2, weights=str(path))
    loaded = model.pretrained_parameter_names()
    mine = dict(model.named_parameters())
    assert loaded and set(loaded) == {n for n in mine if n.startswith("backbone.")}
    theirs = dict(source.named_parameters())
    assert all(torch.equal(mine[name], theirs[name]) for name in loaded)
    assert not torch.equal(mine["head.weight"], theirs["head.weight"])  # the detokenizer is new
    assert tiny().pretrained_parameter_names() == []


def test_weights_of_another_layout_are_adapted(tmp_path):
    """A timm checkpoint at 224×224, patch 16, 3 channels, with a classifier head: the patch
    embedding (kernel and channels) and the positional grid are resampled, the head is skipped."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        imagenet = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, num_classes=10)
    path = tmp_path / "tiny.pt"
    torch.save(imagenet.state_dict(), path)
    model = ViT(INPUTS, NODE_OUTPUT, arch="vit_tiny_patch16_224", depth=1, patch=4, weights=str(path))
    assert model.backbone.patch_embed.proj.weight.shape == (192, 4, 4, 4)
    assert model.backbone.pos_embed.shape == (1, 1 + 25, 192)
    assert "backbone.pos_embed" in model.pretrained_parameter_names()
    assert torch.equal(model.backbone.blocks[0].attn.qkv.weight, imagenet.blocks[0].attn.qkv.weight)
    assert model(pattern_batch()).shape == (4, NODES, 2)


def test_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.weights"):
        tiny(weights=str(tmp_path / "missing.pt"))
    wider = tmp_path / "wider.pt"
    torch.save(tiny(embed_dim=64).backbone.state_dict(), wider)
    with pytest.raises(ValueError, match="model.weights.*shape"):
        tiny(weights=str(wider))


@pytest.mark.parametrize("options, key", [
    ({"arch": "resnet50"}, "model.arch"),
    ({"arch": "vit_base_patch16_rope_224"}, "model.arch"),  # a vit_* name of another family
    ({"patch": 0}, "model.patch"),
    ({"embed_dim": 30, "heads": 4}, "embed_dim"),
])
def test_config_errors_name_the_key(options, key):
    with pytest.raises(ValueError, match=key):
        tiny(**options)


def test_unsupported_layouts():
    assert ViT.unsupported(INPUTS, NODE_OUTPUT) is None
    assert ViT.unsupported({"image": FieldSpec("image", (8, 8, 1))}, FieldSpec("invariant", (10,))) is None
    assert "pair field" in ViT.unsupported({"pos": FieldSpec("point", (5, 3))}, FieldSpec("point", (5, 3)))
    assert ViT.unsupported({"image": FieldSpec("image", (8, 8, 1))}, NODE_OUTPUT) is not None
    with pytest.raises(ValueError, match="model=vit"):
        ViT({"pos": FieldSpec("point", (5, 3))}, FieldSpec("point", (5, 3)))


def test_image_input_and_output():
    spec = FieldSpec("image", (10, 10, 1))
    model = tiny(spec, inputs={"image": spec})
    assert model({"image": torch.rand(3, 10, 10, 1)}).shape == (3, 10, 10, 1)
