-- Store the whole text of every page, index the longest prefix whose vector fits (issue 12, item 10).
--
-- A tsvector holds at most 1 MB of lexemes. While search_vector was a STORED GENERATED column, a page whose
-- vector would be larger ("string is too long for tsvector": OCR noise, tables of unique hyphenated codes)
-- could not be written at all, so the ingest cut its text. Now search_vector is an ordinary column that a
-- BEFORE INSERT OR UPDATE trigger fills: to_tsvector('public.civic', text), exactly as the generated column
-- did, for every text up to 128 KiB (no text that small can overflow: the worst case found needs 2.7 bytes of
-- vector per byte of text); above that, the vector of the longest prefix that fits, cut at whitespace. The text
-- itself is stored whole: bad input loses nothing, only what lies past the prefix is not searchable.
--
-- DROP EXPRESSION keeps every stored vector (no table rewrite, no recomputation) and recurses to every
-- partition. It takes a brief ACCESS EXCLUSIVE lock on meeting_page and its partitions: wait at most 10 s for
-- running searches, then fail whole (this file is one transaction) and let the operator run it again.
SET LOCAL lock_timeout = '10s';

-- How many leading characters of a page's text its search vector covers: all of them, unless the vector of
-- the whole text is over PostgreSQL's limit; then the longest prefix that fits, to within 1,024 characters, cut
-- back to the last whitespace before it, so no word is indexed half. Texts up to 131,072 bytes (128 KiB) are
-- never checked; ops/ingest/oversize.py CHECK_FROM_BYTES is the same threshold. The ingest calls it too, to
-- warn about a page that is only partly searchable.
--
-- The search is a bisection that guesses: each probe computes the vector of a prefix, which costs as much as
-- the prefix is long, so the next probe is put where the prefix's lexemes, at the density seen so far (bytes of
-- lexemes and positions per character), would reach the limit, at least `step` characters past the longest
-- fitting prefix (doubled after each fit, so a text whose density drops is crossed in a few probes), halving the
-- bracket instead when the guess falls outside it. The first probe after the whole text is a 131,072-character
-- sample. On the worst text found (1 MB of unique hyphenated codes) that is 7 probes instead of plain
-- bisection's 11, and 40 % fewer characters parsed; a text whose density changes (ordinary words, then codes)
-- may take a probe more than bisection.
-- Each probe runs in a block with an EXCEPTION handler (a subtransaction): only texts over the threshold
-- come here.
CREATE FUNCTION public.civic_indexed_length(body text) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    lim constant integer := 1048575;  -- MAXSTRPOS: the bytes of lexemes and positions a tsvector may hold
    good integer := 0;                -- the longest prefix known to fit...
    good_size integer := 0;           -- ...and the bytes its lexemes and positions take
    bad integer := length(body);      -- the shortest prefix known not to fit
    step integer := 1024;
    middle integer;
    vector tsvector;
    space integer;
BEGIN
    IF octet_length(body) <= 131072 THEN
        RETURN bad;
    END IF;
    BEGIN
        PERFORM to_tsvector('public.civic'::regconfig, body);
        RETURN bad;
    EXCEPTION WHEN program_limit_exceeded THEN
        NULL;  -- "string is too long for tsvector": look for the prefix below
    END;
    WHILE bad - good > 1024 LOOP
        IF good = 0 THEN
            middle := least(131072, bad / 2);
        ELSIF good_size <= 0 THEN
            middle := (good + bad) / 2;
        ELSE
            -- Aim at 99.5 % of the limit: just under it, a fit, and the next probe `step` further closes in.
            middle := greatest(good + step, (good::bigint * (lim - lim / 200) / good_size)::integer);
        END IF;
        IF middle >= bad THEN
            middle := (good + bad) / 2;
        END IF;
        BEGIN
            vector := to_tsvector('public.civic'::regconfig, left(body, middle));
            good := middle;
            -- A tsvector is a 4-byte length, a 4-byte count, 4 bytes per lexeme, then lexemes and positions.
            good_size := pg_column_size(vector) - 8 - 4 * length(vector);
            step := step * 2;
        EXCEPTION WHEN program_limit_exceeded THEN
            bad := middle;
            step := 1024;
        END;
    END LOOP;
    -- Position of the last whitespace of the prefix, counted from its end (0: none).
    space := regexp_instr(reverse(left(body, good)), '[[:space:]]');
    RETURN CASE WHEN space > 0 AND space < good THEN good - space ELSE good END;
END
$$;

-- The trigger that keeps search_vector. The common path is one expression, the same as the generated column's,
-- with no EXCEPTION block: a block would open a subtransaction for every row written.
CREATE FUNCTION public.civic_page_search_vector() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF octet_length(NEW.text) <= 131072 THEN
        NEW.search_vector := to_tsvector('public.civic'::regconfig, NEW.text);
    ELSE
        NEW.search_vector := to_tsvector('public.civic'::regconfig,
                                         left(NEW.text, public.civic_indexed_length(NEW.text)));
    END IF;
    RETURN NEW;
END
$$;

ALTER TABLE public.meeting_page ALTER COLUMN search_vector DROP EXPRESSION;

-- A row trigger on the partitioned table is cloned to every partition, present and future (CREATE TABLE ...
-- PARTITION OF, ATTACH PARTITION); a DETACHed partition loses its clone. OF text: the rebuild procedure of 0005
-- recomputes vectors with UPDATE ... SET text = text, which fires it. OF search_vector: a direct write of the
-- column is overwritten with the vector of the text, so the column stays what the generated one guaranteed.
CREATE TRIGGER meeting_page_search_vector
    BEFORE INSERT OR UPDATE OF text, search_vector ON public.meeting_page
    FOR EACH ROW EXECUTE FUNCTION public.civic_page_search_vector();

-- Pending partitions (ops/ingest/newparts.py) an interrupted ingest left behind: standalone tables made LIKE
-- meeting_page, with the generated column copied. They get the ordinary column and a trigger of their own,
-- under another name than the parent's: the ingest drops it when it attaches the table, so that the clone alone
-- fires. The comment is newparts.PENDING_TAG.
DO $$
DECLARE
    pending regclass;
BEGIN
    FOR pending IN
        SELECT c.oid::regclass
          FROM pg_class c
          JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition
           AND d.description LIKE 'civic-ingest: pending partition of meeting_page FROM %'
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN search_vector DROP EXPRESSION IF EXISTS', pending);
        EXECUTE format('CREATE TRIGGER civic_pending_search_vector '
                       'BEFORE INSERT OR UPDATE OF text, search_vector ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION public.civic_page_search_vector()', pending);
    END LOOP;
END
$$;
