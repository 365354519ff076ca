"""Xception, Chollet 2017, in timm's ``legacy_xception`` layout (the Cadene/Keras port):
depthwise-separable convolutions in residual blocks, entry / middle / exit flow.

Two options give Keras's numerics, for Keras-trained checkpoints: ``bn_eps=1e-3`` (Keras's
BatchNormalization default; the PyTorch port kept PyTorch's 1e-5) and ``same_pooling=True``
(TensorFlow's "same" max pooling, see ``SameMaxPool2d``).
"""

import math

import torch.nn.functional as F
from torch import nn


class SeparableConv2d(nn.Module):
    """Depthwise kxk (``conv1``) followed by pointwise 1x1 (``pointwise``), no bias."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.conv1(x))


class SameMaxPool2d(nn.Module):
    """3x3 stride-2 max pooling with TensorFlow's "same" padding: ``ceil(n / 2)`` outputs, the
    padding split with the odd pixel at the bottom / right. PyTorch's ``padding=1`` pads both
    sides, which on an even input (74 -> 37 in block 2 at 299) shifts every window by a pixel.

    An odd total padding 2p + 1 equals padding p with ``ceil_mode`` (the extra window at the end
    reads one pixel of padding, which a max ignores), so this stays one MaxPool node in ONNX.
    """

    def __init__(self, kernel_size=3, stride=2):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x):
        k, s = self.kernel_size, self.stride
        pads = [max((math.ceil(n / s) - 1) * s + k - n, 0) // 2 for n in x.shape[-2:]]
        return F.max_pool2d(x, k, s, padding=pads, ceil_mode=True)


class Block(nn.Module):
    """``reps`` x (ReLU -> SeparableConv -> BN), optional stride-2 maxpool, plus a skip path.

    The index of each layer inside ``rep`` is part of the checkpoint keys (``rep.1.conv1``...),
    so the list is built exactly as the reference builds it, leading ReLU dropped when
    ``start_with_relu`` is False.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        reps,
        stride=1,
        start_with_relu=True,
        grow_first=True,
        bn_eps=1e-5,
        same_pooling=False,
    ):
        super().__init__()
        if out_channels != in_channels or stride != 1:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skipbn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        else:
            self.skip = None
        rep = []
        for i in range(reps):
            if grow_first:
                inc, outc = (in_channels if i == 0 else out_channels), out_channels
            else:
                inc, outc = in_channels, (in_channels if i < reps - 1 else out_channels)
            rep += [nn.ReLU(), SeparableConv2d(inc, outc), nn.BatchNorm2d(outc, eps=bn_eps)]
        if not start_with_relu:
            rep = rep[1:]
        if stride != 1:
            rep.append(SameMaxPool2d(3, stride) if same_pooling else nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*rep)

    def forward(self, x):
        skip = self.skipbn(self.skip(x)) if self.skip is not None else x
        return self.rep(x) + skip


class Xception(nn.Module):
    def __init__(self, num_classes: int = 1000, bn_eps: float = 1e-5, same_pooling: bool = False):
        super().__init__()
        options = dict(bn_eps=bn_eps, same_pooling=same_pooling)
        # entry flow
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 0, bias=False)  # N x 32 x 149 x 149
        self.bn1 = nn.BatchNorm2d(32, eps=bn_eps)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)  # N x 64 x 147 x 147
        self.bn2 = nn.BatchNorm2d(64, eps=bn_eps)
        self.act2 = nn.ReLU()
        self.block1 = Block(64, 128, 2, 2, start_with_relu=False, **options)  # N x 128 x 74 x 74
        self.block2 = Block(128, 256, 2, 2, **options)  # N x 256 x 37 x 37
        self.block3 = Block(256, 728, 2, 2, **options)  # N x 728 x 19 x 19
        # middle flow: eight identical blocks
        for i in range(4, 12):
            self.add_module(f"block{i}", Block(728, 728, 3, 1, **options))
        # exit flow
        self.block12 = Block(728, 1024, 2, 2, grow_first=False, **options)  # N x 1024 x 10 x 10
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = nn.BatchNorm2d(1536, eps=bn_eps)
        self.act3 = nn.ReLU()
        self.conv4 = SeparableConv2d(1536, 2048)
        self.bn4 = nn.BatchNorm2d(2048, eps=bn_eps)
        self.act4 = nn.ReLU()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        for i in range(1, 13):
            x = getattr(self, f"block{i}")(x)
        x = self.act3(self.bn3(self.conv3(x)))
        x = self.act4(self.bn4(self.conv4(x)))  # N x 2048 x 10 x 10
        return self.fc(self.global_pool(x).flatten(1))
