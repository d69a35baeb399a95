"""The folder tree of one drive, for deriving item paths from ``parentReference.id``.

Drive delta reports an item's parent id but not its path, and a folder rename or move
does not list the folder's descendants. The backup therefore keeps every live item's
parent id and name, and derives each path by walking up to the root.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class TreeNode:
    """One live item: its parent (None for the drive root), name and kind."""

    parent_id: str | None
    name: str
    is_folder: bool


class DriveTree:
    """Live items of a drive by id; paths are ``Folder/Sub/file.txt`` below the root.

    The root's path is the empty string. A walk that reaches an id outside the tree
    (a parent the archive never saw) stops there, so the path contains the known part only.
    """

    def __init__(self, nodes: dict[str, TreeNode] | None = None) -> None:
        self.nodes: dict[str, TreeNode] = dict(nodes or {})
        self._paths: dict[str, str] = {}

    def put(self, item_id: str, node: TreeNode) -> None:
        self.nodes[item_id] = node
        self._paths.clear()

    def remove(self, item_ids: Iterable[str]) -> None:
        for item_id in item_ids:
            self.nodes.pop(item_id, None)
        self._paths.clear()

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.nodes

    def path(self, item_id: str) -> str:
        cached = self._paths.get(item_id)
        if cached is not None:
            return cached
        names: list[str] = []
        current: str | None = item_id
        visited: set[str] = set()
        # The visited set guards against a parent cycle in corrupt or half-applied data.
        while current is not None and current in self.nodes and current not in visited:
            if current in self._paths:
                names.append(self._paths[current])
                break
            visited.add(current)
            node = self.nodes[current]
            if node.parent_id is None:
                break
            names.append(node.name)
            current = node.parent_id
        path = "/".join(name for name in reversed(names) if name)
        self._paths[item_id] = path
        return path

    def descendants(self, item_ids: Iterable[str]) -> set[str]:
        """Return the ids of every live item below any of ``item_ids`` (not themselves)."""
        children: dict[str, list[str]] = {}
        for child_id, node in self.nodes.items():
            if node.parent_id is not None:
                children.setdefault(node.parent_id, []).append(child_id)
        found: set[str] = set()
        stack = list(item_ids)
        while stack:
            for child_id in children.get(stack.pop(), []):
                if child_id not in found:
                    found.add(child_id)
                    stack.append(child_id)
        return found
