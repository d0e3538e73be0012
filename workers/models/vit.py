"""A timm Vision Transformer as a base model f_θ over adjacency matrices or images (PS paper §3.3).

The input becomes one image: pair fields (n, n, C) as channels, node/point/vector fields placed on
the diagonal as extra channels (PATTERN: 188×188×(1+3)); or image fields (H, W, C). The image is
zero-padded to a multiple of ``patch`` and tokenised by the ViT's own patch embedding, a
convolution with kernel = stride = ``patch`` (14 for the paper's 188×188 adjacency: a 14×14 token
grid, the grid of ViT-Base at 224/16). Then come the ViT's positional embedding, blocks and norm;
the detokenizer is a transposed convolution back to the padded grid, cropped, with the diagonal
taken for node outputs; invariant outputs use the ViT's pooled token and a linear head.

Pretrained weights come only from a local file (timm key layout), never from the network.
"""

from __future__ import annotations

import math
import os
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from workers.models.compat import import_timm
from workers.models.spec import FieldSpec, fields_of, row_mask

timm = import_timm()
VisionTransformer = timm.models.vision_transformer.VisionTransformer

NODE_LIKE = ("node", "point", "vector")
ARCH_EXAMPLES = "vit_tiny_patch16_224, vit_small_patch16_224, vit_base_patch16_224, vit_large_patch16_224"


