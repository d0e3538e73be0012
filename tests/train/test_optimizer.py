"""Parameters loaded from a pretrained weights file get ``trainer.pretrained_lr``; the rest get
``trainer.lr`` (PS paper Table 3: a pretrained ViT fine-tuned at a smaller rate)."""

from __future__ import annotations

import torch

from workers.models.factory import build_model, check
from workers.schema import TrainerSettings
from workers.tasks import get_task
from workers.train import make_optimizer

PATTERN = {"train_size": 2, "val_size": 1, "test_size": 1, "patterns": 2, "max_nodes": 100}
VIT = {"name": "vit", "arch": "vit_tiny_patch16_224", "patch": 20, "depth": 1, "embed_dim": 16, "heads": 2}


def config(weights=None) -> dict:
    return {"group": {"name": "S_n"}, "symmetrizer": {"method": "ga", "train_samples": 1, "eval_samples": 1},
            "model": {**VIT, "weights": weights}}


def test_pretrained_parameters_get_their_own_learning_rate(tmp_path):
    task = get_task("pattern", **PATTERN)
    torch.manual_seed(0)
    source = build_model(check(task, config()))
    path = tmp_path / "backbone.pt"
    torch.save(source.base.backbone.state_dict(), path)
    model = build_model(check(task, config(str(path))))
    trainer = TrainerSettings(lr=1e-3, pretrained_lr=1e-5)
    optimizer = make_optimizer(model, trainer)
    assert [group["lr"] for group in optimizer.param_groups] == [1e-3, 1e-5]
    pretrained = {id(p) for p in optimizer.param_groups[1]["params"]}
    names = {f"base.{n}" for n in model.base.pretrained_parameter_names()}
    assert pretrained == {id(p) for n, p in model.named_parameters() if n in names}
    assert len(optimizer.param_groups[0]["params"]) + len(pretrained) == len(list(model.parameters()))


def test_without_weights_there_is_one_group():
    task = get_task("pattern", **PATTERN)
    optimizer = make_optimizer(build_model(check(task, config())), TrainerSettings(pretrained_lr=1e-5))
    assert len(optimizer.param_groups) == 1
