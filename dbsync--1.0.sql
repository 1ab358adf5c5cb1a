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
    -- health (dbsync.status) and the auto-sync's schedule
    health_state          text NOT NULL DEFAULT 'ok'
                          CHECK (health_state IN ('ok', 'failing', 'paused')),
    last_attempt_at       timestamptz,
    freshness_at          timestamptz,          -- start of the last successful read
    consecutive_failures  integer NOT NULL DEFAULT 0,
    first_failure_at      timestamptz,          -- start of the current failure streak
    last_sqlstate         text,
    last_error_class      text,
    last_remote_sql       text,                 -- the source statement that failed
    last_message          text,                 -- notes of the last successful run
    cursor_lost           text,                 -- a cursor column gone at the source
    deletes_checked_at    timestamptz,          -- last exact delete check (delete_check_interval)
    captured_since        pg_lsn,               -- capture 'log': loaded, and its changes applied
                                                -- from this source position on (NULL: load it)
    next_attempt_at       timestamptz,          -- the auto-sync's next try (schedule, backoff)
    paused_at             timestamptz,
    paused_reason         text,
    excluded_since        timestamptz,          -- no longer selected by tables/exclude_tables
    -- totals that only grow (pruning dbsync.runs never resets them)
    runs_total            bigint NOT NULL DEFAULT 0,
    failures_total        bigint NOT NULL DEFAULT 0,
    rows_read_total       bigint NOT NULL DEFAULT 0,
    rows_upserted_total   bigint NOT NULL DEFAULT 0,
    rows_deleted_total    bigint NOT NULL DEFAULT 0,
    rows_skipped_total    bigint NOT NULL DEFAULT 0,
    bytes_read_total      bigint NOT NULL DEFAULT 0,
    last_duration         interval,
    PRIMARY KEY (server, table_name)
);
REVOKE ALL ON dbsync.tables FROM PUBLIC;

-- capture 'log': one row per server, its slot and the source position applied.
-- applied_lsn commits in the same local transaction as the rows it brought.
CREATE TABLE dbsync.captures (
    server            text PRIMARY KEY,
    server_oid        oid NOT NULL,
    slot_name         text NOT NULL,
    publication       text NOT NULL,
    publication_ours  boolean NOT NULL,     -- dbsync created it (and drops it)
    consistent_point  pg_lsn NOT NULL,      -- where the slot began: its snapshot was loaded
    applied_lsn       pg_lsn NOT NULL,      -- end of the last source transaction applied
    source_lsn        pg_lsn,               -- end of the source's WAL, as last reported
    applied_commit_at timestamptz,          -- source commit time of that transaction
    lag               interval,             -- behind the source, at the last update
    slot_state        text,                 -- streaming, caught_up, stopped, lost
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at        timestamptz
);
REVOKE ALL ON dbsync.captures FROM PUBLIC;