class ViT(nn.Module):
    """Tokenize (conv) → timm ViT blocks → detokenize (transposed conv / pooled head).

    Hyperparameters: ``arch`` a timm ``vit_*`` name; ``patch`` the token stride; ``weights`` None or
    a local timm/ViT state dict; ``depth``/``embed_dim``/``heads`` override the architecture's
    (a smaller ViT of the same family, for CPU); ``dropout`` after attention/MLP projections and
    the positional embedding, as in the original ViT.
    """

    def __init__(self, inputs: Mapping[str, FieldSpec], output: FieldSpec, arch: str = "vit_base_patch16_224",
                 patch: int = 14, weights: str | os.PathLike | None = None, depth: int | None = None,
                 embed_dim: int | None = None, heads: int | None = None, dropout: float = 0.0):
        super().__init__()
        reason = self.unsupported(inputs, output)
        if reason is not None:
            raise ValueError(f"model=vit cannot read this task: {reason}")
        if not (isinstance(arch, str) and arch.startswith("vit_") and timm.is_model(arch)):
            raise ValueError(f"model.arch={arch!r} is not a timm ViT architecture; allowed: a timm vit_* name "
                             f"such as {ARCH_EXAMPLES}")
        for key, value in (("patch", patch), ("depth", depth), ("embed_dim", embed_dim), ("heads", heads)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"model.{key}={value!r} is not allowed; expected an integer ≥ 1")
        if weights is not None and not (isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights)):
            raise FileNotFoundError(f"model.weights={weights!r} is not a file; expected null or the path of a local "
                                    "timm ViT state dict (weights are never downloaded)")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"model.dropout={dropout!r} is not allowed; expected a number in [0, 1)")
        self.output, self.patch = output, int(patch)
        self.pair_fields = fields_of(inputs, "pair")
        self.node_fields = fields_of(inputs, *NODE_LIKE)
        self.image_fields = fields_of(inputs, "image")
        grid_field = inputs[(self.pair_fields or self.image_fields)[0]]
        self.height, self.width = int(grid_field.shape[0]), int(grid_field.shape[1])
        self.padded = (_round_up(self.height, self.patch), _round_up(self.width, self.patch))
        self.in_channels = sum(_channels(inputs[name]) for name in inputs)
        self.backbone = _create_backbone(arch, self.padded, self.patch, self.in_channels, depth, embed_dim, heads,
                                         float(dropout))
        width = self.backbone.embed_dim
        if output.kind == "invariant":
            self.head = nn.Linear(width, output.size)  # pooled token -> (R, *output.shape)
        else:
            self.head = nn.ConvTranspose2d(width, _channels(output), self.patch, stride=self.patch)
        self._pretrained: tuple[str, ...] = ()
        if weights is not None:
            self._pretrained = tuple(f"backbone.{name}" for name in _load_weights(self.backbone, weights))

    @classmethod
    def unsupported(cls, inputs: Mapping[str, FieldSpec], output: FieldSpec) -> str | None:
        """Why this layout cannot be read (None if it can): needs pair fields (n, n, C), with node-like
        fields on the diagonal, or image fields (H, W, C) alone."""
        kinds = {spec.kind for spec in inputs.values()}
        if "invariant" in kinds:
            return "the ViT reads no 'invariant' input fields"
        if "pair" in kinds and "image" in kinds:
            return "the ViT reads either pair fields or image fields, not both"
        if "pair" not in kinds and "image" not in kinds:
            return "the ViT needs a pair field (n, n, C) or an image field (H, W, C)"
        if "image" in kinds and kinds != {"image"}:
            return "with an image field the ViT reads only image fields"
        grids = {tuple(spec.shape[:2]) for spec in inputs.values() if spec.kind in ("pair", "image")}
        if len(grids) > 1 or any(len(spec.shape) < 2 for spec in inputs.values() if spec.kind in ("pair", "image")):
            return f"pair/image fields must share their first two axes; got {sorted(grids)}"
        (grid,) = grids
        if any(spec.shape[0] != grid[0] for spec in inputs.values() if spec.kind in NODE_LIKE):
            return f"node-like fields must have as many nodes as the pair fields ({grid[0]})"
        if output.kind in (*NODE_LIKE, "pair") and "pair" not in kinds:
            return f"a {output.kind!r} output needs a pair input field"
        if output.kind == "image" and ("image" not in kinds or tuple(output.shape[:2]) != grid):
            return f"an image output needs image inputs of the same size {grid}"
        if output.kind not in (*NODE_LIKE, "pair", "image", "invariant"):
            return f"output kind {output.kind!r} is not readable"
        return None

    def pretrained_parameter_names(self) -> list[str]:
        """Names (as in ``named_parameters()``) of the parameters loaded from ``weights``; empty if none."""
        return list(self._pretrained)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``inputs``: the fields (+ optional ``"mask"`` (R, n)); returns (R, *output.shape)."""
        image = self.image(inputs, self.head.weight.dtype)  # (R, C, H_pad, W_pad)
        tokens = self.backbone.forward_features(image)  # (R, prefix + gh·gw, D)
        rows = image.shape[0]
        if self.output.kind == "invariant":
            return self.head(self.backbone.forward_head(tokens)).view(rows, *self.output.shape)
        grid = tokens[:, self.backbone.num_prefix_tokens:].transpose(1, 2).unflatten(
            2, self.backbone.patch_embed.grid_size)  # (R, D, gh, gw)
        out = self.head(grid)[:, :, :self.height, :self.width]  # (R, C_out, H, W)
        if self.output.kind == "image":
            return out.permute(0, 2, 3, 1).reshape(rows, *self.output.shape)
        mask = row_mask(inputs, rows, self.height, out.device).to(out.dtype)  # (R, n)
        if self.output.kind == "pair":
            out = out * (mask[:, None, :, None] * mask[:, None, None, :])
            return out.permute(0, 2, 3, 1).reshape(rows, *self.output.shape)
        diagonal = torch.diagonal(out, dim1=2, dim2=3).transpose(1, 2) * mask[..., None]  # (R, n, C_out)
        return diagonal.reshape(rows, *self.output.shape)

    def image(self, inputs: Mapping[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """The padded input image (R, C, H_pad, W_pad): pair/image channels, node fields on the diagonal."""
        rows, height, width = next(iter(inputs.values())).shape[0], self.height, self.width
        grids = [inputs[name].to(dtype).reshape(rows, height, width, -1).permute(0, 3, 1, 2)
                 for name in self.image_fields + self.pair_fields]
        if self.image_fields:
            image = torch.cat(grids, dim=1)  # (R, C, H, W)
        else:
            diagonals = [torch.diag_embed(inputs[name].to(dtype).reshape(rows, height, -1).transpose(1, 2))
                         for name in self.node_fields]  # (R, C, n, n) each
            image = torch.cat(grids + diagonals, dim=1)  # (R, C_pair + C_node, n, n)
            mask = row_mask(inputs, image.shape[0], self.height, image.device).to(dtype)
            image = image * (mask[:, None, :, None] * mask[:, None, None, :])  # padded slots stay empty
        return F.pad(image, (0, self.padded[1] - self.width, 0, self.padded[0] - self.height))


def _round_up(size: int, multiple: int) -> int:
    return math.ceil(size / multiple) * multiple


def _channels(spec: FieldSpec) -> int:
    """Channels a field contributes to (or an output takes from) the image."""
    skip = 1 if spec.kind in NODE_LIKE else 2
    return math.prod(int(extent) for extent in spec.shape[skip:])


def _create_backbone(arch: str, size: tuple[int, int], patch: int, channels: int, depth: int | None,
                     embed_dim: int | None, heads: int | None, dropout: float) -> VisionTransformer:
    """A randomly initialised timm ViT (never downloaded) whose patch embedding is the tokenizer."""
    overrides = {key: value for key, value in (("depth", depth), ("embed_dim", embed_dim), ("num_heads", heads))
                 if value is not None}
    try:
        backbone = timm.create_model(arch, pretrained=False, img_size=size, patch_size=patch, in_chans=channels,
                                     num_classes=0, pos_drop_rate=dropout, proj_drop_rate=dropout, **overrides)
    except (AssertionError, TypeError, ValueError) as error:
        raise ValueError(f"model.arch={arch!r} with depth={depth}, embed_dim={embed_dim}, heads={heads}, "
                         f"patch={patch} cannot be built ({error}); embed_dim must be divisible by heads") from error
    if not isinstance(backbone, VisionTransformer) or not isinstance(getattr(backbone.patch_embed, "proj", None),
                                                                      nn.Conv2d):
        raise ValueError(f"model.arch={arch!r} is not a plain ViT with a convolutional patch embedding; "
                         f"allowed: for example {ARCH_EXAMPLES}")
    return backbone


def _load_weights(backbone: VisionTransformer, path: str | os.PathLike) -> list[str]:
    """Load a local timm-layout ViT state dict into ``backbone``, adapting the patch embedding (kernel
    and input channels) and the positional embedding (grid size); returns the loaded names."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors have many types
        raise ValueError(f"model.weights={path!r} could not be read as a torch state dict: {error}") from error
    if not isinstance(state, Mapping):
        raise ValueError(f"model.weights={path!r} holds a {type(state).__name__}; expected a state dict")
    # kernel and positional-grid resampling
    state = timm.models.vision_transformer.checkpoint_filter_fn(dict(state), backbone)
    own = backbone.state_dict()
    proj = "patch_embed.proj.weight"
    if proj in state and state[proj].shape[1] != own[proj].shape[1]:
        state[proj] = timm.models.adapt_input_conv(own[proj].shape[1], state[proj], state[proj].shape[1])
    loaded = {}
    for name, value in state.items():
        if name not in own:
            continue  # classifier heads and other parts the backbone does not have
        if value.shape != own[name].shape:
            raise ValueError(f"model.weights={path!r}: {name} has shape {tuple(value.shape)}, the model "
                             f"{tuple(own[name].shape)}; match model.arch/depth/embed_dim/heads to the file")
        loaded[name] = value
    if not loaded:
        raise ValueError(f"model.weights={path!r} holds no parameter of a timm ViT (expected keys like "
                         "'blocks.0.attn.qkv.weight')")
    backbone.load_state_dict(loaded, strict=False)
    parameters = dict(backbone.named_parameters())
    return [name for name in loaded if name in parameters]
