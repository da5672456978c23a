"""The sparse autoencoder on convolutional groups.

image -> conv encoder (downsampling, residual blocks) -> `num_groups` groups of feature maps
-> one linear layer per group (one batched einsum) -> top-k per group -> grouped linear decoder
-> mirrored conv decoder (upsampling) -> image, clamped to [0, 1].

Every non-linearity sits inside a residual branch, so the network has an exact linear path from pixels
to codes and back: `sae.core.init.pca_init` sets that path to a PCA-like solution before training, and
training then only has to improve on it (see `sae/init.py`).

The number of non-zeros per group, k, is chosen at call time: one trained model serves every k
from 1 to `k_max`, which is what lets the owner of a code pick the fidelity they share.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn


def topk_by_magnitude(codes: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest-magnitude entries along the last dim (signs kept), zero the rest.

    Exactly k entries survive per row, zeros included if the row has fewer than k non-zeros.
    Ties are broken towards the lower index (a stable sort), so the result never depends on the
    backend's topk implementation.
    """
    size = codes.shape[-1]
    if not 0 <= k <= size:
        raise ValueError(f"k must be in [0, {size}], got {k}")
    if k == size:
        return codes
    if k == 0:
        return torch.zeros_like(codes)
    order = torch.sort(codes.abs(), dim=-1, descending=True, stable=True).indices[..., :k]
    return torch.zeros_like(codes).scatter(-1, order, codes.gather(-1, order))


class ResidualBlock(nn.Module):
    """conv-act-conv with an identity skip; the last conv starts at zero so the block starts as identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


def _encoder(channels: list[int], blocks: int, out_channels: int, stem: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.PixelUnshuffle(stem), nn.Conv2d(3 * stem**2, channels[0], 3, padding=1)]
    for i, width in enumerate(channels):
        if i > 0:
            layers.append(nn.Conv2d(channels[i - 1], width, 4, stride=2, padding=1))
        layers.extend(ResidualBlock(width) for _ in range(blocks))
    layers.append(nn.Conv2d(channels[-1], out_channels, 1))
    return nn.Sequential(*layers)


def _decoder(channels: list[int], blocks: int, in_channels: int, stem: int) -> nn.Sequential:
    widths = channels[::-1]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 1)]
    for i, width in enumerate(widths):
        if i > 0:
            layers.append(nn.ConvTranspose2d(widths[i - 1], width, 4, stride=2, padding=1))
        layers.extend(ResidualBlock(width) for _ in range(blocks))
    layers += [nn.Conv2d(widths[-1], 3 * stem**2, 3, padding=1), nn.PixelShuffle(stem)]
    return nn.Sequential(*layers)


class SparseAutoencoder(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="sae",
    tags=["sparse-autoencoder", "privacy", "image-reconstruction"],
):
    """Sparse autoencoder whose code is `num_groups` groups of `code_dim` entries, k non-zeros each.

    Constructor arguments are JSON primitives so `save_pretrained` / `from_pretrained` round-trip. `blocks` residual
    blocks follow each resolution of the encoder and of the decoder, unless `decoder_blocks` gives the decoder its own.
    """

    def __init__(
        self,
        image_size: int = 64,
        num_groups: int = 20,
        code_dim: int = 256,
        k_max: int = 128,
        channels: list[int] | tuple[int, ...] = (32, 64, 128),
        blocks: int = 1,
        group_channels: int = 2,
        stem: int = 1,
        tied: bool = False,
        decoder_blocks: int | None = None,
    ):
        super().__init__()
        channels = list(channels)
        downsample = stem * 2 ** (len(channels) - 1)
        if image_size % downsample:
            raise ValueError(f"image_size {image_size} is not divisible by {downsample}")
        if not 1 <= k_max <= code_dim:
            raise ValueError(f"k_max must be in [1, code_dim={code_dim}], got {k_max}")
        self.image_size = image_size
        self.num_groups = num_groups
        self.code_dim = code_dim
        self.k_max = k_max
        self.group_channels = group_channels
        self.tied = tied
        self.map_size = image_size // downsample
        group_features = group_channels * self.map_size**2

        self.encoder = _encoder(channels, blocks, num_groups * group_channels, stem)
        scale = group_features**-0.5
        self.encoder_weight = nn.Parameter(torch.randn(num_groups, group_features, code_dim) * scale)
        self.encoder_bias = nn.Parameter(torch.zeros(num_groups, code_dim))
        if tied:
            self.decoder_weight = None
        else:
            self.decoder_weight = nn.Parameter(self.encoder_weight.detach().transpose(1, 2).clone())
        self.decoder_bias = nn.Parameter(torch.zeros(num_groups, group_features))
        self.decoder = _decoder(channels, blocks if decoder_blocks is None else decoder_blocks, num_groups * group_channels, stem)
        if decoder_blocks is None:  # a model directory names the argument only when it is set (older code loads the rest)
            self._hub_mixin_config.pop("decoder_blocks", None)

    @property
    def group_decoder_weight(self) -> torch.Tensor:
        """(num_groups, code_dim, group_features): the tied or the free decoder weights."""
        if self.decoder_weight is None:
            return self.encoder_weight.transpose(1, 2)
        return self.decoder_weight

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) floats in [0, 1] -> dense codes (B, num_groups, code_dim)."""
        features = self.encoder(x * 2 - 1)
        groups = features.reshape(x.shape[0], self.num_groups, -1)
        return torch.einsum("bld,ldm->blm", groups, self.encoder_weight) + self.encoder_bias

    def sparsify(self, codes: torch.Tensor, k: int) -> torch.Tensor:
        """Keep the k largest-magnitude entries of each group."""
        return topk_by_magnitude(codes, k)

    def decode_unclamped(self, sparse_codes: torch.Tensor) -> torch.Tensor:
        """Sparse codes (B, num_groups, code_dim) -> images (B, 3, H, W) before clamping (what training sees)."""
        if self.decoder_weight is None:  # tied: read the weight as stored, (L, features, m); its transpose is far slower
            groups = torch.bmm(self.encoder_weight, sparse_codes.permute(1, 2, 0)).permute(2, 0, 1) + self.decoder_bias
        else:
            groups = torch.einsum("blm,lmd->bld", sparse_codes, self.decoder_weight) + self.decoder_bias
        maps = groups.reshape(sparse_codes.shape[0], -1, self.map_size, self.map_size)
        return self.decoder(maps)

    def decode(self, sparse_codes: torch.Tensor) -> torch.Tensor:
        """Sparse codes (B, num_groups, code_dim) -> images (B, 3, H, W) in [0, 1]."""
        return self.decode_unclamped(sparse_codes).clamp(0, 1)

    def forward(self, x: torch.Tensor, k: int | None = None, clamp: bool = True) -> torch.Tensor:
        """Reconstruct x through a code with k non-zeros per group (k_max when None).

        Training passes `clamp=False`: a clamped pixel has no gradient, so one pushed past 0 or 1 could never come back.
        """
        sparse = self.sparsify(self.encode(x), self.k_max if k is None else k)
        return self.decode(sparse) if clamp else self.decode_unclamped(sparse)
