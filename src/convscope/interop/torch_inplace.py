"""In-place changes in a torch.fx graph, for :mod:`.torch_import`.

torch code may change a tensor in place (``y.relu_()``, ``F.relu(y, inplace=True)``, a
``ReLU(inplace=True)`` layer) and go on reading the new value under the old node; convscope's
ops return new tensors. :class:`InPlace` follows the changes: each later reference to a
changed tensor reads the node that changed it last. A change that also reaches another tensor
read after it (a view of the changed tensor, or the tensor it is a view of) is not followed:
:meth:`InPlace.record` names that tensor, and the importer refuses the model.

>>> from types import SimpleNamespace as Node
>>> x, y, v, r = Node(name="x", users=[]), Node(name="y", users=[]), Node(name="v", users=[]), Node(name="r", users=[])
>>> x.users, y.users = [y], [v, r]
>>> changes = InPlace([x, y, v, r])   # y = conv(x); v = y.view(-1); r = y.relu_()
>>> changes.share("y", "v")
>>> changes.record("y", "r")          # v is not read after r: followed
>>> changes.latest("y")
'r'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class InPlace:
    """The in-place changes of one graph's ``nodes`` (torch.fx nodes, in order), by node name;
    readers for which ``metadata_only`` is true (``x.shape``) do not read a tensor's values."""

    def __init__(self, nodes: Iterable[Any], metadata_only: Callable[[Any], bool] = lambda node: False) -> None:
        nodes = list(nodes)
        self._order = {n.name: i for i, n in enumerate(nodes)}
        self._readers = {n.name: [u.name for u in n.users if not metadata_only(u)] for n in nodes}
        self._tensor: dict[str, str] = {}         # node → the first node of the same tensor
        self._holder: dict[str, str] = {}         # first node → the node that holds its value now
        self._memory: dict[str, list[str]] = {}   # node → the nodes that may share its memory (one list a group)

    def latest(self, name: str) -> str:
        """The node that holds node ``name``'s value now."""
        return self._holder.get(self._tensor.get(name, name), name)

    def share(self, source: str, view: str) -> None:
        """Node ``view`` may be (a view of) node ``source``'s memory."""
        group = self._group(source)
        for name in self._group(view):
            if name not in group:
                group.append(name)
                self._memory[name] = group

    def record(self, changed: str, by: str) -> str | None:
        """Node ``by`` changed node ``changed`` in place. Returns a node that may share its memory,
        is another tensor and is read after ``by`` (the change would reach it: nothing is then
        recorded), else None."""
        tensor = self._tensor.get(changed, changed)
        group = self._group(changed)
        for other in group:
            if self._tensor.get(other, other) != tensor and \
                    any(self._order[r] > self._order[by] for r in self._readers[other]):
                return other
        self._tensor[by] = tensor
        self._holder[tensor] = by
        if by not in group:
            group.append(by)
            self._memory[by] = group
        return None

    def _group(self, name: str) -> list[str]:
        return self._memory.setdefault(name, [name])
