/* dbsync--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION dbsync" to load this file. \quit

-- The foreign-data wrapper: a source is a foreign server of it.
CREATE FUNCTION dbsync.dbsync_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'dbsync_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER dbsync VALIDATOR dbsync.dbsync_validator;

-- Per-table configuration and sync state.  One row per (server, remote table).
-- Data and this row commit in the same local transaction.
CREATE TABLE dbsync.tables (
    server                text NOT NULL,
    server_oid            oid,                 -- state of a dropped and re-created server is stale
    table_name            text NOT NULL,       -- remote table name
    target_schema         text NOT NULL,
    target_table          text NOT NULL,
    target_relid          oid,                 -- the table dbsync created (or the owner adopted);
                                               -- no other relation is ever written for this row
    enabled               boolean NOT NULL DEFAULT true,
    primary_key_override  text[],              -- dbsync_set_table(primary_key =>)
    cursor_override       text,                -- dbsync_set_table(cursor_column =>)
    primary_key           text[],              -- in use at the last run
    cursor_column         text,                -- in use at the last run
    cursor_value          text,                -- high-water mark (UTC, ISO)
    resume_key            text[],              -- last key of an unfinished initial load
    load_direct           boolean,             -- that load COPYs straight into the target
    known_columns         text[],              -- remote columns seen at the last run
    rows_total            bigint,
    last_status           text CHECK (last_status IN ('ok', 'error', 'running', 'skipped')),
    last_mode             text,
    last_rows_upserted    bigint,
    last_rows_deleted     bigint,
    last_synced_at        timestamptz,
    last_error            text,
    last_error_at         timestamptz,
    last_row_error_sample jsonb,
    remote_missing_since  timestamptz,          -- table gone at the source
    source_flavor         text,                 -- e.g. "TiDB v7.5.1", "YugabyteDB 2.25.0.0"
    PRIMARY KEY (server, table_name)
);
REVOKE ALL ON dbsync.tables FROM PUBLIC;

-- One row per synced table, for the servers the current role may use.
-- security_barrier: a caller's own conditions never see rows of servers it may not use
CREATE VIEW dbsync.status WITH (security_barrier) AS
SELECT t.server::name AS server,
       t.table_name,
       (SELECT c.oid::pg_catalog.regclass FROM pg_catalog.pg_class c
         WHERE c.oid OPERATOR(pg_catalog.=) t.target_relid) AS target,
       COALESCE(t.primary_key_override, t.primary_key) AS primary_key,
       COALESCE(t.cursor_override, t.cursor_column) AS cursor_column,
       t.cursor_value,
       t.last_status,
       t.last_mode,
       t.last_synced_at,
       t.rows_total,
       t.last_rows_upserted,
       t.last_rows_deleted,
       t.last_error,
       t.last_error_at,
       t.last_row_error_sample,
       t.resume_key IS NOT NULL AS initial_load_pending,
       t.remote_missing_since,
       t.source_flavor,
       t.enabled
  FROM dbsync.tables t
  JOIN pg_catalog.pg_foreign_server s ON s.srvname OPERATOR(pg_catalog.=) t.server
   AND t.server_oid OPERATOR(pg_catalog.=) s.oid     -- not a dropped server's of the same name
 WHERE pg_catalog.has_server_privilege(s.oid, 'USAGE');
CREATE INDEX ON dbsync.tables (target_relid);
GRANT USAGE ON SCHEMA dbsync TO PUBLIC;
GRANT SELECT ON dbsync.status TO PUBLIC;

CREATE FUNCTION public.dbsync_run(srv name DEFAULT NULL, tbl text DEFAULT NULL,
    OUT server name, OUT table_name text, OUT mode text,
    OUT rows_upserted bigint, OUT rows_deleted bigint,
    OUT duration interval, OUT status text, OUT message text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbsync_run'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION public.dbsync_run(name, text) IS
    'sync every dbsync server, one server, or one table; one result row per table';

CREATE PROCEDURE public.dbsync_sync(srv name DEFAULT NULL, tbl text DEFAULT NULL)
AS 'MODULE_PATHNAME', 'dbsync_sync'
LANGUAGE C;
COMMENT ON PROCEDURE public.dbsync_sync(name, text) IS
    'like dbsync_run(), but commits after every checkpoint of an initial load (resumable); for CALL and pg_cron';

CREATE FUNCTION public.dbsync_discover(server name,
    OUT table_name text, OUT target regclass, OUT columns text[],
    OUT remote_types text[], OUT local_types text[], OUT primary_key text[],
    OUT cursor_column text, OUT mode text, OUT source_flavor text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbsync_discover'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION public.dbsync_discover(name) IS
    'preview what a run of this server would sync; changes nothing';

CREATE FUNCTION public.dbsync_set_table(server name, table_name text,
    primary_key text[] DEFAULT NULL, cursor_column text DEFAULT NULL,
    enabled boolean DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'dbsync_set_table'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION public.dbsync_set_table(name, text, text[], text, boolean) IS
    'override the primary key or cursor column of a table, or disable it; NULL keeps the current setting, ''{}'' / '''' resets it';

CREATE FUNCTION public.dbsync_resync(server name, table_name text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'dbsync_resync'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION public.dbsync_resync(name, text) IS
    'forget the sync state of a table (or of every table of a server): the next run is a full one';

CREATE FUNCTION public.dbsync_adopt_table(server name, table_name text)
RETURNS regclass
AS 'MODULE_PATHNAME', 'dbsync_adopt_table'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION public.dbsync_adopt_table(name, text) IS
    'make the existing table under the target''s name (owned by the server''s owner) the target of this table, e.g. after a restore; the next run compares it in full';
