-- Run once on a fresh private PostgreSQL cluster (scripts/stack, tests/harness.py) before
-- FerretDB (--handler=postgresql) first connects. See docs/design.md, "Local database".
--
-- FerretDB 1.24 pushes a top-level equality down as `_jsonb -> 'field' @> 'value'`, and
-- turns createIndexes (and every collection's _id) into btree indexes on
-- `(_jsonb -> 'field')`. A btree cannot answer `@>`, so without help every lookup, even
-- by _id, is a sequential scan of the collection. The event trigger below gives each index
-- FerretDB creates a GIN index on the same expressions (GIN's jsonb_path_ops answers `@>`):
--
--  * a UNIQUE btree (every _id, and unique keys) is kept, since it enforces uniqueness,
--    and gets a companion GIN index named <index>_gin (fastupdate off: point reads never
--    scan a pending list), dropped with its btree;
--  * a non-unique btree serves nothing here (FerretDB pushes down no range and no sort),
--    so it is REPLACED by a GIN index of the same name: FerretDB's dropIndexes still finds
--    it. Its fastupdate is on with a 256 kB pending list, so inserts append to that list
--    and PostgreSQL merges it into the index in bulk; a read scans at most 256 kB of it.
--    Bulk ingestion writes one index entry per vote instead of two (docs/design.md,
--    "Bulk ingestion").
--
-- plan_cache_mode=force_custom_plan (set on the server's command line) keeps the planner
-- from switching FerretDB's cached statements (`_jsonb -> $1 @> $2`) to a generic plan,
-- which could not match the index expressions.

CREATE DATABASE voter;
\connect voter

CREATE FUNCTION voter_gin_companion() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
  cmd record;
  idx record;
  expr text;
  cols text;
  gin text;
BEGIN
  FOR cmd IN SELECT objid FROM pg_event_trigger_ddl_commands()
             WHERE command_tag = 'CREATE INDEX' AND object_type = 'index' LOOP
    SELECT i.indexrelid, i.indrelid, i.indnkeyatts, i.indisunique, c.relname,
           n.nspname, am.amname INTO idx
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_am am ON am.oid = c.relam
     WHERE i.indexrelid = cmd.objid;
    CONTINUE WHEN idx.amname IS DISTINCT FROM 'btree';
    cols := NULL;
    FOR k IN 1..idx.indnkeyatts LOOP
      expr := pg_get_indexdef(idx.indexrelid, k, false);
      -- only FerretDB's document paths, ((_jsonb -> 'f'::text)) and the like
      CONTINUE WHEN strpos(expr, '_jsonb') = 0;
      cols := concat_ws(', ', cols, expr || ' jsonb_path_ops');
    END LOOP;
    CONTINUE WHEN cols IS NULL;
    IF idx.indisunique THEN
      EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (%s) WITH (fastupdate = off)',
                     left(idx.relname, 59) || '_gin', idx.indrelid::regclass, cols);
    ELSE
      -- built under a temporary name, then takes the btree's (the drop trigger below
      -- looks for <name>_gin, which does not exist)
      gin := left(idx.relname, 58) || '_ginx';
      EXECUTE format('CREATE INDEX %I ON %s USING gin (%s) WITH (fastupdate = on, gin_pending_list_limit = 256)',
                     gin, idx.indrelid::regclass, cols);
      EXECUTE format('DROP INDEX %I.%I', idx.nspname, idx.relname);
      EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', idx.nspname, gin, idx.relname);
    END IF;
  END LOOP;
END
$$;

CREATE FUNCTION voter_gin_companion_drop() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
  obj record;
BEGIN
  FOR obj IN SELECT schema_name, object_name FROM pg_event_trigger_dropped_objects()
             WHERE object_type = 'index' AND object_name NOT LIKE '%\_gin' LOOP
    EXECUTE format('DROP INDEX IF EXISTS %I.%I', obj.schema_name, left(obj.object_name, 59) || '_gin');
  END LOOP;
END
$$;

CREATE EVENT TRIGGER voter_gin_companion ON ddl_command_end
  WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION voter_gin_companion();
CREATE EVENT TRIGGER voter_gin_companion_drop ON sql_drop
  WHEN TAG IN ('DROP INDEX') EXECUTE FUNCTION voter_gin_companion_drop();
