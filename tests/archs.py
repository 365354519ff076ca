"""Which architectures the per-architecture export tests export.

Exporting is the slow part of the suite (the dynamo exporter, 20-60 s per network on 2 cores), so
an architecture whose graph has the same operators as another, only deeper, wider, or with other
kernel sizes or groups, is exported once, through the one it names here. Its own layout is checked
against the reference implementation (test_reference_layouts), its parameter count, logits and
input sizes on the network (test_models), and its checkpoints (test_weights).
"""

from inception_deploy import list_archs

SAME_OPERATORS_AS = {
    "inception_next_atto": "inception_next_tiny",  # band kernel 9 and a quarter of the channels per branch
    "inception_next_small": "inception_next_tiny",  # 27 blocks in stage 3
    "inception_next_base": "inception_next_tiny",  # wider
    "skresnet34": "skresnet18",  # deeper
    "skresnext50_32x4d": "skresnet18",  # bottlenecks, 32 groups (resnext50_32x4d's), paths read all inputs
}
EXPORTED = [arch for arch in list_archs() if arch not in SAME_OPERATORS_AS]
