// A small GraphQL-over-HTTP client for the gateway's /graphql endpoint (fetch, JSON, no library).

export const ENDPOINT = '/graphql';

/** A request that did not produce a usable GraphQL response (network down, not JSON, no data). */
export class RequestFailed extends Error {
  constructor(message, { code = 'NETWORK', traceId = null } = {}) {
    super(message);
    this.name = 'RequestFailed';
    this.code = code;
    this.traceId = traceId;
  }
}

/** The errors a GraphQL response carried, with the contract's codes (errors[].extensions.code). */
export class GraphQLErrors extends Error {
  constructor(errors, traceId) {
    super(errors.map((e) => e.message).join('; '));
    this.name = 'GraphQLErrors';
    this.errors = errors;
    this.traceId = traceId;
    const first = errors.find((e) => e.extensions && e.extensions.code) || errors[0];
    this.code = (first && first.extensions && first.extensions.code) || 'INTERNAL_SERVER_ERROR';
    this.firstMessage = first ? String(first.message) : '';
  }
}

/**
 * POST one operation. Resolves to `data`; rejects with GraphQLErrors when the server reported errors,
 * RequestFailed when the request itself failed, or an AbortError when `signal` aborted it.
 */
export async function request(query, variables = {}, { signal, headers = {} } = {}) {
  let response;
  try {
    response = await fetch(ENDPOINT, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/graphql-response+json, application/json;q=0.9',
        ...headers,
      },
      body: JSON.stringify({ query, variables }),
      signal,
      credentials: 'same-origin',
    });
  } catch (error) {
    if (error && error.name === 'AbortError') throw error;
    throw new RequestFailed('The search service could not be reached. Check your connection and try again.');
  }
  let body;
  try {
    body = await response.json();
  } catch (error) {
    if (error && error.name === 'AbortError') throw error;
    throw new RequestFailed(`The search service answered with an unexpected response (HTTP ${response.status}).`, {
      code: response.status >= 500 ? 'UNAVAILABLE' : 'NETWORK',
    });
  }
  const traceId = (body && body.extensions && body.extensions.traceId) || null;
  if (body && Array.isArray(body.errors) && body.errors.length > 0) {
    throw new GraphQLErrors(body.errors, traceId);
  }
  if (!body || body.data == null) {
    throw new RequestFailed('The search service returned no data.', { traceId });
  }
  return body.data;
}

const FRIENDLY = {
  RATE_LIMITED: 'Too many searches in a short time. Wait a moment and try again.',
  TIMEOUT: 'The search took too long. Try more specific words or narrower filters.',
  UNAVAILABLE: 'The search service is temporarily unavailable. Try again in a moment.',
  UNAUTHENTICATED: 'This request needs a valid token.',
  FORBIDDEN: 'This request is not allowed with the token given.',
};

/**
 * What to tell a person about a failure: { title, detail, isInputProblem, traceId }. Never a stack trace:
 * the message of a BAD_USER_INPUT error is written for people by the server; other codes get a fixed text.
 */
export function describeFailure(error) {
  if (error instanceof GraphQLErrors) {
    if (error.code === 'BAD_USER_INPUT') {
      return { title: 'Check your search', detail: error.firstMessage, isInputProblem: true, traceId: error.traceId };
    }
    const detail = FRIENDLY[error.code] || 'Something went wrong on our side. Try again in a moment.';
    return { title: 'The search failed', detail, isInputProblem: false, traceId: error.traceId };
  }
  if (error instanceof RequestFailed) {
    return { title: 'The search failed', detail: error.message, isInputProblem: false, traceId: error.traceId };
  }
  return {
    title: 'The search failed',
    detail: 'Something unexpected happened in the page. Reload and try again.',
    isInputProblem: false,
    traceId: null,
  };
}
