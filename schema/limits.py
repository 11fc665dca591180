"""A simple query cost limit: every field costs 1, times the page sizes of the connections above it.

Depth, alias and token limits come from Strawberry's extensions; they do not stop a shallow query that
nests three connections of 100 (a million nodes). This rule estimates the worst case before execution:
``first``/``last`` given as literals count as written, as variables at the maximum page size (the rule
cannot see variable values), and absent as the default page size.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
)

from schema.errors import BAD_USER_INPUT
from schema.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

CONNECTION_ARGS = ("first", "last")


def _page_size(field: FieldNode) -> int | None:
    """The page size a connection field asks for, or None for a field that is not paged."""
    for arg in field.arguments or ():
        if arg.name.value in CONNECTION_ARGS:
            if isinstance(arg.value, IntValueNode):
                return max(0, min(int(arg.value.value), MAX_PAGE_SIZE))
            if isinstance(arg.value, VariableNode):
                return MAX_PAGE_SIZE
    if field.name.value in {"search", "municipalities", "documents", "pages"}:
        return DEFAULT_PAGE_SIZE
    if field.name.value == "nodes":
        return MAX_PAGE_SIZE
    return None


def make_cost_rule(max_cost: int) -> type[ValidationRule]:
    """A validation rule class refusing operations whose estimated cost exceeds ``max_cost``."""

    class CostLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fragments = {
                f.name.value: f for f in context.document.definitions if isinstance(f, FragmentDefinitionNode)
            }

        def cost(self, selection_set: SelectionSetNode | None, multiplier: int, seen: frozenset[str]) -> int:
            if selection_set is None:
                return 0
            total = 0
            for sel in selection_set.selections:
                if isinstance(sel, FieldNode):
                    total += multiplier
                    size = _page_size(sel)
                    total += self.cost(
                        sel.selection_set, multiplier * (size if size is not None else 1), seen
                    )
                elif isinstance(sel, InlineFragmentNode):
                    total += self.cost(sel.selection_set, multiplier, seen)
                elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                    fragment: Any = self.fragments.get(sel.name.value)
                    if fragment is not None:
                        total += self.cost(fragment.selection_set, multiplier, seen | {sel.name.value})
                if total > max_cost:
                    return total
            return total

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            cost = self.cost(node.selection_set, 1, frozenset())
            if cost > max_cost:
                self.report_error(
                    GraphQLError(
                        f"query too expensive: estimated cost {cost} exceeds {max_cost}; ask for smaller pages "
                        "or fewer nested connections",
                        node,
                        extensions={"code": BAD_USER_INPUT},
                    )
                )

    return CostLimit
