"""Building blocks and helpers shared by several networks."""

from torch import nn


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU: the box every Inception paper draws as one layer.

    The attribute names ``conv`` and ``bn`` are the ones torchvision, timm and facenet-pytorch
    use, so their checkpoints load unchanged. ``eps=1e-3`` is TensorFlow's value, which all of
    those ports kept (timm's own ``ConvNormAct``, in SK-Net, uses PyTorch's 1e-5). ``relu=False``:
    no activation (the last conv of a residual branch).
    """

    def __init__(self, in_channels: int, out_channels: int, eps: float = 1e-3, relu: bool = True, **conv_kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``, default
    ``divisor``), one step up when rounding lost more than ``1 - round_limit`` of it: the channel
    rounding timm's attention modules use, so their checkpoints' widths come out the same."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < round_limit * value else rounded
