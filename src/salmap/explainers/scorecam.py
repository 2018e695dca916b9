"""Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel and Hu 2020, "Score-CAM:
Score-weighted visual explanations for convolutional neural networks")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from salmap.layers import LayerSpec, Reshape
from salmap.registry import register
from salmap.targets import Target

from .base import LayerExplainer
from .layer_maps import channel_sum, upsampled
from .perturbation import check_batch_size, perturbed_scores


def channel_masks(activations: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """H_k = s(Up(A_k)): each channel `(B, K, h, w)` upsampled bilinearly to `size` and scaled
    to [0, 1] per image and channel. A channel that is constant before upsampling gives an
    all-zero mask (rounding in the interpolation would otherwise turn it into noise scaled up
    to [0, 1])."""
    up = F.interpolate(activations, size=size, mode="bilinear", align_corners=False)
    low = up.amin(dim=(2, 3), keepdim=True)
    span = up.amax(dim=(2, 3), keepdim=True) - low
    flat = activations.flatten(2)
    constant = (flat.amax(dim=2) == flat.amin(dim=2))[:, :, None, None]
    return torch.where(constant | (span <= 0), 0.0, (up - low) / span)


@register("scorecam", "cam")
class ScoreCAM(LayerExplainer):
    """Score-CAM: ReLU(sum_k a_k A_k), a = softmax_k(S_c(x * H_k) - S_c(x_b)) (Wang et al. 2020).

    H_k is channel k of the layer upsampled bilinearly to the input size and scaled to [0, 1]
    (`channel_masks`); x * H_k keeps the image where the channel fires and takes the rest to 0
    in normalised space (the mean colour); S_c is the pre-softmax score, and the softmax over
    the channels of its increase over a baseline image x_b is the paper's Algorithm 1 (the
    baseline term is the same for every channel, so it cancels). No gradients: one forward pass
    for the activations and one per channel, in inference mode, `batch_size` masked images per
    pass (default: one copy of the batch on the CPU, 256 images on a GPU), so memory is bounded
    by the pass, not by the number of channels. The map is upsampled to the input size.

    The authors' released code weights each channel by the softmax probability of the class
    instead, with no softmax over the channels; pytorch-grad-cam and torchcam follow the paper,
    but pytorch-grad-cam upsamples the masks with corner-aligned bilinear interpolation
    (`align_corners=True`) and scores one image at a time.
    """

    floor = "forward"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        batch_size: int | None = None,
        output_key: str | None = None,
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, layer, output_key, reshape)
        self.batch_size = check_batch_size(batch_size)
        self.channels: int | None = None

    def floor_passes(self, x: torch.Tensor) -> list[tuple[int, int]]:
        if self.channels is None:
            self.channels = self.activations(x[:1])[0].shape[1]
        return [(x.shape[-2], x.shape[-1])] * (1 + self.channels)

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        activations, output = self.activations(x)
        if target.kind != "score":
            target.resolve(self.read_logits(output))
        self.channels = activations.shape[1]

        def masked(start: int, stop: int) -> torch.Tensor:
            masks = channel_masks(activations[:, start:stop], size).transpose(0, 1)
            return masks[:, :, None] * x.unsqueeze(0)

        scores = perturbed_scores(
            self.model,
            self.read_logits,
            x,
            target,
            self.channels,
            masked,
            probability=False,
            batch_size=self.batch_size,
        )
        weights = scores.T.softmax(dim=1)
        return upsampled(F.relu(channel_sum(weights, activations.float())), size)
