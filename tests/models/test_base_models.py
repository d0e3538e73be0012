"""Base models f_θ on task-like layouts: shapes, gradients, padding, layouts they refuse, bad options."""

from __future__ import annotations

import pytest
import torch

from tests.models.helpers import nbody, random_batch, seeded
from workers.models.cnn import CNN
from workers.models.gin_id import GINID
from workers.models.gnn import EGNN, GNN
from workers.models.mlp import MLP
from workers.models.spec import FieldSpec
from workers.models.transformer import Transformer

EXP = ({"adj": FieldSpec("pair", (12, 12, 1)), "x": FieldSpec("node", (12, 1))}, FieldSpec("invariant", (1,)))
PATTERN = ({"adj": FieldSpec("pair", (10, 10, 1)), "x": FieldSpec("node", (10, 3))}, FieldSpec("node", (10, 2)))
DIGITS = ({"image": FieldSpec("image", (12, 12, 1))}, FieldSpec("invariant", (10,)))

SMALL_TRANSFORMER = {"layers": 2, "width": 16, "heads": 2}
CASES = {  # name: (class, options, layout)
    "mlp-exp": (MLP, {"widths": [32, 16], "activation": "tanh"}, EXP),
    "mlp-pattern": (MLP, {"widths": [32]}, PATTERN),
    "mlp-nbody": (MLP, {}, nbody()),
    "mlp-digits": (MLP, {"widths": [16]}, DIGITS),
    "transformer-exp": (Transformer, SMALL_TRANSFORMER, EXP),
    "transformer-pattern-set": (Transformer, {**SMALL_TRANSFORMER, "tokens": "set"}, PATTERN),
    "transformer-pattern-pair": (Transformer, {**SMALL_TRANSFORMER, "tokens": "pair"}, PATTERN),
    "transformer-nbody-pair": (Transformer, SMALL_TRANSFORMER, nbody()),
    "transformer-nbody-set": (Transformer, {**SMALL_TRANSFORMER, "tokens": "set"}, nbody()),
    "gin_id-exp": (GINID, {"hidden": 16}, EXP),
    "gin_id-pattern": (GINID, {"hidden": 16, "pooling": "mean", "dropout": 0.1}, PATTERN),
    "gnn-nbody2": (GNN, {"hidden": 16}, nbody(2)),
    "gnn-nbody4": (GNN, {"hidden": 16}, nbody(4)),
    "egnn-nbody2": (EGNN, {"hidden": 16}, nbody(2)),
    "egnn-nbody4": (EGNN, {"hidden": 16}, nbody(4)),
    "cnn-digits": (CNN, {"channels": [8, 16]}, DIGITS),
    "cnn-digits-pooled": (CNN, {"channels": [8, 8, 16, 16], "batch_norm": True, "pool_every": 2,
                                "activation": "elu"}, DIGITS),
}
PADDED = [name for name, (_, _, (inputs, _)) in CASES.items() if "image" not in inputs]


@pytest.mark.parametrize("case", CASES)
def test_forward_backward_shapes_and_every_parameter_learns(case):
    cls, options, (inputs, output) = CASES[case]
    model = seeded(cls, options, inputs, output)
    batch = random_batch(inputs, rows=3, seed=1)
    out = model(batch)
    assert out.shape == (3, *output.shape) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    if output.kind != "invariant":  # per-node outputs are zero on padded slots
        assert (out[~batch["mask"]] == 0).all()
    out.pow(2).sum().backward()
    silent = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, f"parameters without gradient: {silent}"


