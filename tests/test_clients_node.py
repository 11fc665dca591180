"""Real JavaScript clients against the real gateway (Node.js; packages from tests/clients, installed by make).

- graphql-http's server audits: every MUST of the GraphQL-over-HTTP specification passes.
- relay-compiler compiles the client queries in tests/clients/relay against the printed schema, and the
  operations it generates run against the gateway.
- @urql/core runs a search, pages it by cursor, resolves a node, and writes then reads its own write.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from schema.mutations import Mutation
from schema.root import build_schema
from tests.conftest import WRITER_TOKEN, ServedGateway

CLIENTS = Path(__file__).resolve().parent / "clients"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
NODE = shutil.which("node")
RUN_TIMEOUT_S = 60.0

if NODE is None or shutil.which("npm") is None:
    pytest.skip("Node.js and npm are not usable here (install nodejs and npm)", allow_module_level=True)
if not (CLIENTS / "node_modules" / ".package-lock.json").is_file():
    pytest.skip(
        "client packages not installed: run `make setup` (npm ci --prefix tests/clients)",
        allow_module_level=True,
    )


def node(*args: str, cwd: Path = CLIENTS) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, *args], cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


def endpoint(gateway: ServedGateway) -> str:
    return gateway.url + "/graphql"


def test_graphql_over_http_audits(gateway: ServedGateway) -> None:
    proc = node("audit.mjs", endpoint(gateway))
    assert proc.stdout, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "graphql-http-audit.json").write_text(json.dumps(report, indent=1))
    results = report["results"]
    assert len(results) > 50
    failed_musts = [r for r in results if r["name"].startswith("MUST") and r["status"] != "ok"]
    assert not failed_musts, json.dumps(failed_musts, indent=1)
    # SHOULDs and MAYs too: the response media type is negotiated, so no audit warns any more.
    not_ok = [r for r in results if r["status"] != "ok"]
    assert not not_ok, json.dumps(not_ok, indent=1)
    assert proc.returncode == 0, proc.stderr


def test_relay_compiler_builds_the_client_queries(gateway: ServedGateway, tmp_path: Path) -> None:
    shutil.copytree(CLIENTS / "relay", tmp_path / "relay")
    shutil.copyfile(CLIENTS / "relay.config.json", tmp_path / "relay.config.json")
    (tmp_path / "schema.graphql").write_text(str(build_schema(mutation=Mutation)))
    generated = tmp_path / "__generated__"
    generated.mkdir()
    proc = node(str(CLIENTS / "node_modules" / "relay-compiler" / "cli.js"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = {p.name.removesuffix(".graphql.js") for p in generated.glob("*.graphql.js")}
    assert built >= {
        "DocumentLine_document",
        "DocumentLineRefetchQuery",  # @refetchable on a Node type: refetched through Query.node
        "NodeView_node",  # a fragment on the Node interface
        "NodeViewQuery",
        "PageCard_page",
        "SearchPageQuery",
        "SearchResults_query",  # @connection pagination over Query.search
        "SearchResultsPaginationQuery",
        "TownList_query",
        "TownListPaginationQuery",
        "UpsertDocumentMutation",
    }, sorted(built)
    pagination = (generated / "SearchResults_query.graphql.js").read_text()
    assert '"connection"' in pagination and '"forward"' in pagination
    # The operations relay-compiler wrote run against the gateway as Relay's network layer sends them.
    (generated / "package.json").write_text('{"type": "module"}\n')
    run = node("relay-run.mjs", str(generated), endpoint(gateway))
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    assert summary["search"] == {"first": 10, "next": 10}


def test_urql_client_searches_pages_and_resolves_nodes(gateway: ServedGateway) -> None:
    proc = node("urql-client.mjs", endpoint(gateway), WRITER_TOKEN)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["search"]["pages"] == [5, 5]
    assert summary["mutation"]["readOwnWrite"] is True
    assert summary["mutation"]["anonymous"] == "UNAUTHENTICATED"
