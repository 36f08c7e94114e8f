"""``convscope explain``: the questions people ask about CNNs, answered on their own numbers.

Every topic computes its answer with the engine on the sizes given — nothing is canned text —
and states claims that hold only if the computation bears them out::

    >>> from convscope.explain import explain
    >>> e = explain("separable", cin=32, cout=64, k=3, size="112x112")
    >>> e.facts["macs_ratio"], e.ok
    (Fraction(73, 576), True)
    >>> print(e)                                   # doctest: +SKIP

``TOPICS`` maps each topic name to its :class:`~convscope.explain.explanation.Topic` (options,
defaults, help). The three conventions of ``explain conventions`` are real, trainable layers:
:class:`SeparatePerMapConv2d`, :class:`SharedAcrossMapsConv2d` (and ``nn.Conv2d``).
"""

from __future__ import annotations

from typing import Any

from . import conv3d, conventions, output_size, pointwise, pooling, quadratic, relu_placement, separable, stack
from .conventions import SeparatePerMapConv2d, SharedAcrossMapsConv2d
from .explanation import Explanation, Option, Topic

__all__ = ["TOPICS", "Explanation", "Option", "SeparatePerMapConv2d", "SharedAcrossMapsConv2d", "Topic", "explain"]

TOPICS: dict[str, Topic] = {m.TOPIC.name: m.TOPIC for m in (
    stack, conventions, output_size, pointwise, quadratic, pooling, conv3d, relu_placement, separable)}
_ALIASES = {alias: topic for topic in TOPICS.values() for alias in topic.aliases}


def explain(topic: str, **options: Any) -> Explanation:
    """Compute the answer to ``topic`` (a name of ``TOPICS`` or an alias) with ``options``
    (the topic's option names; missing ones take their defaults).

    Raises ValueError with a one-line message for an unknown topic or option, or for option
    values the topic cannot use.
    """
    found = TOPICS.get(topic) or _ALIASES.get(topic)
    if found is None:
        raise ValueError(f"explain: unknown topic {topic!r}; topics: {', '.join(TOPICS)}")
    return found.explain(**options)
