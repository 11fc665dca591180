// Starts GraphiQL on the page the gateway serves for a browser GET of /graphql.
// Classic script (not a module): GraphiQL's UMD build needs the React and ReactDOM globals loaded before it.
// A query can be passed in the fragment, e.g. /graphql#query=...&variables=..., and the fragment follows edits,
// so the address bar is always a shareable link. Headers are never put in the URL (they may hold tokens),
// nor kept in local storage (shouldPersistHeaders is false).
(function () {
  'use strict';

  var root = document.getElementById('graphiql');
  var config = JSON.parse(document.getElementById('graphiql-config').textContent);

  function fromFragment() {
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ''));
    return { query: params.get('query'), variables: params.get('variables') };
  }

  function toFragment(query, variables) {
    var params = new URLSearchParams();
    if (query) params.set('query', query);
    if (variables && variables.trim() && variables.trim() !== '{}') params.set('variables', variables);
    window.history.replaceState(null, '', '#' + params.toString());
  }

  if (!window.React || !window.ReactDOM || !window.GraphiQL) {
    root.textContent = 'GraphiQL could not start: its scripts did not load. Run `make setup` and reload.';
    return;
  }

  var fetcher = window.GraphiQL.createFetcher({
    url: config.endpoint,
    // The gateway answers with plain JSON; no multipart or subscriptions.
    enableIncrementalDelivery: false,
  });
  var initial = fromFragment();
  var current = { query: initial.query || config.defaultQuery, variables: initial.variables || '' };

  var props = {
    fetcher: fetcher,
    defaultQuery: config.defaultQuery,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,
    defaultEditorToolsVisibility: 'headers',
    onEditQuery: function (query) {
      current.query = query;
      toFragment(current.query, current.variables);
    },
    onEditVariables: function (variables) {
      current.variables = variables;
      toFragment(current.query, current.variables);
    },
  };
  if (initial.query) props.query = initial.query;
  if (initial.variables) props.variables = initial.variables;

  root.textContent = '';
  window.ReactDOM.createRoot(root).render(window.React.createElement(window.GraphiQL, props));
})();
