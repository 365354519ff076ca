"""Building blocks shared by several Inception networks."""
from torch import nn


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU: the box every Inception paper draws as one layer.

    The attribute names ``conv`` and ``bn`` are the ones torchvision, timm and facenet-pytorch
    use, so their checkpoints load unchanged. ``eps=1e-3`` is TensorFlow's value, which all of
    those ports kept.
    """

    def __init__(self, in_channels: int, out_channels: int, eps: float = 1e-3, **conv_kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))