@pytest.mark.parametrize("case", PADDED)
def test_padded_slots_do_not_reach_real_outputs(case):
    cls, options, (inputs, output) = CASES[case]
    model = seeded(cls, options, inputs, output).double().eval()
    batch = random_batch(inputs, rows=4, seed=2, dtype=torch.float64)
    assert not batch["mask"].all(), "the batch must have padding for this test to mean anything"
    padded = ~batch["mask"]
    noisy = dict(batch)
    generator = torch.Generator().manual_seed(3)
    for name, spec in inputs.items():  # garbage in every padded slot (both axes for pair fields)
        garbage = torch.randn(batch[name].shape, generator=generator, dtype=torch.float64)
        hit = padded[:, :, None] | padded[:, None, :] if spec.kind == "pair" else padded
        hit = hit.view(*hit.shape, *([1] * (batch[name].dim() - hit.dim())))
        noisy[name] = torch.where(hit, garbage, batch[name].double())
    with torch.no_grad():
        clean, dirty = model(batch), model(noisy)
    torch.testing.assert_close(dirty, clean, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cls, options", [(GNN, {"hidden": 16}), (EGNN, {"hidden": 16}),
                                          (Transformer, {**SMALL_TRANSFORMER, "tokens": "set"}),
                                          (Transformer, {**SMALL_TRANSFORMER, "tokens": "pair"})])
def test_appended_padded_particles_change_nothing(cls, options):
    """The same weights on 5 particles and on 7 slots of which 2 are padding give the same outputs
    (for the transformer: padded tokens are masked as keys, the real slots keep their encodings)."""
    small = seeded(cls, options, *nbody(3, 5)).double()
    large = cls(*nbody(3, 7), **options).double()
    state = small.state_dict()
    if cls is Transformer:  # parameters do not depend on the particle count, except the positions
        slots = torch.arange(5)
        index = (slots[:, None] * 7 + slots[None, :]).flatten() if small.pair_tokens else slots
        state["position"] = large.position.detach().index_copy(0, index, small.position.detach())
    large.load_state_dict(state)
    batch = random_batch(nbody(3, 5)[0], rows=3, seed=4, dtype=torch.float64)
    grown = {name: torch.cat([value, torch.zeros_like(value[:, :2])], dim=1) for name, value in batch.items()}
    with torch.no_grad():
        out, out_grown = small(batch), large(grown)
    torch.testing.assert_close(out_grown[:, :5], out, rtol=0, atol=1e-10)
    assert (out_grown[:, 5:] == 0).all()


@pytest.mark.parametrize("cls", [MLP, Transformer, GNN])
def test_point_outputs_add_the_position_back(cls):
    inputs, output = nbody()
    options = SMALL_TRANSFORMER if cls is Transformer else {}
    with_residual = seeded(cls, options, inputs, output)
    without = seeded(cls, {**options, "residual": False}, inputs, output)
    batch = random_batch(inputs, rows=3, seed=5)
    with torch.no_grad():
        difference = with_residual(batch) - without(batch)
    torch.testing.assert_close(difference, batch["pos"])


def test_float64_models_keep_float64():
    for cls, options, (inputs, output) in CASES.values():
        model = seeded(cls, options, inputs, output).double()
        out = model(random_batch(inputs, rows=2, seed=6, dtype=torch.float64))
        assert out.dtype == torch.float64, cls.__name__


def test_pair_tokens_follow_the_ps_nbody_layout():
    inputs, output = nbody()
    model = Transformer(inputs, output, **SMALL_TRANSFORMER)
    assert model.pair_tokens and model.position.shape == (25, 16)  # 5 particles -> 25 tokens
    batch = random_batch(inputs, rows=1, seed=7)
    tokens = model.tokenize({name: batch[name] for name in inputs}).view(5, 5, -1)
    # token (i, j): charge product, |x_i − x_j|², then node i's own features on the diagonal
    pos, vel, charges = batch["pos"][0], batch["vel"][0], batch["charges"][0, :, 0]
    torch.testing.assert_close(tokens[1, 3, 0], charges[1] * charges[3])
    torch.testing.assert_close(tokens[1, 3, 1], (pos[1] - pos[3]).pow(2).sum())
    assert (tokens[1, 3, 2:] == 0).all() and (tokens[2, 2, :2] == 0).all()
    torch.testing.assert_close(tokens[2, 2, 2:], torch.cat([pos[2], vel[2], charges[2:3]]))


