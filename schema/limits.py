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
    max_statements: int = 20


@dataclasses.dataclass(frozen=True, slots=True)
class Figures:
    """What a selection set asks for: nesting depth, aliases, root-level fields and cost."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0
    cost: int = 0
    #: SQL statements, as ``per_object * objects + per_group * groups`` of the level above (see _sql_role).
    per_object: int = 0
    per_group: int = 0

    @property
    def statements(self) -> int:
        """The most SQL statements the operation can send (its root is one object in one group)."""
        return self.per_object + self.per_group


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


# How a field sends SQL. "object": one statement (or more) per parent object, and what it returns completes as
# a group of its own (a connection per town, a count per search); "batch": one DataLoader batch per group of
# objects that complete together (every document of one page of results asks for its town in one batch).
_PER_OBJECT = {"search": 1, "municipalities": 1, "documents": 1, "pages": 1, "popularSearches": 1, "totalCount": 2,
               "upsertMunicipality": 2, "upsertDocument": 2, "deleteDocument": 2}
_ROOT_ONLY = {"municipality": 1}  # Query.municipality; elsewhere "municipality" is a batched lookup
# A document's own pages (schema.document_loaders): one batch per group of documents or pages. ``page`` is
# also the (free) page of a DocumentMatch; counting it there too only over-estimates.
_PER_GROUP = {"node": 1, "nodes": 3, "document": 1, "municipality": 1, "headline": 1, "matchingPages": 1,
              "pageNumbers": 1, "matchingPageNumbers": 1, "page": 1, "highlightedText": 1}


def _sql_role(name: str, *, root: bool) -> tuple[str, int]:
    if root and name in _ROOT_ONLY:
        return "object", _ROOT_ONLY[name]
    if name in _PER_OBJECT:
        return "object", _PER_OBJECT[name]
    if name in _PER_GROUP:
        return "group", _PER_GROUP[name]
    return "none", 0


class _Counter:
    """Figures of selection sets, with each fragment's computed once (memoized by name)."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode], cap: int) -> None:
        self.fragments = fragments
        self.cap = cap  # figures saturate here: enough to say "over the limit", small enough to stay cheap
        self.memo: dict[tuple[str, bool, int | None], Figures] = {}
        self.active: set[str] = set()

    def _sat(self, value: int) -> int:
        return value if value < self.cap else self.cap

    def fragment(self, name: str, *, root: bool, page: int | None) -> Figures:
        found = self.memo.get((name, root, page))
        if found is not None:
            return found
        definition = self.fragments.get(name)
        if definition is None or name in self.active:
            return Figures()  # unknown or cyclic: other validation rules report those
        self.active.add(name)
        figures = self.selection_set(definition.selection_set, root=root, page=page)
        self.active.discard(name)
        self.memo[(name, root, page)] = figures
        return figures

    def selection_set(
        self, selection_set: SelectionSetNode | None, *, root: bool = False, page: int | None = None
    ) -> Figures:
        """Figures of a selection set; ``page`` is the page size of the connection it belongs to, if any."""
        if selection_set is None:
            return Figures()
        depth = aliases = fields = cost = per_object = per_group = 0
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                name = sel.name.value
                size = _page_size(sel)
                if name == "edges" and page is not None:
                    many, inner_page = page, None  # a connection's edges: one object per result
                elif name == "nodes" and size is not None:
                    many, inner_page = size, None  # a list of objects by id
                else:
                    many, inner_page = 1, size  # a connection's own fields (edges, counts) come once
                below = self.selection_set(sel.selection_set, page=inner_page)
                depth = max(depth, 1 + below.depth)
                aliases += (1 if sel.alias is not None else 0) + below.aliases
                fields += 1
                cost += 1 + below.cost * many
                role, own = _sql_role(name, root=root)
                if role == "object":
                    # Runs once per parent object; each parent's results then complete as a group of their own.
                    per_object += own + below.per_object * many + below.per_group
                elif role == "group":
                    per_object += below.per_object * many
                    per_group += own + below.per_group
                else:
                    per_object += below.per_object * many
                    per_group += below.per_group
            else:
                if isinstance(sel, InlineFragmentNode):
                    inner = self.selection_set(sel.selection_set, root=root, page=page)
                elif isinstance(sel, FragmentSpreadNode):
                    inner = self.fragment(sel.name.value, root=root, page=page)
                else:  # pragma: no cover - graphql-core knows no other selection
                    continue
                depth = max(depth, inner.depth)
                aliases += inner.aliases
                fields += inner.fields
                cost += inner.cost
                per_object += inner.per_object
                per_group += inner.per_group
            aliases, fields, cost = self._sat(aliases), self._sat(fields), self._sat(cost)
            per_object, per_group = self._sat(per_object), self._sat(per_group)
        return Figures(
            depth=depth, aliases=aliases, fields=fields, cost=cost, per_object=per_object, per_group=per_group
        )


def measure(operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode], cap: int) -> Figures:
    """The figures of one operation (saturating at ``cap``)."""
    return _Counter(fragments, cap).selection_set(operation.selection_set, root=True)


def limits_rule(limits: Limits) -> type[ValidationRule]:
    """A validation rule refusing operations past ``limits``, with a message that says by how much."""
    cap = 1 + max(limits.max_depth, limits.max_aliases, limits.max_root_fields, limits.max_cost, limits.max_statements)

    class OperationLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            fragments = {
                d.name.value: d for d in context.document.definitions if isinstance(d, FragmentDefinitionNode)
            }
            # One counter per document: fragments shared by several operations are measured once.
            self.counter = _Counter(fragments, cap)

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            figures = self.counter.selection_set(node.selection_set, root=True)
            problems = []
            if figures.depth > limits.max_depth:
                problems.append(f"depth {figures.depth} exceeds {limits.max_depth}")
            if figures.aliases > limits.max_aliases:
                problems.append(f"{_at_least(figures.aliases, cap)} aliases exceed {limits.max_aliases}")
            if figures.fields > limits.max_root_fields:
                problems.append(f"{_at_least(figures.fields, cap)} root fields exceed {limits.max_root_fields}")
            if figures.statements > limits.max_statements:
                over = figures.statements - limits.max_statements
                problems.append(
                    f"it would send up to {_at_least(figures.statements, cap)} SQL statements, "
                    f"{'at least ' if figures.statements >= cap else ''}{over} more than the "
                    f"{limits.max_statements} a request may send (ask for fewer nested connections or counts)"
                )
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
