"""The server's printed schema contains the public contract: same names, same types, same arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
)

from schema.root import build_schema as build_server_schema

ROOT = Path(__file__).resolve().parents[1]
# The repository carries its own copy of the public contract, so a clone alone can run the suite; the copy is
# compared with the published one whenever the shared folder sits beside the repository.
CONTRACT = ROOT / "contract" / "schema.graphql"
PUBLISHED = ROOT.parent / "shared" / "contract" / "schema.graphql"


@pytest.fixture(scope="module")
def contract() -> GraphQLSchema:
    return build_schema(CONTRACT.read_text())


def test_the_copy_of_the_contract_matches_the_published_one() -> None:
    if not PUBLISHED.exists():
        pytest.skip(f"no published contract at {PUBLISHED} (the shared folder is not beside this clone)")
    assert CONTRACT.read_text() == PUBLISHED.read_text(), (
        f"{CONTRACT} differs from {PUBLISHED}: copy the published contract into the repository"
    )


@pytest.fixture(scope="module")
def server() -> GraphQLSchema:
    from schema.mutations import Mutation

    printed = str(build_server_schema(mutation=Mutation))
    return build_schema(printed)


def test_every_contract_type_field_and_argument_is_served(
    contract: GraphQLSchema, server: GraphQLSchema
) -> None:
    problems: list[str] = []
    for name, ctype in contract.type_map.items():
        if name.startswith("__"):
            continue
        stype = server.type_map.get(name)
        if stype is None:
            problems.append(f"type {name} missing")
            continue
        if type(stype) is not type(ctype):
            problems.append(f"{name} is a {type(stype).__name__}, contract says {type(ctype).__name__}")
            continue
        if isinstance(ctype, GraphQLEnumType):
            assert isinstance(stype, GraphQLEnumType)
            missing = set(ctype.values) - set(stype.values)
            if missing:
                problems.append(f"enum {name} lacks {sorted(missing)}")
        if isinstance(ctype, GraphQLObjectType | GraphQLInterfaceType):
            assert isinstance(stype, GraphQLObjectType | GraphQLInterfaceType)
            if isinstance(ctype, GraphQLObjectType):
                assert isinstance(stype, GraphQLObjectType)
                want = {i.name for i in ctype.interfaces} - {i.name for i in stype.interfaces}
                if want:
                    problems.append(f"{name} does not implement {want}")
            for fname, cfield in ctype.fields.items():
                sfield = stype.fields.get(fname)
                if sfield is None:
                    problems.append(f"{name}.{fname} missing")
                    continue
                if str(sfield.type) != str(cfield.type):
                    problems.append(f"{name}.{fname}: {sfield.type} != {cfield.type}")
                for aname, carg in cfield.args.items():
                    sarg = sfield.args.get(aname)
                    if sarg is None:
                        problems.append(f"{name}.{fname}({aname}) missing")
                    elif str(sarg.type) != str(carg.type):
                        problems.append(f"{name}.{fname}({aname}): {sarg.type} != {carg.type}")
                    elif carg.default_value is not None and sarg.default_value != carg.default_value:
                        problems.append(f"{name}.{fname}({aname}) default {sarg.default_value!r}")
                extra_required = [
                    a
                    for a, sarg in sfield.args.items()
                    if a not in cfield.args and "!" in str(sarg.type) and sarg.default_value is None
                ]
                if extra_required:
                    problems.append(f"{name}.{fname} adds required args {extra_required}")
        if isinstance(ctype, GraphQLInputObjectType):
            assert isinstance(stype, GraphQLInputObjectType)
            for fname, cfield in ctype.fields.items():
                sfield = stype.fields.get(fname)
                if sfield is None:
                    problems.append(f"input {name}.{fname} missing")
                elif str(sfield.type) != str(cfield.type):
                    problems.append(f"input {name}.{fname}: {sfield.type} != {cfield.type}")
    assert problems == []


def test_every_type_and_field_has_a_description(server: GraphQLSchema) -> None:
    missing = []
    for name, stype in server.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Float", "Boolean", "ID"}:
            continue
        if not stype.description:
            missing.append(name)
        fields = getattr(stype, "fields", None) or {}
        missing += [f"{name}.{f}" for f, field in fields.items() if not field.description]
    assert missing == []
