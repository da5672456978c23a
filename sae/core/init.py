"""Start a sparse autoencoder at a PCA-like solution of its own architecture, fitted in closed form.

Every non-linearity of `SparseAutoencoder` sits inside a residual branch whose last convolution starts
at zero, so a fresh model is linear from pixels to codes and back. This module sets that linear path
from the training images, in three closed-form steps (no gradient descent):

1. local PCA: each `stem x stem` patch (48 numbers for stem 4) is rotated onto its principal axes;
2. layout: the `shared` strongest local axes are copied into every group (a low-resolution face the
   whole code needs), and each group also gets its own `detail` axes;
3. group codes: a global PCA of the shared maps is dealt out round-robin over the groups (component
   j goes to group j mod G, so every group holds strong and weak components), and each group fills
   the rest of its `code_dim` entries with the PCA of its detail maps.

Top-k by magnitude on such a code is close to keeping an image's largest PCA coefficients; training
then only has to improve on it, which a 2-core CPU can afford where training from random weights did
not converge (the previous bundled model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sae.core.model import ResidualBlock, SparseAutoencoder


def channel_layout(model: SparseAutoencoder) -> tuple[int, int]:
    """(shared, detail): local axes copied into every group, and axes each group has alone."""
    local = 3 * _stem(model) ** 2
    channels = model.group_channels
    if channels > 1 and channels - 1 + model.num_groups <= local:
        return channels - 1, 1
    return min(channels, local), 0


def _stem(model: SparseAutoencoder) -> int:
    return model.encoder[0].downscale_factor


def _principal_axes(rows: torch.Tensor) -> torch.Tensor:
    """Right singular vectors of `rows` (n, d), strongest first, as rows (min(n, d), d)."""
    return torch.linalg.svd(rows, full_matrices=False).Vh


@torch.no_grad()
def pca_init(model: SparseAutoencoder, images: torch.Tensor) -> SparseAutoencoder:
    """Set the linear path of a fresh single-resolution `model` from `images` (N, 3, H, W) floats in [0, 1]."""
    stem = _stem(model)
    local = 3 * stem**2
    width = model.encoder[1].out_channels
    groups, channels, area = model.num_groups, model.group_channels, model.map_size**2
    shared, detail = channel_layout(model)
    carried = min(width, local)  # the strongest local axes the stem passes on (all of them when the width allows)
    resampling = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d) and m.stride != (1, 1)]
    if resampling or carried < shared + groups * detail or any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.decoder):
        raise ValueError("pca_init needs a single-resolution model whose width holds every local axis the groups read")
    for block in [m for m in [*model.encoder, *model.decoder] if isinstance(m, ResidualBlock)]:  # they start as identity
        torch.nn.init.zeros_(block.conv2.weight)
        torch.nn.init.zeros_(block.conv2.bias)

    # float32 for the big (N, local, area) tensors, float64 for the small matrices that get decomposed
    patches = F.pixel_unshuffle(images.float() * 2 - 1, stem).flatten(2)  # (N, local, area)
    centre = patches.mean((0, 2), dtype=torch.float64)  # per patch entry: a conv bias cannot vary with position
    patches -= centre.float()[:, None]
    scatter = torch.einsum("ncp,ndp->cd", patches, patches).double()
    axes = torch.linalg.eigh(scatter).eigenvectors.flip(1).T  # (local, local), strongest axis first
    z = torch.einsum("dc,ncp->ndp", axes.float(), patches)  # (N, local, area) on the local axes

    # which local axis feeds each group channel (channels past shared + detail read axis 0 and decode to nothing)
    source = torch.zeros(groups, channels, dtype=torch.long)
    source[:, :shared] = torch.arange(shared)
    if detail:
        source[:, shared : shared + detail] = shared + torch.arange(groups * detail).reshape(groups, detail)
    common_maps = z[:, :shared].flatten(1).double()  # identical in every group, so computed once
    common_mean = common_maps.mean(0)
    common = _principal_axes(common_maps - common_mean)
    basis = torch.zeros(groups, model.code_dim, channels * area, dtype=torch.float64)
    mean = torch.zeros(groups, channels * area, dtype=torch.float64)
    mean[:, : shared * area] = common_mean
    for g in range(groups):
        own = common[g::groups][: model.code_dim]
        basis[g, : len(own), : shared * area] = own
        if detail:
            maps = z[:, source[g, shared : shared + detail]].flatten(1).double()
            mean[g, shared * area : (shared + detail) * area] = maps.mean(0)
            rest = _principal_axes(maps - maps.mean(0))[: model.code_dim - len(own)]
            basis[g, len(own) : len(own) + len(rest), shared * area : (shared + detail) * area] = rest

    stem_conv, to_groups = model.encoder[1], model.encoder[-1]
    from_groups, to_patches = model.decoder[0], model.decoder[-2]
    for conv in (stem_conv, to_groups, from_groups, to_patches):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    stem_conv.weight[:carried, :, 1, 1] = axes[:carried].float()
    stem_conv.bias[:carried] = -(axes[:carried] @ centre).float()
    to_groups.weight[torch.arange(groups * channels), source.flatten(), 0, 0] = 1.0
    used = shared + detail  # every group's shared and own maps decode back to their axis (shared ones summed)
    group_channel = torch.arange(groups)[:, None] * channels + torch.arange(used)
    from_groups.weight[source[:, :used].flatten(), group_channel.flatten(), 0, 0] = 1.0
    to_patches.weight[:, :carried, 1, 1] = axes[:carried].T.float() / 2  # back from local axes, and from [-1, 1] to [0, 1]
    to_patches.bias.copy_((centre.float() + 1) / 2)

    model.encoder_weight.copy_(basis.transpose(1, 2).float())
    model.encoder_bias.copy_(-torch.einsum("gmd,gd->gm", basis, mean).float())
    decoder_mean = mean.reshape(groups, channels, area).clone()
    decoder_mean[1:, :shared] = 0  # the shared maps' mean is added once, by group 0
    decoder_mean[:, shared + detail :] = 0
    model.decoder_bias.copy_(decoder_mean.reshape(groups, -1).float())
    if model.decoder_weight is not None:
        model.decoder_weight.copy_(basis.float())
    return model