-- One row per synced table, for the servers the current role may use.
-- security_barrier: a caller's own conditions never see rows of servers it may not use
CREATE VIEW dbsync.table_status WITH (security_barrier) AS
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
       t.enabled,
       CASE WHEN NOT t.enabled THEN 'disabled'
            WHEN t.excluded_since IS NOT NULL THEN 'excluded'
            WHEN t.paused_at IS NOT NULL THEN 'paused'
            WHEN t.health_state OPERATOR(pg_catalog.=) 'failing' THEN 'failing'
            WHEN t.last_synced_at IS NULL AND t.resume_key IS NOT NULL THEN 'initial_load'
            WHEN t.last_synced_at IS NULL THEN 'never_run'
            WHEN o.every IS NOT NULL AND pg_catalog.now() OPERATOR(pg_catalog.-) t.freshness_at
                 OPERATOR(pg_catalog.>) (o.every OPERATOR(pg_catalog.*) 2::pg_catalog.float8
                 OPERATOR(pg_catalog.+) '5 min'::pg_catalog.interval) THEN 'stale'
            ELSE 'ok' END AS health,
       t.last_synced_at AS last_success_at,
       t.last_attempt_at,
       t.consecutive_failures,
       t.next_attempt_at,
       t.paused_at,
       t.paused_reason,
       t.freshness_at,
       t.last_sqlstate,
       t.last_error_class,
       t.last_remote_sql,
       t.last_message,
       t.deletes_checked_at,
       COALESCE((SELECT c.option_value FROM pg_catalog.pg_options_to_table(s.srvoptions) c
                  WHERE c.option_name OPERATOR(pg_catalog.=) 'capture'), 'cursor') AS capture,
       cap.slot_name,
       cap.applied_lsn AS capture_position,
       CASE WHEN t.source_flavor NOT LIKE 'YugabyteDB%' THEN
            pg_catalog.int8(pg_catalog.pg_lsn_mi(GREATEST(cap.source_lsn, cap.applied_lsn), cap.applied_lsn))
       END AS capture_lag_bytes,
       cap.lag AS capture_lag,
       cap.slot_state
  FROM dbsync.tables t
  JOIN pg_catalog.pg_foreign_server s ON s.srvname OPERATOR(pg_catalog.=) t.server
   AND t.server_oid OPERATOR(pg_catalog.=) s.oid     -- not a dropped server's of the same name
  LEFT JOIN dbsync.captures cap ON cap.server OPERATOR(pg_catalog.=) t.server
   AND cap.server_oid OPERATOR(pg_catalog.=) s.oid
  LEFT JOIN LATERAL (SELECT o.option_value::pg_catalog.interval AS every
                       FROM pg_catalog.pg_options_to_table(s.srvoptions) o
                      WHERE o.option_name OPERATOR(pg_catalog.=) 'sync_interval') o ON true;
