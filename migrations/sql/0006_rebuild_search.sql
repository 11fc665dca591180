-- migrate: no-transaction
-- Rebuild the stored vectors for the stemming configuration of 0005, build the RUM index, then drop the GIN
-- index it replaces. Outside a transaction because the procedures commit batch by batch (see 0005); every
-- statement can be run again after an interruption (the rebuild resumes at the first partition not done).
CALL public.civic_rebuild_search_vectors();
CALL public.civic_build_rum_index();
-- A short ACCESS EXCLUSIVE lock on the table to drop the old index: wait at most a few seconds for running
-- searches (they are bounded by statement_timeout), then fail and let the operator run it again.
SET lock_timeout = '10s';
DROP INDEX IF EXISTS public.meeting_page_search_idx;
RESET lock_timeout;
-- Every row was rewritten: reclaim the old versions and give the planner the new lexemes' statistics.
VACUUM (ANALYZE) public.meeting_page;
ANALYZE public.meeting_document;
