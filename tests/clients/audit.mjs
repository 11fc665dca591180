// Runs graphql-http's GraphQL-over-HTTP server audits against a gateway and prints one JSON report.
//
//   node audit.mjs http://127.0.0.1:8000/graphql
//
// Output (stdout): {"url": ..., "results": [{"id", "name", "status", "reason"?}, ...]}
// Exit code: 0 when every MUST audit passed, 1 when one failed, 2 on a usage or fatal error.

import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql endpoint URL>');
  process.exit(2);
}

const results = [];
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  const result = await audit.fn();
  const row = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    row.reason = result.reason;
    try {
      row.responseStatus = result.response.status;
      row.responseBody = (await result.response.text()).slice(0, 300);
    } catch {
      // the body was already read by the audit
    }
  }
  results.push(row);
}

process.stdout.write(`${JSON.stringify({ url, results }, null, 1)}\n`);
const mustFailures = results.filter((r) => r.name.startsWith('MUST') && r.status !== 'ok');
process.exit(mustFailures.length ? 1 : 0);
