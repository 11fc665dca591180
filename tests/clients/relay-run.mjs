// Sends the operations that relay-compiler generated to the gateway, exactly as Relay's network layer would
// (the artifact's params.text and variables), and checks the answers have the shapes Relay relies on.
//
//   node relay-run.mjs <artifact directory> http://127.0.0.1:8000/graphql
//
// The artifact directory needs a package.json with {"type": "module"} (relay-compiler's eagerEsModules).
// Prints a JSON summary; exits 1 when a check fails.

import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [artifacts, url] = process.argv.slice(2);
if (!artifacts || !url) {
  console.error('usage: node relay-run.mjs <artifact directory> <graphql endpoint URL>');
  process.exit(2);
}

async function artifact(name) {
  const module = await import(pathToFileURL(path.join(artifacts, `${name}.graphql.js`)).href);
  return module.default;
}

async function execute(name, variables) {
  const { params } = await artifact(name);
  assert.equal(params.name, name);
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ query: params.text, variables }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, `${name}: HTTP ${response.status} ${JSON.stringify(body)}`);
  assert.equal(body.errors, undefined, `${name}: ${JSON.stringify(body.errors)}`);
  return body.data;
}

const summary = {};

// The entry query with both connections, then the pagination query Relay sends for loadNext(10).
const first = await execute('SearchPageQuery', { query: 'budget', filter: null, orderBy: 'NEWEST' });
assert.equal(first.search.edges.length, 10);
assert.ok(first.search.pageInfo.hasNextPage);
for (const edge of first.search.edges) {
  assert.ok(edge.cursor && edge.node.__typename === 'MeetingPage' && edge.headline.includes('<mark>'));
}
assert.ok(first.municipalities.edges.length > 0);
const next = await execute('SearchResultsPaginationQuery', {
  query: 'budget',
  filter: null,
  orderBy: 'NEWEST',
  count: 10,
  cursor: first.search.pageInfo.endCursor,
});
const firstIds = new Set(first.search.edges.map((e) => e.node.id));
assert.equal(next.search.edges.length, 10);
assert.ok(next.search.edges.every((e) => !firstIds.has(e.node.id)), 'the next page repeats results');
summary.search = { first: first.search.edges.length, next: next.search.edges.length };

// Node lookups: the Node-interface view of a page, and the refetch query of a @refetchable fragment.
const page = first.search.edges[0].node;
const viewed = await execute('NodeViewQuery', { id: page.id });
assert.equal(viewed.node.__typename, 'MeetingPage');
assert.equal(viewed.node.id, page.id);
assert.equal(typeof viewed.node.text, 'string');
const refetched = await execute('DocumentLineRefetchQuery', { id: page.document.id });
assert.equal(refetched.node.id, page.document.id);
assert.equal(refetched.node.meetingName, page.document.meetingName);
summary.node = { page: viewed.node.id, document: refetched.node.id };

// The second connection's pagination query, one state at a time.
const towns = await execute('TownListPaginationQuery', { state: 'CA', count: 3, cursor: null });
assert.ok(towns.municipalities.edges.every((e) => e.node.state === 'CA'));
summary.towns = towns.municipalities.edges.length;

process.stdout.write(`${JSON.stringify(summary)}\n`);
