"""torchvision's weight initialisation, for the zoo families built in its layout.

A torchvision model re-initialises itself at the end of its constructor: it walks
``self.modules()`` and gives each layer the rule of the first type it is an instance of.
:func:`reinitialise` is that walk over a family's table of rules; each family writes its table
next to its constructor, from the rules defined here (the ones several families share) and its
own. Layers that no rule matches, and parameters a rule leaves alone, keep the layers' default
initialisation (torch's ``reset_parameters``), as they do in torchvision. The draws come from
:func:`convscope.random.default_generator`, so :func:`convscope.manual_seed` makes a built
model reproducible; meta parameters are left untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .. import nn

__all__ = ["Rule", "Rules", "conv_kaiming_normal_fan_out", "linear_normal", "norm_ones_zeros", "reinitialise",
           "trunc_normal_weight"]

Rule = Callable[[Any], None]
Rules = Sequence[tuple[type | tuple[type, ...], Rule]]


def reinitialise(model: nn.Module, rules: Rules) -> None:
    """Apply to every module of ``model`` (itself included, in ``modules()`` order) the rule of
    the first ``(types, rule)`` pair whose types it is an instance of."""
    for module in model.modules():
        for types, rule in rules:
            if isinstance(module, types):
                rule(module)
                break


def conv_kaiming_normal_fan_out(conv: nn.Conv2d) -> None:
    """Weight ~ N(0, 2 / fan_out) with ``fan_out = C_out·kH·kW`` (``kaiming_normal_(mode="fan_out")``
    at ReLU's gain √2), bias (if any) zero: torchvision's conv init for ResNet, VGG, MobileNet v2
    and v3 and EfficientNet. (ResNet and VGG pass ``nonlinearity="relu"``; MobileNet and
    EfficientNet keep the default leaky ReLU of slope ``a=0``, whose gain is the same √2.)"""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def norm_ones_zeros(norm: nn.Module) -> None:
    """Affine weight 1 and bias 0 (a norm layer's default too; torchvision writes it out)."""
    if norm.weight is not None:
        nn.init.ones_(norm.weight)
    if norm.bias is not None:
        nn.init.zeros_(norm.bias)


def linear_normal(std: float) -> Rule:
    """The rule weight ~ N(0, std²), bias 0 (VGG and MobileNet v2/v3's classifiers, std 0.01)."""

    def rule(linear: nn.Linear) -> None:
        nn.init.normal_(linear.weight, 0.0, std)
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)

    return rule


def trunc_normal_weight(std: float, *, zero_bias: bool) -> Rule:
    """The rule weight ~ N(0, std²) truncated to [−2, 2] (``trunc_normal_``'s default bounds,
    absolute: 100 σ at ConvNeXt's std 0.02), and the bias zeroed or left at its default."""

    def rule(layer: nn.Module) -> None:
        nn.init.trunc_normal_(layer.weight, 0.0, std, -2.0, 2.0)
        if zero_bias and layer.bias is not None:
            nn.init.zeros_(layer.bias)

    return rule
