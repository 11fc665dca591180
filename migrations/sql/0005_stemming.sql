-- English stemming for documents and queries alike, and the procedures that bring stored data up to it.
--
-- public.civic stays the one configuration used for page vectors, name vectors, queries and headlines; only its
-- word mappings change: unaccent (a filtering dictionary) still runs first, and english_stem now follows it
-- instead of simple, so "budgets" and "budget" give the same lexeme 'budget', "Hearings" and "hearing" give
-- 'hear'. english_stem also drops English stop words ("the", "of"), which no search could rank by anyway.
-- Numbers and other token types keep simple's mapping.
--
-- The change takes effect at once for every new page (search_vector is generated from this configuration) and
-- every query. Stored vectors are rebuilt by the procedures below, called from 0006 outside a transaction,
-- partition by partition in short batches, so search stays up meanwhile (docs/search.md, "Migrating").
CREATE EXTENSION IF NOT EXISTS rum;

ALTER TEXT SEARCH CONFIGURATION public.civic
    ALTER MAPPING FOR word, hword, hword_part, asciiword, asciihword, hword_asciipart
    WITH public.unaccent, pg_catalog.english_stem;

-- Which partitions already hold vectors of the current configuration: a rebuild interrupted half-way resumes
-- where it stopped instead of starting over.
CREATE TABLE public.search_vector_rebuild (
    partition regclass PRIMARY KEY,
    rows      bigint NOT NULL,
    seconds   double precision NOT NULL,
    done_at   timestamptz NOT NULL DEFAULT now()
);

-- Recompute search_vector of every page, newest partition first (recent pages are the most searched), in
-- batches of `batch_blocks` heap blocks, each its own transaction: row locks are held for about a second and no
-- table lock stronger than ROW EXCLUSIVE is taken, so searches and ingest carry on. `SET text = text` is how a
-- stored generated column is recomputed (PostgreSQL 15 cannot alter its expression); the text's TOAST value is
-- reused, not rewritten. The scan is a TID range: each batch reads only its own blocks, and the end block is
-- fixed before the first batch, so the new row versions appended past it are not visited again.
CREATE PROCEDURE public.civic_rebuild_search_vectors(batch_blocks integer DEFAULT 256)
LANGUAGE plpgsql AS $$
DECLARE
    part regclass;
    last_block bigint;
    b bigint;
    n bigint;
    total bigint;
    started timestamptz;
BEGIN
    FOR part IN
        SELECT c.oid::regclass
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'public.meeting_page'::regclass
         ORDER BY c.relname DESC
    LOOP
        -- Done already, or another session is on it: several sessions may CALL this at once to share the work
        -- (one partition each at a time, under a session advisory lock keyed by the partition's oid).
        CONTINUE WHEN EXISTS (SELECT 1 FROM public.search_vector_rebuild r WHERE r.partition = part)
                   OR NOT pg_try_advisory_lock((1668707840::bigint << 32) | part::oid::bigint);
        IF EXISTS (SELECT 1 FROM public.search_vector_rebuild r WHERE r.partition = part) THEN
            PERFORM pg_advisory_unlock((1668707840::bigint << 32) | part::oid::bigint);
            CONTINUE;
        END IF;
        started := clock_timestamp();
        last_block := pg_relation_size(part) / current_setting('block_size')::bigint;
        b := 0;
        total := 0;
        WHILE b <= last_block LOOP
            EXECUTE format('UPDATE %s SET text = text WHERE ctid >= %L::tid AND ctid < %L::tid',
                           part, format('(%s,0)', b), format('(%s,0)', b + batch_blocks));
            GET DIAGNOSTICS n = ROW_COUNT;
            total := total + n;
            COMMIT;
            b := b + batch_blocks;
        END LOOP;
        INSERT INTO public.search_vector_rebuild (partition, rows, seconds)
        VALUES (part, total, extract(epoch FROM clock_timestamp() - started));
        COMMIT;
        PERFORM pg_advisory_unlock((1668707840::bigint << 32) | part::oid::bigint);
    END LOOP;
    -- Meeting names: a small table, one statement.
    UPDATE public.meeting_document SET meeting_name = meeting_name;
    COMMIT;
END
$$;

-- The RUM index that ranks RELEVANCE inside the index (ORDER BY search_vector <=> query) and checks phrases from
-- the positions it stores. Built partition by partition: the parent's index is declared ON ONLY (no build),
-- each partition's index is built in its own transaction (a SHARE lock on that one partition: its writes wait,
-- reads do not) and attached; once every partition's is attached the parent's index is valid and new partitions
-- get theirs automatically.
CREATE PROCEDURE public.civic_build_rum_index()
LANGUAGE plpgsql AS $$
DECLARE
    part regclass;
    idx text;
