"""Operation limits: one linear pass whatever the document's shape (fragment chains, diamonds, towers)."""

from __future__ import annotations

import time

from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.documents import DocumentCache
from schema.limits import Limits, measure
from schema.mutations import Mutation
from schema.root import build_schema

SCHEMA = build_schema(mutation=Mutation)._schema
LIMITS = Limits(max_depth=10, max_aliases=30, max_root_fields=20, max_cost=5000)


def _cache() -> DocumentCache:
    return DocumentCache(SCHEMA, limits=LIMITS, max_tokens=200_000)


def chain(n: int, *, alias: bool = False) -> str:
    """n fragments, each spreading the previous one twice: 2^n fields once expanded."""
    field = "a: __typename" if alias else "__typename"
    parts = [f"fragment F0 on Query {{ {field} }}"]
    for i in range(1, n):
        parts.append(f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}")
    return f"{{ ...F{n - 1} }} " + " ".join(parts)


def verdict(text: str) -> tuple[list[str], float, float]:
    cache = _cache()
    started = time.process_time()
    parsed = cache.parse(text)
    parse_s = time.process_time() - started
    started = time.process_time()
    prepared = cache.validate("k", parsed)
    validate_s = time.process_time() - started
    return [e.message for e in prepared.errors], parse_s, validate_s


def test_a_chain_of_forty_fragments_is_refused_at_once() -> None:
    # Expanded, this selects 2^39 aliased fields; walked without memory it froze a process for minutes.
    messages, _, validate_s = verdict(chain(40, alias=True))
    assert any("aliases exceed 30" in m for m in messages), messages
    assert validate_s < 1.0


def test_figures_are_exact_below_the_limits() -> None:
    messages, _, _ = verdict(chain(4, alias=True))  # 8 aliases
    assert messages == []
    messages, _, _ = verdict(chain(6, alias=True))  # 32 aliases
    assert messages == ["query too expensive: 32 aliases exceed 30; 32 root fields exceed 20"]


def test_deep_inline_fragments_count_their_fields_depth() -> None:
    inner = "id"
    for _ in range(12):
        inner = f"... on Municipality {{ documents {{ edges {{ node {{ municipality {{ {inner} }} }} }} }} }}"
    messages, _, _ = verdict(f'{{ municipality(subdomain: "a") {{ {inner} }} }}')
    assert any(m.startswith("query too expensive: depth") for m in messages), messages


def test_root_fields_are_limited_through_fragments() -> None:
    body = " ".join(f'm{i}: municipality(subdomain: "x{i}") {{ id }}' for i in range(25))
    messages, _, _ = verdict(f"{{ ...R }} fragment R on Query {{ {body} }}")
    assert any("root fields exceed 20" in m for m in messages), messages


@st.composite
def fragment_dags(draw: st.DrawFn) -> str:
    """Random fragment graphs: each fragment spreads earlier ones any number of times (chains, diamonds)."""
    n = draw(st.integers(min_value=1, max_value=60))
    parts = ["fragment F0 on Query { __typename a0: __typename }"]
    for i in range(1, n):
        spreads = draw(st.lists(st.integers(min_value=0, max_value=i - 1), min_size=1, max_size=4))
        inline = draw(st.booleans())
        body = " ".join(f"...F{j}" for j in spreads)
        parts.append(f"fragment F{i} on Query {{ {'... on Query { ' + body + ' }' if inline else body} }}")
    return f"{{ ...F{n - 1} }} " + " ".join(parts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fragment_dags())
def test_any_fragment_graph_costs_about_what_parsing_it_costs(text: str) -> None:
    document = parse(text)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    parse_s = min(_cpu(lambda: parse(text)) for _ in range(5))
    limits_s = min(_cpu(lambda: measure(operation, fragments, 10_000)) for _ in range(5))
    # The limits' own verdict is one pass over the document: no dearer than parsing it (plus timer noise).
    assert limits_s <= parse_s + 0.002, (limits_s, parse_s)
    # And the whole verdict, graphql-core's rules included, stays far from anything exponential.
    _, _, validate_s = verdict(text)
    assert validate_s < 2.0


def _cpu(fn: object) -> float:
    started = time.process_time()
    fn()  # type: ignore[operator]
    return time.process_time() - started


def test_parse_is_bounded_by_tokens() -> None:
    cache = DocumentCache(SCHEMA, limits=LIMITS, max_tokens=500)
    parsed = cache.parse("{ " + "__typename " * 2000 + "}")
    assert not hasattr(parsed, "definitions")  # a GraphQLError, not a document
    assert "token" in str(parsed).lower()


def test_prepared_documents_are_cached_with_their_verdict() -> None:
    cache = _cache()
    text = chain(30, alias=True)
    first = cache.validate("key", cache.parse(text))
    assert cache.get("key") is first and not first.ok
    assert cache.hits == 1 and cache.misses == 1


def test_the_lru_is_bounded() -> None:
    cache = DocumentCache(SCHEMA, limits=LIMITS, max_entries=3)
    for i in range(5):
        cache.validate(f"k{i}", parse("{ __typename }"))
    assert len(cache) == 3 and cache.get("k0") is None and cache.get("k4") is not None
