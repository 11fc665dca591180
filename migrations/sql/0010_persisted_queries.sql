-- Automatic persisted queries (Apollo APQ), kept in PostgreSQL rather than in the Redis result cache: a client
-- registering documents then fills this table, never the cache's memory, so no registration can push a cached
-- response out. Each client may keep a bounded number of documents (the gateway checks the quota under an
-- advisory lock), and the table as a whole is bounded in bytes by the one-row usage account below.
-- The client is stored as a salted hash of its rate-limit key (token hash or address), never the address itself.
CREATE TABLE public.persisted_query (
    sha256     text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    body       text NOT NULL,
    bytes      integer NOT NULL CHECK (bytes > 0),
    client     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX persisted_query_client_idx ON public.persisted_query (client);
CREATE INDEX persisted_query_created_idx ON public.persisted_query (created_at);

CREATE TABLE public.persisted_query_usage (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    bytes     bigint NOT NULL DEFAULT 0,
    entries   bigint NOT NULL DEFAULT 0
);
INSERT INTO public.persisted_query_usage DEFAULT VALUES;

GRANT SELECT, INSERT, DELETE ON public.persisted_query TO gateway;
GRANT SELECT, UPDATE ON public.persisted_query_usage TO gateway;
