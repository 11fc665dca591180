"""What a resolver's caller selected below it, read from the query document before anything is fetched.

A connection resolver that knows its edges will ask for headlines, documents and towns can load all of them
in a few batched statements up front and hand back plain values, so that every field below it resolves
synchronously: no coroutine and no task per field. Type conditions and ``@skip``/``@include`` are ignored on
purpose: fetching something the client then skips costs one batched statement, never a wrong answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode

#: Field names selected below a field, by name, merged over aliases and fragments: {"edges": {"node": {}}}.
Selection = dict[str, "Selection"]


def selection(field_nodes: Iterable[FieldNode], fragments: dict[str, Any]) -> Selection:
    """The merged tree of field names selected below ``field_nodes`` (every alias of one field)."""
    tree: Selection = {}
    # Each fragment is merged once per walk: a fragment spread many times (or chains of them) costs its size
    # once, never once per path that reaches it.
    seen: set[tuple[int, str]] = set()
    for node in field_nodes:
        _merge(node.selection_set, fragments, tree, seen)
    return tree


def _merge(
    selection_set: SelectionSetNode | None, fragments: dict[str, Any], into: Selection, seen: set[tuple[int, str]]
) -> None:
    if selection_set is None:
        return
    for sel in selection_set.selections:
        if isinstance(sel, FieldNode):
            child = into.setdefault(sel.name.value, {})
            _merge(sel.selection_set, fragments, child, seen)
        elif isinstance(sel, InlineFragmentNode):
            _merge(sel.selection_set, fragments, into, seen)
        elif isinstance(sel, FragmentSpreadNode):
            key = (id(into), sel.name.value)
            fragment = fragments.get(sel.name.value)
            if key in seen or fragment is None:
                continue
            seen.add(key)
            _merge(fragment.selection_set, fragments, into, seen)


def wants(tree: Selection, *path: str) -> bool:
    """Whether the field at ``path`` (names from the top of ``tree``) is selected."""
    node = tree
    for name in path:
        if name not in node:
            return False
        node = node[name]
    return True
