"""Operation limits, checked before execution in one linear pass over the document.

Four figures are computed for every operation: depth, aliases, root fields and cost. Each fragment's figures
are computed once and reused at every spread, so a document whose fragments spread each other many times
(``A`` spreads ``B`` twice, ``B`` spreads ``C`` twice, ...) costs its own size to check, not the size of its
expansion; the figures themselves may be astronomically large, so they saturate just past the limit.

Cost is an estimate of the work the operation asks for: every field costs 1, times the page sizes of the
connections above it. ``first``/``last`` given as literals count as written, as variables at the maximum
page size (validation cannot see variable values), and absent as the default page size.
"""

from __future__ import annotations

import dataclasses
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
PAGED_FIELDS = frozenset({"search", "municipalities", "documents", "pages"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """The most an operation may ask for. ``max_depth`` counts nested fields; introspection fields count too."""

    max_depth: int = 10
    max_aliases: int = 30
    max_root_fields: int = 20
    max_cost: int = 5000


@dataclasses.dataclass(frozen=True, slots=True)
class Figures:
    """What a selection set asks for: nesting depth, aliases, root-level fields and cost."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0
    cost: int = 0


def _page_size(field: FieldNode) -> int | None:
    """The page size a connection field asks for, or None for a field that is not paged."""
    for arg in field.arguments or ():
        if arg.name.value in CONNECTION_ARGS:
            if isinstance(arg.value, IntValueNode):
                return max(0, min(int(arg.value.value), MAX_PAGE_SIZE))
            if isinstance(arg.value, VariableNode):
                return MAX_PAGE_SIZE
    if field.name.value in PAGED_FIELDS:
        return DEFAULT_PAGE_SIZE
    if field.name.value == "nodes":
        return MAX_PAGE_SIZE
    return None


class _Counter:
    """Figures of selection sets, with each fragment's computed once (memoized by name)."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode], cap: int) -> None:
        self.fragments = fragments
        self.cap = cap  # figures saturate here: enough to say "over the limit", small enough to stay cheap
        self.memo: dict[str, Figures] = {}
        self.active: set[str] = set()

    def _sat(self, value: int) -> int:
        return value if value < self.cap else self.cap

    def fragment(self, name: str) -> Figures:
        found = self.memo.get(name)
        if found is not None:
            return found
        definition = self.fragments.get(name)
        if definition is None or name in self.active:
            return Figures()  # unknown or cyclic: other validation rules report those
        self.active.add(name)
        figures = self.selection_set(definition.selection_set)
        self.active.discard(name)
        self.memo[name] = figures
        return figures

    def selection_set(self, selection_set: SelectionSetNode | None) -> Figures:
        if selection_set is None:
            return Figures()
        depth = aliases = fields = cost = 0
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                below = self.selection_set(sel.selection_set)
                size = _page_size(sel)
                depth = max(depth, 1 + below.depth)
                aliases += (1 if sel.alias is not None else 0) + below.aliases
                fields += 1
                cost += 1 + below.cost * (size if size is not None else 1)
            else:
                if isinstance(sel, InlineFragmentNode):
                    inner = self.selection_set(sel.selection_set)
                elif isinstance(sel, FragmentSpreadNode):
                    inner = self.fragment(sel.name.value)
                else:  # pragma: no cover - graphql-core knows no other selection
                    continue
                depth = max(depth, inner.depth)
                aliases += inner.aliases
                fields += inner.fields
                cost += inner.cost
            aliases, fields, cost = self._sat(aliases), self._sat(fields), self._sat(cost)
        return Figures(depth=depth, aliases=aliases, fields=fields, cost=cost)


def measure(operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode], cap: int) -> Figures:
    """The figures of one operation (saturating at ``cap``)."""
    return _Counter(fragments, cap).selection_set(operation.selection_set)


def limits_rule(limits: Limits) -> type[ValidationRule]:
    """A validation rule refusing operations past ``limits``, with a message that says by how much."""
    cap = 1 + max(limits.max_depth, limits.max_aliases, limits.max_root_fields, limits.max_cost)

    class OperationLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            fragments = {
                d.name.value: d for d in context.document.definitions if isinstance(d, FragmentDefinitionNode)
            }
            # One counter per document: fragments shared by several operations are measured once.
            self.counter = _Counter(fragments, cap)

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            figures = self.counter.selection_set(node.selection_set)
            problems = []
            if figures.depth > limits.max_depth:
                problems.append(f"depth {figures.depth} exceeds {limits.max_depth}")
            if figures.aliases > limits.max_aliases:
                problems.append(f"{_at_least(figures.aliases, cap)} aliases exceed {limits.max_aliases}")
            if figures.fields > limits.max_root_fields:
                problems.append(f"{_at_least(figures.fields, cap)} root fields exceed {limits.max_root_fields}")
            if figures.cost > limits.max_cost:
                problems.append(
                    f"estimated cost {_at_least(figures.cost, cap)} exceeds {limits.max_cost} "
                    "(ask for smaller pages or fewer nested connections)"
                )
            if problems:
                self.report_error(
                    GraphQLError(
                        "query too expensive: " + "; ".join(problems), node, extensions={"code": BAD_USER_INPUT}
                    )
                )

    return OperationLimits


def _at_least(value: int, cap: int) -> str:
    return f"more than {cap - 1}" if value >= cap else str(value)
