-- Extensions and the one text search configuration used for documents AND queries.
-- The system this replaces unaccented documents but not queries; using one configuration for both fixes that:
-- "Café" and "cafe" produce the same lexeme whichever side they are on.
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = 'civic') THEN
        CREATE TEXT SEARCH CONFIGURATION public.civic (COPY = pg_catalog.simple);
        -- unaccent is a filtering dictionary: it rewrites the token and passes it on to simple.
        ALTER TEXT SEARCH CONFIGURATION public.civic
            ALTER MAPPING FOR word, hword, hword_part, asciiword, asciihword, hword_asciipart
            WITH public.unaccent, pg_catalog.simple;
    END IF;
END
$$;

-- Meeting names arrive in CamelCase ("CityCouncil", "ZBAHearing"); split them into words so that a search for
-- "council" finds them. IMMUTABLE so it can feed a generated column.
CREATE OR REPLACE FUNCTION public.civic_split_name(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN regexp_replace(
        regexp_replace(name, '([a-z0-9])([A-Z])', '\1 \2', 'g'),
        '([A-Z]+)([A-Z][a-z])', '\1 \2', 'g');
