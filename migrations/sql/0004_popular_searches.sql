-- A sampled log of searches and the materialized view of popular ones behind Query.popularSearches.
-- Only the normalised query text is kept: no address, no token, nothing that identifies the person.
CREATE TABLE public.search_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    logged_at timestamptz NOT NULL DEFAULT now(),
    query     text NOT NULL CHECK (length(query) BETWEEN 1 AND 500)
);
CREATE INDEX search_log_logged_at_idx ON public.search_log (logged_at);

-- now() is evaluated at each refresh: the window slides. The unique index is what lets
-- `python -m gateway stats refresh` use REFRESH ... CONCURRENTLY, so readers are never blocked.
CREATE MATERIALIZED VIEW public.popular_search AS
    SELECT query, count(*)::bigint AS searches, max(logged_at) AS last_searched
      FROM public.search_log
     WHERE logged_at > now() - interval '30 days'
     GROUP BY query
    WITH DATA;
CREATE UNIQUE INDEX popular_search_query_idx ON public.popular_search (query);
CREATE INDEX popular_search_rank_idx ON public.popular_search (searches DESC, query);

GRANT SELECT, INSERT ON public.search_log TO gateway;
GRANT SELECT ON public.popular_search TO gateway;
