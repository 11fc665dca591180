"""Parse and validate once per distinct document: a bounded cache of prepared documents.

Parsing and validation cost more CPU than executing a typical search, and clients send the same few
documents over and over (the search page, GraphiQL's examples, persisted queries). A document is keyed by the
SHA-256 of its text, which is also its APQ hash, so a persisted-query hash finds it without the text. The
entry holds the verdict as well as the AST: a document refused for its syntax, its validity or its limits is
refused again from the cache for no more than a dictionary lookup.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Sequence

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationRule,
    parse,
    specified_rules,
    validate,
)

from schema.errors import BAD_USER_INPUT
from schema.limits import Limits, limits_rule, measure


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedDocument:
    """A parsed and validated document, or the errors that refuse it.

    ``operations`` maps each operation's name (None for an anonymous one) to its type, so the endpoint knows
    whether a request is a query, and may be cached, before anything runs.
    """

    key: str
    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]
    operations: dict[str | None, OperationType]
    #: Operations that select a field other than introspection at their root, i.e. that read data.
    reading: frozenset[str | None] = frozenset()
    #: The most SQL statements each operation can send (schema.limits), reported beside the real count.
    statements: dict[str | None, int] = dataclasses.field(default_factory=dict)

    def estimated_statements(self, name: str | None) -> int | None:
        if name is None and len(self.statements) == 1:
            return next(iter(self.statements.values()))
        return self.statements.get(name)

    def reads_data(self, name: str | None) -> bool:
        """Whether the operation a request names reads data (``{ __typename }`` does not)."""
        if name is None and len(self.operations) == 1:
            name = next(iter(self.operations))
        return name in self.reading

    @property
    def ok(self) -> bool:
        return not self.errors and self.document is not None

    def operation_type(self, name: str | None) -> OperationType | None:
        """The type of the operation a request names (or of the only one); None when it cannot be told."""
        if name is not None:
            return self.operations.get(name)
        if len(self.operations) == 1:
            return next(iter(self.operations.values()))
        return None


class DocumentCache:
    """Prepared documents by key, least recently used evicted past ``max_entries``.

    ``max_tokens`` bounds parsing itself (graphql-core stops lexing past it), so no document within the body
    limit can cost more than that many tokens of work before it is refused.
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        limits: Limits,
        max_entries: int = 1000,
        max_tokens: int = 5000,
        rules: Sequence[type[ValidationRule]] = (),
    ) -> None:
        self._schema = schema
        self._rules = (*specified_rules, limits_rule(limits), *rules)
        self._max_entries = max_entries
        self._max_tokens = max_tokens
        self._entries: collections.OrderedDict[str, PreparedDocument] = collections.OrderedDict()
        # Workers are single-threaded asyncio loops, but tests run apps in threads: keep the LRU consistent.
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> PreparedDocument | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            return found

    def parse(self, text: str) -> DocumentNode | GraphQLError:
        """Parse ``text`` (bounded by ``max_tokens``); a syntax error is returned, not raised."""
        try:
            return parse(text, max_tokens=self._max_tokens, no_location=False)
        except GraphQLError as exc:
            return exc
        except RecursionError:
            return GraphQLError("the document is nested too deeply", extensions={"code": BAD_USER_INPUT})

    def validate(self, key: str, parsed: DocumentNode | GraphQLError) -> PreparedDocument:
        """Validate a parsed document and remember the verdict under ``key``."""
        if isinstance(parsed, GraphQLError):
            prepared = PreparedDocument(key=key, document=None, errors=(parsed,), operations={})
        else:
            try:
                errors = tuple(validate(self._schema, parsed, self._rules, max_errors=20))
            except RecursionError:
                errors = (
                    GraphQLError("the document is nested too deeply", extensions={"code": BAD_USER_INPUT}),
                )
            operations = {
                (d.name.value if d.name else None): d.operation
                for d in parsed.definitions
                if isinstance(d, OperationDefinitionNode)
            }
            fragments = {d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)}
            reading = frozenset(
                (d.name.value if d.name else None)
                for d in parsed.definitions
                if isinstance(d, OperationDefinitionNode) and _reads_data(d.selection_set, fragments, set())
            )
            statements = (
                {
                    (d.name.value if d.name else None): measure(d, fragments, 10**6).statements
                    for d in parsed.definitions
                    if isinstance(d, OperationDefinitionNode)
                }
                if not errors
                else {}
            )
            prepared = PreparedDocument(
                key=key,
                document=parsed,
                errors=errors,
                operations=operations,
                reading=reading,
                statements=statements,
            )
        with self._lock:
            self.misses += 1
            self._entries[key] = prepared
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return prepared


def _reads_data(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], seen: set[str]
) -> bool:
    """Whether a root selection names any field but introspection (each fragment looked at once)."""
    for sel in selection_set.selections:
        if isinstance(sel, FieldNode):
            if not sel.name.value.startswith("__"):
                return True
        elif isinstance(sel, InlineFragmentNode):
            if _reads_data(sel.selection_set, fragments, seen):
                return True
        elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
            seen.add(sel.name.value)
            fragment = fragments.get(sel.name.value)
            if fragment is not None and _reads_data(fragment.selection_set, fragments, seen):
                return True
    return False