def test_auto_tokens_are_pairs_only_while_they_stay_few():
    assert Transformer(*EXP, **SMALL_TRANSFORMER).pair_tokens  # 12 nodes: 144 pair tokens
    big = ({"adj": FieldSpec("pair", (64, 64, 1)), "x": FieldSpec("node", (64, 1))}, FieldSpec("invariant", (1,)))
    assert not Transformer(*big, **SMALL_TRANSFORMER).pair_tokens  # EXP's 64 nodes: 4,096 would be too many
    assert not Transformer({"x": FieldSpec("node", (5, 2))}, FieldSpec("invariant", (1,))).pair_tokens


def test_transformer_defaults_match_the_ps_nbody_model_size():
    model = Transformer(*nbody())  # paper A.3.4: "around 208k trainable parameters"
    assert 200_000 < sum(p.numel() for p in model.parameters()) < 215_000


def test_gin_id_sees_node_identities():
    inputs, output = EXP
    model = seeded(GINID, {"hidden": 16}, inputs, output).double()
    batch = random_batch(inputs, rows=1, seed=8, dtype=torch.float64)
    batch["mask"][:] = True
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(9))
    permuted = {"adj": batch["adj"][:, perm][:, :, perm], "x": batch["x"][:, perm], "mask": batch["mask"]}
    with torch.no_grad():
        assert (model(batch) - model(permuted)).abs().max() > 1e-6  # the slot IDs break the symmetry


LAYOUTS_REFUSED = [
    (CNN, EXP, "image"),
    (CNN, ({"image": FieldSpec("image", (12, 12, 1))}, FieldSpec("node", (12, 2))), "invariant"),
    (GNN, EXP, "point"),
    (EGNN, PATTERN, "point"),
    (EGNN, ({**nbody()[0], "goal": FieldSpec("point", (5, 3))}, nbody()[1]), "point"),
    (GINID, nbody(), "pair"),
    (Transformer, DIGITS, "image"),
    (Transformer, (EXP[0], FieldSpec("pair", (12, 12, 1))), "pair"),
]


@pytest.mark.parametrize("cls, layout, word", LAYOUTS_REFUSED)
def test_unsupported_layouts_are_named_and_refused(cls, layout, word):
    reason = cls.unsupported(*layout)
    assert isinstance(reason, str) and word in reason
    with pytest.raises(ValueError, match=cls.__name__):
        cls(*layout)


def test_supported_layouts_are_accepted():
    for cls, _, layout in CASES.values():
        assert cls.unsupported(*layout) is None, cls.__name__


BAD_OPTIONS = [
    (MLP, EXP, {"activation": "swish"}, "model.activation"),
    (MLP, EXP, {"widths": [64, 0]}, "model.widths"),
    (MLP, EXP, {"dropout": 1.5}, "model.dropout"),
    (Transformer, EXP, {"width": 30, "heads": 4}, "model.heads"),
    (Transformer, EXP, {"tokens": "grid"}, "model.tokens"),
    (Transformer, EXP, {"layers": 0}, "model.layers"),
    (GINID, EXP, {"pooling": "max"}, "model.pooling"),
    (GNN, nbody(), {"residual": "yes"}, "model.residual"),
    (EGNN, nbody(), {"hidden": 2.5}, "model.hidden"),
    (CNN, DIGITS, {"kernel": 2}, "model.kernel"),
    (CNN, DIGITS, {"batch_norm": "yes"}, "model.batch_norm"),
    (CNN, DIGITS, {"pool_every": -1}, "model.pool_every"),
    (CNN, DIGITS, {"channels": [8, 8, 8, 8], "pool_every": 1}, "model.pool_every"),  # 12 -> 6 -> 3 -> odd
]


@pytest.mark.parametrize("cls, layout, options, key", BAD_OPTIONS)
def test_bad_hyperparameters_name_their_key(cls, layout, options, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        cls(*layout, **options)
