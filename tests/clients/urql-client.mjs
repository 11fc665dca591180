// A real GraphQL client (@urql/core) against the gateway: a search, its next page by cursor, a node lookup,
// and (given a writer token) a mutation followed by a read that carries its consistency token.
//
//   node urql-client.mjs http://127.0.0.1:8000/graphql [writer-token]
//
// Prints a JSON summary; exits 1 when a check fails.

import assert from 'node:assert/strict';
import { Client, fetchExchange, gql } from '@urql/core';

const [url, token] = process.argv.slice(2);
if (!url) {
  console.error('usage: node urql-client.mjs <graphql endpoint URL> [writer token]');
  process.exit(2);
}

const SEARCH = gql`
  query Search($query: String!, $filter: SearchFilter, $first: Int, $after: String) {
    search(query: $query, filter: $filter, orderBy: NEWEST, first: $first, after: $after) {
      totalCount { value exact }
      pageInfo { hasNextPage endCursor }
      edges {
        cursor
        headline
        node {
          id
          pageNumber
          document { meetingName meetingDate municipality { name state } }
        }
      }
    }
  }
`;

const NODE = gql`
  query Node($id: ID!) {
    node(id: $id) {
      id
      ... on MeetingPage { pageNumber text document { meetingName } }
    }
  }
`;

const UPSERT_TOWN = gql`
  mutation UpsertTown($input: MunicipalityInput!) {
    upsertMunicipality(input: $input) { consistencyToken municipality { id subdomain name } }
  }
`;

const TOWN = gql`
  query Town($subdomain: String!) { municipality(subdomain: $subdomain) { id name state } }
`;

function client(headers = {}) {
  // requestPolicy network-only: every call reaches the server (the point here is the server, not the cache).
  return new Client({
    url,
    exchanges: [fetchExchange],
    requestPolicy: 'network-only',
    preferGetMethod: false,
    fetchOptions: () => ({ headers }),
  });
}

async function run(operation, variables, headers) {
  const result = await operation(client(headers), variables).toPromise();
  assert.equal(result.error, undefined, String(result.error));
  return result.data;
}

const query = (doc) => (c, v) => c.query(doc, v);
const mutation = (doc) => (c, v) => c.mutation(doc, v);
const summary = {};

// Search, then the next page with the first page's endCursor.
const filter = { documentType: 'MINUTES' };
const first = await run(query(SEARCH), { query: 'budget', filter, first: 5 });
assert.equal(first.search.edges.length, 5);
assert.ok(first.search.totalCount.value >= 5);
assert.ok(first.search.pageInfo.hasNextPage);
const second = await run(query(SEARCH), {
  query: 'budget',
  filter,
  first: 5,
  after: first.search.pageInfo.endCursor,
});
const seen = new Set(first.search.edges.map((e) => e.node.id));
assert.ok(second.search.edges.length > 0);
assert.ok(second.search.edges.every((e) => !seen.has(e.node.id)), 'the second page repeats results');
const dates = [...first.search.edges, ...second.search.edges].map((e) => e.node.document.meetingDate);
assert.deepEqual(dates, [...dates].sort().reverse(), 'not newest first across the two pages');
summary.search = { total: first.search.totalCount, pages: [first.search.edges.length, second.search.edges.length] };

// Resolve a result's node by its global id.
const hit = first.search.edges[0].node;
const node = await run(query(NODE), { id: hit.id });
assert.equal(node.node.id, hit.id);
assert.equal(node.node.pageNumber, hit.pageNumber);
assert.equal(node.node.document.meetingName, hit.document.meetingName);
summary.node = node.node.id;

// A write with the bearer token, then a read-your-write with the consistency token it returned.
if (token) {
  const input = { subdomain: 'urql-client.wa', name: 'Urql Client Test', state: 'WA' };
  const written = await run(mutation(UPSERT_TOWN), { input }, { Authorization: `Bearer ${token}` });
  const consistency = written.upsertMunicipality.consistencyToken;
  assert.ok(consistency);
  const read = await run(query(TOWN), { subdomain: input.subdomain }, { 'X-Consistency-Token': consistency });
  assert.equal(read.municipality.id, written.upsertMunicipality.municipality.id);
  // Without a token a mutation is refused with the contract's code.
  const refused = await client().mutation(UPSERT_TOWN, { input }).toPromise();
  assert.equal(refused.error.graphQLErrors[0].extensions.code, 'UNAUTHENTICATED');
  summary.mutation = { municipality: read.municipality.id, readOwnWrite: true, anonymous: 'UNAUTHENTICATED' };
}

process.stdout.write(`${JSON.stringify(summary)}\n`);