-- (internal: no role but the extension's owner reads it; see dbsync.status and dbsync.metrics)
CREATE INDEX ON dbsync.tables (target_relid);
GRANT USAGE ON SCHEMA dbsync TO PUBLIC;

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

-- (internal, for tests: the text of a statement for a source flavor; sends nothing)
CREATE FUNCTION dbsync.generated_sql(what text, flavor text)
RETURNS text
AS 'MODULE_PATHNAME', 'dbsync_generated_sql'
LANGUAGE C STRICT IMMUTABLE;
REVOKE ALL ON FUNCTION dbsync.generated_sql(text, text) FROM PUBLIC;

CREATE FUNCTION dbsync.pgoutput_decode(messages bytea[],
    OUT kind text, OUT relation text, OUT old_kind text, OUT old_row text,
    OUT new_row text, OUT unchanged text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbsync_pgoutput_decode'
LANGUAGE C STRICT IMMUTABLE;
REVOKE ALL ON FUNCTION dbsync.pgoutput_decode(bytea[]) FROM PUBLIC;

CREATE FUNCTION dbsync.log_capture_probe(server name, slot text, publication text,
    schema_name text, table_name text, wait_ms integer,
    OUT kind text, OUT relation text, OUT row_text text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbsync_log_capture_probe'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION dbsync.log_capture_probe(name, text, text, text, text, integer) FROM PUBLIC;
COMMENT ON FUNCTION dbsync.log_capture_probe(name, text, text, text, text, integer) IS
    'make a logical slot at the source, count a table in its snapshot, stream and acknowledge what follows: a test of the replication client';
COMMENT ON FUNCTION dbsync.pgoutput_decode(bytea[]) IS
    'the row changes of pgoutput (proto_version 1) messages, for tests of the decoder';

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

-- Run history: one row per table per run, written once when the table ends
-- (with its data on success; after the rollback on failure), and as
-- 'aborted' for runs that a cancel, timeout, kill or crash cut short.
CREATE SEQUENCE dbsync.run_id_seq;
REVOKE ALL ON dbsync.run_id_seq FROM PUBLIC;
CREATE TABLE dbsync.run_history (
    run_id        bigint NOT NULL,       -- one per dbsync_run() / CALL / worker run
    server        text NOT NULL,
    server_oid    oid,
    table_name    text,                  -- NULL: the server failed before its tables
    trigger       text NOT NULL CHECK (trigger IN ('sql', 'call', 'worker')),
    mode          text,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    status        text NOT NULL CHECK (status IN ('ok', 'error', 'skipped', 'aborted')),
    rows_read     bigint,
    rows_upserted bigint,
    rows_deleted  bigint,
    rows_skipped  bigint,
    bytes_read    bigint,
    cursor_from   text,
    cursor_to     text,
    sqlstate      text,
    error_class   text,
    error         text,
    error_detail  text,
    error_hint    text,
    remote_sql    text,                  -- the source statement that failed
    message       text,                  -- notes of a run that succeeded
    pid           integer
);
REVOKE ALL ON dbsync.run_history FROM PUBLIC;
CREATE INDEX run_history_table_idx ON dbsync.run_history (server, COALESCE(table_name, ''), finished_at DESC);
CREATE INDEX run_history_finished_idx ON dbsync.run_history (finished_at);

-- dbsync.status also shows a server that never got to its tables (it could not
-- connect or discover): one row with table_name NULL and its last error.
CREATE VIEW dbsync.status WITH (security_barrier) AS
SELECT * FROM dbsync.table_status st
 WHERE pg_catalog.has_server_privilege(st.server::pg_catalog.text, 'USAGE')
UNION ALL
SELECT s.srvname, NULL, NULL, NULL, NULL, NULL, 'error', NULL, NULL, NULL, NULL, NULL,
       r.error OPERATOR(pg_catalog.||) COALESCE(E'\nDETAIL: ' OPERATOR(pg_catalog.||) r.error_detail, '')
               OPERATOR(pg_catalog.||) COALESCE(E'\nHINT: ' OPERATOR(pg_catalog.||) r.error_hint, ''),
       r.finished_at, NULL, false, NULL, NULL, true, 'failing', NULL, r.finished_at,
       (SELECT pg_catalog.count(*)::pg_catalog.int4 FROM dbsync.run_history h
         WHERE h.server_oid OPERATOR(pg_catalog.=) s.oid AND h.table_name IS NULL
           AND h.status OPERATOR(pg_catalog.=) 'error'
           AND h.finished_at OPERATOR(pg_catalog.>) COALESCE((SELECT pg_catalog.max(k.finished_at)
                 FROM dbsync.run_history k WHERE k.server_oid OPERATOR(pg_catalog.=) s.oid
                  AND k.table_name IS NULL AND k.status OPERATOR(pg_catalog.=) 'ok'), '-infinity')),
       NULL, NULL, NULL, NULL, r.sqlstate, r.error_class, r.remote_sql, NULL, NULL,
       COALESCE((SELECT c.option_value FROM pg_catalog.pg_options_to_table(s.srvoptions) c
                  WHERE c.option_name OPERATOR(pg_catalog.=) 'capture'), 'cursor'),
       NULL, NULL, NULL, NULL, NULL
  FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid OPERATOR(pg_catalog.=) s.srvfdw
 CROSS JOIN LATERAL (SELECT h.* FROM dbsync.run_history h
                      WHERE h.server OPERATOR(pg_catalog.=) s.srvname::pg_catalog.text
                        AND h.server_oid OPERATOR(pg_catalog.=) s.oid AND h.table_name IS NULL
                      ORDER BY h.finished_at DESC LIMIT 1) r
 WHERE w.fdwname OPERATOR(pg_catalog.=) 'dbsync'
   AND r.status OPERATOR(pg_catalog.=) 'error'
   AND NOT EXISTS (SELECT FROM dbsync.tables t WHERE t.server OPERATOR(pg_catalog.=) s.srvname::pg_catalog.text
                     AND t.server_oid OPERATOR(pg_catalog.=) s.oid)
   AND pg_catalog.has_server_privilege(s.oid, 'USAGE');
GRANT SELECT ON dbsync.status TO PUBLIC;

CREATE VIEW dbsync.runs WITH (security_barrier) AS
SELECT r.run_id, r.server::name AS server, r.table_name, r.trigger, r.mode,
       r.started_at, r.finished_at, r.status, r.rows_read, r.rows_upserted,
       r.rows_deleted, r.rows_skipped, r.bytes_read, r.cursor_from, r.cursor_to,
       r.sqlstate, r.error_class, r.error, r.error_detail, r.error_hint, r.remote_sql,
       r.message, r.pid
  FROM dbsync.run_history r
  JOIN pg_catalog.pg_foreign_server s ON s.srvname OPERATOR(pg_catalog.=) r.server
   AND r.server_oid OPERATOR(pg_catalog.=) s.oid
 WHERE pg_catalog.has_server_privilege(s.oid, 'USAGE');
GRANT SELECT ON dbsync.runs TO PUBLIC;
COMMENT ON VIEW dbsync.runs IS
    'one row per table per run (ok, error, skipped, aborted), kept for dbsync.history_retention';

-- Live progress of every table being synced (needs dbsync in shared_preload_libraries).
CREATE FUNCTION dbsync.progress_slots(
    OUT pid integer, OUT server_oid oid, OUT server name, OUT table_name text,
    OUT trigger text, OUT mode text, OUT phase text, OUT started_at timestamptz,
    OUT phase_started_at timestamptz, OUT updated_at timestamptz,
    OUT rows_read bigint, OUT rows_applied bigint, OUT bytes_read bigint,
    OUT rows_estimated bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbsync_progress_slots'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION dbsync.progress_preloaded() RETURNS boolean
AS 'MODULE_PATHNAME', 'dbsync_progress_preloaded'
LANGUAGE C STRICT STABLE;

CREATE VIEW dbsync.progress WITH (security_barrier) AS
SELECT p.pid, p.server, p.table_name, p.trigger, p.mode, p.phase, p.started_at,
       p.phase_started_at, p.rows_read, p.rows_applied, p.bytes_read, p.rows_estimated,
       CASE WHEN p.rows_estimated OPERATOR(pg_catalog.>) 0
            THEN pg_catalog.round(LEAST(100::pg_catalog.numeric,
                 100::pg_catalog.numeric OPERATOR(pg_catalog.*) p.rows_read
                 OPERATOR(pg_catalog./) p.rows_estimated), 1) END AS pct,
       pg_catalog.round(p.rows_read::pg_catalog.numeric OPERATOR(pg_catalog./)
             GREATEST(0.001::pg_catalog.numeric,
               pg_catalog.date_part('epoch', p.updated_at OPERATOR(pg_catalog.-) p.started_at)::pg_catalog.numeric), 1)
         AS rows_per_sec,
       CASE WHEN p.rows_estimated OPERATOR(pg_catalog.>) p.rows_read AND p.rows_read OPERATOR(pg_catalog.>) 0
            THEN pg_catalog.make_interval(secs => pg_catalog.round(
                 ((p.rows_estimated OPERATOR(pg_catalog.-) p.rows_read)::pg_catalog.float8
                  OPERATOR(pg_catalog.*) pg_catalog.date_part('epoch', p.updated_at OPERATOR(pg_catalog.-) p.started_at)
                  OPERATOR(pg_catalog./) p.rows_read::pg_catalog.float8)::pg_catalog.numeric)::pg_catalog.float8)
       END AS eta,
       p.updated_at
  FROM dbsync.progress_slots() p
 WHERE pg_catalog.has_server_privilege(p.server_oid, 'USAGE')
    OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')
UNION ALL
-- without dbsync in shared_preload_libraries there are no slots: the COPY in
-- progress of a dbsync run (server and table unknown), as pg_stat_progress_copy has it
SELECT c.pid, NULL, NULL, NULL, NULL, 'copying', a.query_start, NULL,
       c.tuples_processed, NULL, c.bytes_processed, NULL, NULL, NULL, NULL,
       pg_catalog.now()
  FROM pg_catalog.pg_stat_progress_copy c
  JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) c.pid
 WHERE NOT dbsync.progress_preloaded()
   AND c.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
   AND c.type OPERATOR(pg_catalog.=) 'CALLBACK'
   AND a.query OPERATOR(pg_catalog.~*) '^\s*(select|call)\M.*\mdbsync_(run|sync)\s*\(';
GRANT SELECT ON dbsync.progress TO PUBLIC;
COMMENT ON VIEW dbsync.progress IS
    'live: one row per table (or server connecting) being synced now by any backend or worker';

-- One row per table, label columns and numbers only: for Prometheus exporters.
CREATE VIEW dbsync.metrics WITH (security_barrier) AS
SELECT st.server::pg_catalog.text AS server, st.table_name,
       COALESCE(st.target::pg_catalog.text, '') AS target,
       st.health,
       (st.health OPERATOR(pg_catalog.=) 'ok')::pg_catalog.int4 AS healthy,
       (st.health OPERATOR(pg_catalog.=) 'failing')::pg_catalog.int4 AS failing,
       (st.health OPERATOR(pg_catalog.=) 'paused')::pg_catalog.int4 AS paused,
       (st.health OPERATOR(pg_catalog.=) 'stale')::pg_catalog.int4 AS stale,
       (p.pid IS NOT NULL)::pg_catalog.int4 AS running,
       COALESCE(pg_catalog.date_part('epoch', st.last_success_at), 0) AS last_success_timestamp_seconds,
       COALESCE(pg_catalog.date_part('epoch', st.last_attempt_at), 0) AS last_attempt_timestamp_seconds,
       COALESCE(pg_catalog.date_part('epoch', st.freshness_at), 0) AS freshness_timestamp_seconds,
       COALESCE(pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) st.freshness_at), -1)
         AS staleness_seconds,
       COALESCE(pg_catalog.date_part('epoch', st.next_attempt_at), 0) AS next_attempt_timestamp_seconds,
       COALESCE(pg_catalog.date_part('epoch', t.last_duration), 0) AS last_duration_seconds,
       st.consecutive_failures,
       COALESCE(st.rows_total, 0) AS rows,
       t.runs_total, t.failures_total, t.rows_read_total, t.rows_upserted_total,
       t.rows_deleted_total, t.rows_skipped_total, t.bytes_read_total,
       COALESCE(p.rows_read, 0) AS progress_rows_read,
       COALESCE(p.rows_estimated, 0) AS progress_rows_estimated
  FROM dbsync.table_status st
  JOIN dbsync.tables t ON t.server OPERATOR(pg_catalog.=) st.server::pg_catalog.text
   AND t.table_name OPERATOR(pg_catalog.=) st.table_name
  LEFT JOIN dbsync.progress p ON p.server OPERATOR(pg_catalog.=) st.server
   AND p.table_name OPERATOR(pg_catalog.=) st.table_name
 -- the servers' users, and monitoring roles (labels and numbers only: no row values)
 WHERE pg_catalog.has_server_privilege(st.server::pg_catalog.text, 'USAGE')
    OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')
UNION ALL
-- a server that could not connect or discover before it knew any table
SELECT s.srvname::pg_catalog.text, '', '', 'failing', 0, 1, 0, 0, 0,
       0::pg_catalog.float8, pg_catalog.date_part('epoch', r.finished_at), 0::pg_catalog.float8,
       -1::pg_catalog.float8, 0::pg_catalog.float8, 0::pg_catalog.float8,
       (SELECT pg_catalog.count(*)::pg_catalog.int4 FROM dbsync.run_history h
         WHERE h.server_oid OPERATOR(pg_catalog.=) s.oid AND h.table_name IS NULL
           AND h.status OPERATOR(pg_catalog.=) 'error'
           AND h.finished_at OPERATOR(pg_catalog.>) COALESCE((SELECT pg_catalog.max(k.finished_at)
                 FROM dbsync.run_history k WHERE k.server_oid OPERATOR(pg_catalog.=) s.oid
                  AND k.table_name IS NULL AND k.status OPERATOR(pg_catalog.=) 'ok'), '-infinity')), 0::pg_catalog.int8,
       0::pg_catalog.int8, (SELECT pg_catalog.count(*)::pg_catalog.int4 FROM dbsync.run_history h
         WHERE h.server_oid OPERATOR(pg_catalog.=) s.oid AND h.table_name IS NULL
           AND h.status OPERATOR(pg_catalog.=) 'error'
           AND h.finished_at OPERATOR(pg_catalog.>) COALESCE((SELECT pg_catalog.max(k.finished_at)
                 FROM dbsync.run_history k WHERE k.server_oid OPERATOR(pg_catalog.=) s.oid
                  AND k.table_name IS NULL AND k.status OPERATOR(pg_catalog.=) 'ok'), '-infinity'))::pg_catalog.int8, 0::pg_catalog.int8,
       0::pg_catalog.int8, 0::pg_catalog.int8, 0::pg_catalog.int8, 0::pg_catalog.int8,
       0::pg_catalog.int8, 0::pg_catalog.int8
  FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid OPERATOR(pg_catalog.=) s.srvfdw
 CROSS JOIN LATERAL (SELECT h.* FROM dbsync.run_history h
                      WHERE h.server_oid OPERATOR(pg_catalog.=) s.oid AND h.table_name IS NULL
                      ORDER BY h.finished_at DESC LIMIT 1) r
 WHERE w.fdwname OPERATOR(pg_catalog.=) 'dbsync'
   AND r.status OPERATOR(pg_catalog.=) 'error'
   AND NOT EXISTS (SELECT FROM dbsync.tables t WHERE t.server_oid OPERATOR(pg_catalog.=) s.oid)
   AND (pg_catalog.has_server_privilege(s.oid, 'USAGE')
        OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE'));
GRANT SELECT ON dbsync.metrics TO PUBLIC;
COMMENT ON VIEW dbsync.metrics IS
    'one row per table: labels (server, table_name, target, health) and numbers (epoch seconds, totals that only grow, 0/1 flags) for postgres_exporter / sql_exporter';

CREATE FUNCTION public.dbsync_pause(server name, table_name text DEFAULT NULL,
    reason text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'dbsync_pause'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION public.dbsync_pause(name, text, text) IS
    'stop syncing a table (or every known table of a server) until dbsync_resume(); returns the number of tables paused';

CREATE FUNCTION public.dbsync_resume(server name, table_name text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'dbsync_resume'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION public.dbsync_resume(name, text) IS
    'undo a pause (by dbsync_pause or after repeated failures) and clear the backoff: the next auto-sync tries the table at once';

-- What each column of dbsync.status means (\d+ dbsync.status shows it).
COMMENT ON VIEW dbsync.status IS
    'one row per synced table of the servers you may use (and one per server that never reached its tables, table_name NULL)';
COMMENT ON COLUMN dbsync.status.server IS 'the dbsync server (source)';
COMMENT ON COLUMN dbsync.status.table_name IS 'the remote table (NULL: the server itself failed before its tables)';
COMMENT ON COLUMN dbsync.status.target IS 'the local table dbsync created (or you adopted) for it';
COMMENT ON COLUMN dbsync.status.primary_key IS 'key in use: dbsync_set_table override, else the source''s';
COMMENT ON COLUMN dbsync.status.cursor_column IS 'cursor in use (override, else the first of cursor_columns present); NULL: read in full';
COMMENT ON COLUMN dbsync.status.cursor_value IS 'high-water mark as text: timestamptz in UTC; timestamp/datetime cursors in the source''s own wall clock, without zone';
COMMENT ON COLUMN dbsync.status.last_status IS 'ok, error, running (an initial load between checkpoints) or skipped';
COMMENT ON COLUMN dbsync.status.last_mode IS 'full, initial, resume or incremental';
COMMENT ON COLUMN dbsync.status.last_synced_at IS 'end of the last successful run (same as last_success_at)';
COMMENT ON COLUMN dbsync.status.rows_total IS 'live rows in the local table after the last run';
COMMENT ON COLUMN dbsync.status.last_rows_upserted IS 'rows inserted or updated by the last successful run';
COMMENT ON COLUMN dbsync.status.last_rows_deleted IS 'rows deleted (or flagged) by the last successful run';
COMMENT ON COLUMN dbsync.status.last_error IS 'message, DETAIL and HINT of the last failure (kept until the next success)';
COMMENT ON COLUMN dbsync.status.last_error_at IS 'when it failed';
COMMENT ON COLUMN dbsync.status.last_row_error_sample IS 'a source row that could not be converted: its key and the error, never the row';
COMMENT ON COLUMN dbsync.status.initial_load_pending IS 'an initial load stopped at a checkpoint; the next run resumes it';
COMMENT ON COLUMN dbsync.status.remote_missing_since IS 'the table is gone at the source since then; its local data is kept';
COMMENT ON COLUMN dbsync.status.source_flavor IS 'product and version of the source, from its version string (e.g. TiDB v7.5.1, YugabyteDB 2.25.0.0)';
COMMENT ON COLUMN dbsync.status.enabled IS 'false after dbsync_set_table(enabled => false)';
COMMENT ON COLUMN dbsync.status.health IS 'never_run, initial_load, ok, failing, paused, disabled, excluded or stale';
COMMENT ON COLUMN dbsync.status.last_success_at IS 'end of the last successful run; failed runs never move it';
COMMENT ON COLUMN dbsync.status.last_attempt_at IS 'end of the last run, successful or not';
COMMENT ON COLUMN dbsync.status.consecutive_failures IS 'failures in a row (a run that committed a checkpoint starts a new streak)';
COMMENT ON COLUMN dbsync.status.next_attempt_at IS 'when the auto-sync tries next: the schedule after a success, the backoff after a failure';
COMMENT ON COLUMN dbsync.status.paused_at IS 'paused since (dbsync_pause, or dbsync.pause_after_failures); dbsync_resume resumes';
COMMENT ON COLUMN dbsync.status.paused_reason IS 'why it is paused';
COMMENT ON COLUMN dbsync.status.freshness_at IS 'start of the last successful read of the source, warehouse clock: every source change committed before it is here';
COMMENT ON COLUMN dbsync.status.last_sqlstate IS 'SQLSTATE of the last failure';
COMMENT ON COLUMN dbsync.status.last_error_class IS 'transient, config, data or internal';
COMMENT ON COLUMN dbsync.status.last_remote_sql IS 'the source statement that failed, if the failure was at the source';
COMMENT ON COLUMN dbsync.status.deletes_checked_at IS 'last time deletes at the source were reconciled exactly (every run, or at most every delete_check_interval; NULL with deletes ignore)';
COMMENT ON COLUMN dbsync.status.capture IS 'cursor, or log: changes streamed from the source''s logical replication slot';
COMMENT ON COLUMN dbsync.status.capture_position IS 'capture log: end of the last source transaction applied (committed with its rows)';
COMMENT ON COLUMN dbsync.status.capture_lag_bytes IS 'capture log: source WAL written after it, as last reported (PostgreSQL sources)';
COMMENT ON COLUMN dbsync.status.capture_lag IS 'capture log: how far behind the source the last apply was (0 when caught up)';
COMMENT ON COLUMN dbsync.status.slot_state IS 'capture log: streaming, caught_up, or resync (dbsync_resync: a new slot at the next run)';
COMMENT ON COLUMN dbsync.status.last_message IS 'notes of the last successful run (schema drift, a moved target, a lost cursor column...)';
