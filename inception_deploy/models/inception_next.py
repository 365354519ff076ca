"""InceptionNeXt (Yu et al., CVPR 2024, "InceptionNeXt: When Inception Meets ConvNeXt") in the
state_dict layout of timm's ``inception_next_*`` (ported from sail-sg/inceptionnext).

A ConvNeXt-style network (4x4 patch stem, four stages, blocks of token mixer -> norm -> MLP with
a layer scale) whose large depthwise convolution is decomposed the Inception way: the channels are
split into four branches, an identity, a 3x3 square kernel and two band kernels (1 x k and k x 1),
each depthwise, and concatenated again.
"""

import torch
from torch import nn


class InceptionDWConv2d(nn.Module):
    """The token mixer: ``branch_ratio`` of the channels through each of three depthwise branches,
    the rest untouched (the identity branch)."""

    def __init__(self, channels: int, square_kernel: int = 3, band_kernel: int = 11, branch_ratio: float = 0.125):
        super().__init__()
        branch = int(channels * branch_ratio)
        self.dwconv_hw = nn.Conv2d(branch, branch, square_kernel, padding=square_kernel // 2, groups=branch)
        self.dwconv_w = nn.Conv2d(branch, branch, (1, band_kernel), padding=(0, band_kernel // 2), groups=branch)
        self.dwconv_h = nn.Conv2d(branch, branch, (band_kernel, 1), padding=(band_kernel // 2, 0), groups=branch)
        self.split_sizes = (channels - 3 * branch, branch, branch, branch)

    def forward(self, x):  # N x C x H x W -> N x C x H x W
        identity, square, wide, tall = torch.split(x, self.split_sizes, dim=1)  # C - 3b, b, b, b channels
        return torch.cat((identity, self.dwconv_hw(square), self.dwconv_w(wide), self.dwconv_h(tall)), dim=1)


class ConvMlp(nn.Module):
    """Pointwise MLP on the feature map: 1x1 conv (expand) -> GELU -> 1x1 conv."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class MetaNeXtBlock(nn.Module):
    """x + gamma * MLP(BatchNorm(token_mixer(x))), gamma a learned per-channel layer scale."""

    def __init__(self, channels: int, mlp_ratio: float, **mixer_args):
        super().__init__()
        self.token_mixer = InceptionDWConv2d(channels, **mixer_args)
        self.norm = nn.BatchNorm2d(channels)
        self.mlp = ConvMlp(channels, int(mlp_ratio * channels))
        # 1, not the paper's training init of 1e-6: with 1e-6 a random-weight network is its stem and
        # head alone, and parity checks on random weights would not see the blocks
        self.gamma = nn.Parameter(torch.ones(channels))

    def forward(self, x):  # N x C x H x W, the shape kept throughout
        out = self.mlp(self.norm(self.token_mixer(x)))  # the MLP widens to mlp_ratio * C and back
        return x + out * self.gamma.reshape(1, -1, 1, 1)


class MetaNeXtStage(nn.Module):
    """[BatchNorm -> 2x2 conv with stride 2] (every stage but the first), then the blocks."""

    def __init__(
        self, in_channels: int, out_channels: int, depth: int, downsample: bool, mlp_ratio: float, **mixer_args
    ):
        super().__init__()
        if downsample:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, out_channels, 2, stride=2)
            )
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*(MetaNeXtBlock(out_channels, mlp_ratio, **mixer_args) for _ in range(depth)))

    def forward(self, x):
        return self.blocks(self.downsample(x))


class MlpClassifierHead(nn.Module):
    """Global average pool -> Linear (3x wider) -> GELU -> LayerNorm -> Linear to the classes."""

    def __init__(self, channels: int, num_classes: int, mlp_ratio: float = 3):
        super().__init__()
        hidden = int(mlp_ratio * channels)
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(hidden, eps=1e-6)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = x.mean((2, 3))  # N x C
        return self.fc2(self.norm(self.act(self.fc1(x))))


class MetaNeXt(nn.Module):
    """stem (224 -> 56) -> stages (56, 28, 14, 7) -> MLP head."""

    def __init__(
        self,
        depths: tuple[int, ...],
        dims: tuple[int, ...],
        num_classes: int = 1000,
        mlp_ratios: tuple[float, ...] = (4, 4, 4, 3),
        **mixer_args,
    ):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), nn.BatchNorm2d(dims[0]))
        self.stages = nn.Sequential(
            *(
                MetaNeXtStage(dims[max(i - 1, 0)], dims[i], depths[i], i > 0, mlp_ratios[i], **mixer_args)
                for i in range(len(depths))
            )
        )
        self.head = MlpClassifierHead(dims[-1], num_classes)
        # Conv and Linear keep PyTorch's default init (timm: truncated normal, std 0.02): random
        # weights here serve tests and demos, and the defaults keep the blocks' outputs in range

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


def inception_next_atto(num_classes: int = 1000) -> MetaNeXt:
    return MetaNeXt((2, 2, 6, 2), (40, 80, 160, 320), num_classes, band_kernel=9, branch_ratio=0.25)


def inception_next_tiny(num_classes: int = 1000) -> MetaNeXt:
    return MetaNeXt((3, 3, 9, 3), (96, 192, 384, 768), num_classes)


def inception_next_small(num_classes: int = 1000) -> MetaNeXt:
    return MetaNeXt((3, 3, 27, 3), (96, 192, 384, 768), num_classes)


def inception_next_base(num_classes: int = 1000) -> MetaNeXt:
    return MetaNeXt((3, 3, 27, 3), (128, 256, 512, 1024), num_classes)