BEGIN
    CREATE INDEX IF NOT EXISTS meeting_page_rum_idx ON ONLY public.meeting_page
        USING rum (search_vector public.rum_tsvector_ops);
    COMMIT;
    FOR part, idx IN
        SELECT c.oid::regclass, c.relname || '_rum_idx'
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'public.meeting_page'::regclass
         ORDER BY c.relname DESC
    LOOP
        -- As for the rebuild, several sessions may share the work: a partition another one is indexing is
        -- skipped (and picked up by that session), one whose index is attached already too.
        CONTINUE WHEN NOT pg_try_advisory_lock((1668707841::bigint << 32) | part::oid::bigint);
        IF NOT EXISTS (SELECT 1 FROM pg_inherits ii JOIN pg_class ic ON ic.oid = ii.inhrelid
                        WHERE ii.inhparent = 'public.meeting_page_rum_idx'::regclass AND ic.relname = idx) THEN
            PERFORM set_config('maintenance_work_mem', '256MB', true);
            EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING rum (search_vector public.rum_tsvector_ops)',
                           idx, part);
            EXECUTE format('ALTER INDEX public.meeting_page_rum_idx ATTACH PARTITION public.%I', idx);
        END IF;
        COMMIT;
        PERFORM pg_advisory_unlock((1668707841::bigint << 32) | part::oid::bigint);
    END LOOP;
END
$$;

-- Counts past 10,000 are estimated from a block sample of the pages (schema/search_sql.py, _estimate_query):
-- the table's row count as the planner knows it, and the TABLESAMPLE SYSTEM percentage that reads about
-- `target` rows.
-- String bodies (not SQL-standard ones): they are resolved when called, so pg_dump/pg_restore of a partition
-- (ops partitions archive) can create them before the table they read exists.
CREATE FUNCTION public.civic_page_rows() RETURNS double precision
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
         WHERE i.inhparent = to_regclass('public.meeting_page')
    $$;
CREATE FUNCTION public.civic_sample_percent(target double precision) RETURNS double precision
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT least(100, 100 * target / greatest(1, public.civic_page_rows())) $$;

-- Whether a NEWEST/OLDEST search should ask the index first instead of walking the date index
-- (schema/search_sql.py, _picked_ctes). The walk checks pages one by one and pays for every page that does not
-- match, so it only suits queries whose every required word is common: a word missing from the column's
-- most-common-elements statistics (ANALYZE keeps the ~1,000 most frequent lexemes) is rare, and a phrase is
-- rarer than its words, whose positions the RUM index checks without reading pages. An alternative (|) keeps
-- the walk: one common side makes the whole query common. Negated lexemes (!) are not required words.
CREATE FUNCTION public.civic_is_selective(q tsquery) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT strpos(q::text, '|') = 0 AND (
        q::text ~ '<(-|[0-9]+)>'
        OR EXISTS (
            SELECT 1
              FROM regexp_matches(q::text, '(!?)''((?:[^'']|'''')*)''', 'g') m
             WHERE m[1] = ''
               AND NOT replace(m[2], '''''', '''') = ANY (coalesce((
                       SELECT s.most_common_elems::text::text[] FROM pg_catalog.pg_stats s
                        WHERE s.schemaname = 'public' AND s.tablename = 'meeting_page' AND s.attname = 'search_vector'
                        ORDER BY s.inherited DESC LIMIT 1), '{}'::text[]))))
    $$;
