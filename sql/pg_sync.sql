--
-- pg_sync: what runs do with a PostgreSQL-family source (the YugabyteDB
-- stand-in): initial load, incremental reads (ties, NULL cursors, lookback),
-- deletes (hard, soft, ignore), full and multiset mirrors, per-table settings,
-- errors of one table, schema drift, dropped tables, and dbsync.status.
-- Remote schema pgsync; servers pgsync, pgsync_soft, pgsync_ign.
--
-- Contents are compared through :dg, a count and an md5 of the rows in order,
-- computed with the same query on the source and in the warehouse.
--
\getenv src_port SRC_PG_PORT
\set srcconn 'host=127.0.0.1 port=' :src_port ' dbname=srcdb user=src_user password=src_pw'
\set wh 'host=' :HOST ' port=' :PORT ' dbname=' :DBNAME ' user=' :USER
\set dg 'SELECT count(*) AS n, coalesce(md5(string_agg(t::text, E''\\n'' ORDER BY t::text COLLATE "C")), ''-'') AS md5 FROM '
\set same 'SELECT :src_n AS source_rows, :wh_n AS local_rows, :''src_md5'' = :''wh_md5'' AS same_rows'
\set run 'SELECT table_name, mode, rows_upserted, rows_deleted, status, message FROM dbsync_run'
\set st 'SELECT table_name, cursor_column, cursor_value, rows_total, last_status, last_mode FROM dbsync.status'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dbsync;
DROP SCHEMA IF EXISTS pgsync CASCADE;
DROP SCHEMA IF EXISTS pgsync_soft CASCADE;
DROP SCHEMA IF EXISTS pgsync_ign CASCADE;
RESET client_min_messages;

\connect :srcconn
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS pgsync CASCADE;
RESET client_min_messages;
CREATE SCHEMA pgsync;
-- the incremental table: 500 rows tied on one updated_at
CREATE TABLE pgsync.ev (id int PRIMARY KEY, val text, updated_at timestamptz);
INSERT INTO pgsync.ev SELECT g, 'v1-' || g, '2024-01-01 00:00:00+00' FROM generate_series(1, 500) g;
-- no cursor: full sync
CREATE TABLE pgsync.full_t (id int PRIMARY KEY, v text);
INSERT INTO pgsync.full_t SELECT g, 'f' || g FROM generate_series(1, 10) g;
-- no key, no cursor: a multiset with duplicates
CREATE TABLE pgsync.multi (a int, b text);
INSERT INTO pgsync.multi VALUES (1, 'a'), (1, 'a'), (1, 'a'), (2, 'b'), (NULL, NULL), (NULL, NULL);
-- no key, given one with dbsync_set_table
CREATE TABLE pgsync.nokey (k int, v text);
INSERT INTO pgsync.nokey VALUES (1, 'one'), (2, 'two'), (3, 'three');
-- two cursor candidates; later switched to created_at
CREATE TABLE pgsync.co (id int PRIMARY KEY, v text, created_at timestamptz, updated_at timestamptz);
INSERT INTO pgsync.co VALUES
    (1, 'a', '2023-01-01 00:00:00+00', '2024-06-01 00:00:00+00'),
    (2, 'b', '2023-02-01 00:00:00+00', '2024-06-02 00:00:00+00');
-- schema drift
CREATE TABLE pgsync.drift (id int PRIMARY KEY, v text, updated_at timestamptz);
INSERT INTO pgsync.drift VALUES (1, 'd1', '2024-01-01 00:00:00+00'), (2, 'd2', '2024-01-01 00:00:00+00');
-- dropped at the source later
CREATE TABLE pgsync.gone (id int PRIMARY KEY, v text);
INSERT INTO pgsync.gone VALUES (1, 'kept'), (2, 'kept too');
-- gets a bad key override
CREATE TABLE pgsync.failing (id int PRIMARY KEY, v text);
INSERT INTO pgsync.failing VALUES (1, 'x');
-- for the deletes option (servers pgsync_soft and pgsync_ign): with and without cursor
CREATE TABLE pgsync.sd (id int PRIMARY KEY, v text, updated_at timestamptz);
INSERT INTO pgsync.sd SELECT g, 's' || g, '2024-01-01 00:00:00+00' FROM generate_series(1, 5) g;
CREATE TABLE pgsync.sdf (id int PRIMARY KEY, v text);
INSERT INTO pgsync.sdf SELECT g, 's' || g FROM generate_series(1, 5) g;
\connect :wh

CREATE SERVER pgsync FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'yugabytedb', host '127.0.0.1', port :'src_port', dbname 'srcdb',
    schema 'pgsync', exclude_tables 'sd%');
CREATE USER MAPPING FOR CURRENT_USER SERVER pgsync OPTIONS (user 'src_user', password 'src_pw');

--
-- First run: every table
--
:run('pgsync') ORDER BY 1;
:st WHERE server = 'pgsync' ORDER BY 1;
\connect :srcconn
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset src_
\connect :wh
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset wh_
:same;
-- nothing changed: nothing written
:run('pgsync') ORDER BY 1;
SELECT count(*) AS rewritten FROM pgsync.ev
 WHERE _dbsync_synced_at <> (SELECT min(_dbsync_synced_at) FROM pgsync.ev);

--
-- Ties: all 500 rows change at one NEW timestamp and 250 rows are inserted with
-- it; after that run, 250 more rows commit with the same timestamp
--
\connect :srcconn
UPDATE pgsync.ev SET val = 'v2-' || id, updated_at = '2024-01-01 00:10:00+00';
INSERT INTO pgsync.ev SELECT g, 'v2-' || g, '2024-01-01 00:10:00+00' FROM generate_series(501, 750) g;
\connect :wh
:run('pgsync', 'ev');
:st WHERE server = 'pgsync' AND table_name = 'ev';
\connect :srcconn
INSERT INTO pgsync.ev SELECT g, 'v2-' || g, '2024-01-01 00:10:00+00' FROM generate_series(751, 1000) g;
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset src_
\connect :wh
:run('pgsync', 'ev');
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset wh_
:same;
:st WHERE server = 'pgsync' AND table_name = 'ev';

--
-- Updates, inserts and deletes
--
\connect :srcconn
UPDATE pgsync.ev SET val = 'v3-' || id, updated_at = '2024-01-01 00:20:00+00' WHERE id IN (1, 500, 1000);
INSERT INTO pgsync.ev VALUES (1001, 'v3-1001', '2024-01-01 00:20:00+00'), (1002, 'v3-1002', '2024-01-01 00:20:00+00');
DELETE FROM pgsync.ev WHERE id IN (2, 3, 4, 600, 999);
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset src_
\connect :wh
:run('pgsync', 'ev');
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset wh_
:same;
:st WHERE server = 'pgsync' AND table_name = 'ev';
-- one row deleted and one inserted: the counts agree again after the insert, the
-- delete must still be found
\connect :srcconn
DELETE FROM pgsync.ev WHERE id = 5;
INSERT INTO pgsync.ev VALUES (1003, 'v3-1003', '2024-01-01 00:20:00+00');
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset src_
\connect :wh
:run('pgsync', 'ev');
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset wh_
:same;
:run('pgsync', 'ev');

--
-- Rows whose cursor is NULL are read on every run
--
\connect :srcconn
INSERT INTO pgsync.ev VALUES (2001, 'null cursor', NULL);
\connect :wh
:run('pgsync', 'ev');
SELECT id, val, updated_at FROM pgsync.ev WHERE id = 2001;
\connect :srcconn
UPDATE pgsync.ev SET val = 'null cursor, changed' WHERE id = 2001;
\connect :wh
:run('pgsync', 'ev');
SELECT id, val, updated_at FROM pgsync.ev WHERE id = 2001;
:run('pgsync', 'ev');
\connect :srcconn
UPDATE pgsync.ev SET val = 'cursor set', updated_at = '2024-01-01 00:20:00+00' WHERE id = 2001;
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset src_
\connect :wh
:run('pgsync', 'ev');
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset wh_
:same;
:st WHERE server = 'pgsync' AND table_name = 'ev';

--
-- Late commits: the cursor is 00:20:00; lookback is 1 minute (the default)
--
\connect :srcconn
-- 30 seconds older than the cursor: within lookback, read
INSERT INTO pgsync.ev VALUES (3001, 'late by 30s', '2024-01-01 00:19:30+00');
\connect :wh
:run('pgsync', 'ev');
SELECT id, val FROM pgsync.ev WHERE id = 3001;
-- 5 minutes older than the cursor: outside lookback, NOT read (documented
-- limitation); a new row is noticed by the row count and reported
\connect :srcconn
INSERT INTO pgsync.ev VALUES (3002, 'late by 5min', '2024-01-01 00:15:00+00');
\connect :wh
SELECT table_name, mode, rows_upserted, rows_deleted, status,
       message LIKE '%1 source row%' AND message LIKE '%dbsync_resync()%' AS reports_missing_row
  FROM dbsync_run('pgsync', 'ev');
SELECT count(*) AS late_row_synced FROM pgsync.ev WHERE id = 3002;
:st WHERE server = 'pgsync' AND table_name = 'ev';
-- an update committed that late goes unnoticed (same row count)
\connect :srcconn
UPDATE pgsync.ev SET val = 'updated late', updated_at = '2024-01-01 00:15:00+00' WHERE id = 1;
\connect :wh
SELECT table_name, mode, rows_upserted, rows_deleted, status,
       message LIKE '%1 source row%' AND message LIKE '%dbsync_resync()%' AS reports_missing_row
  FROM dbsync_run('pgsync', 'ev');
SELECT id, val FROM pgsync.ev WHERE id = 1;
-- a longer lookback reads them
ALTER SERVER pgsync OPTIONS (ADD lookback '10 minutes');
:run('pgsync', 'ev');
SELECT id, val FROM pgsync.ev WHERE id IN (1, 3002) ORDER BY id;
ALTER SERVER pgsync OPTIONS (DROP lookback);
\connect :srcconn
-- later than the cursor again, but stale in the warehouse after this: resync
UPDATE pgsync.ev SET val = 'updated very late', updated_at = '2023-12-31 00:00:00+00' WHERE id = 1000;
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset src_
\connect :wh
:run('pgsync', 'ev');
SELECT id, val FROM pgsync.ev WHERE id = 1000;

--
-- dbsync_resync: the next run reads everything again (mode initial) and
-- rewrites only what differs
--
SELECT dbsync_resync('pgsync', 'ev');
SELECT cursor_value IS NULL AS cursor_forgotten, rows_total FROM dbsync.status
 WHERE server = 'pgsync' AND table_name = 'ev';
:run('pgsync', 'ev');
:dg (SELECT id, val, updated_at FROM pgsync.ev) t \gset wh_
:same;
:st WHERE server = 'pgsync' AND table_name = 'ev';
:run('pgsync', 'ev');

--
-- Full sync of a table without cursor column
--
\connect :srcconn
UPDATE pgsync.full_t SET v = 'changed' WHERE id IN (1, 2);
DELETE FROM pgsync.full_t WHERE id IN (9, 10);
INSERT INTO pgsync.full_t VALUES (11, 'f11'), (12, 'f12'), (13, 'f13');
:dg (SELECT id, v FROM pgsync.full_t) t \gset src_
\connect :wh
:run('pgsync', 'full_t');
:dg (SELECT id, v FROM pgsync.full_t) t \gset wh_
:same;
:run('pgsync', 'full_t');
:st WHERE server = 'pgsync' AND table_name = 'full_t';

--
-- A table without key and cursor is mirrored as a multiset
--
SELECT a, b, count(*) FROM pgsync.multi GROUP BY a, b ORDER BY a, b;
\connect :srcconn
DELETE FROM pgsync.multi WHERE ctid = (SELECT min(ctid) FROM pgsync.multi WHERE a = 1);
UPDATE pgsync.multi SET b = 'B' WHERE a = 2;
INSERT INTO pgsync.multi VALUES (3, 'c'), (NULL, NULL);
:dg (SELECT a, b FROM pgsync.multi) t \gset src_
\connect :wh
:run('pgsync', 'multi');
:dg (SELECT a, b FROM pgsync.multi) t \gset wh_
:same;
SELECT a, b, count(*) FROM pgsync.multi GROUP BY a, b ORDER BY a, b;
:run('pgsync', 'multi');
:st WHERE server = 'pgsync' AND table_name = 'multi';

--
-- dbsync_set_table(primary_key => ...) on a table without key
--
SELECT dbsync_set_table('pgsync', 'nokey', primary_key => '{k}');
:run('pgsync', 'nokey');
SELECT k, v FROM pgsync.nokey ORDER BY k;
SELECT a.attname AS local_key
  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
 WHERE i.indrelid = 'pgsync.nokey'::regclass AND i.indisprimary;
\connect :srcconn
UPDATE pgsync.nokey SET v = 'TWO' WHERE k = 2;
DELETE FROM pgsync.nokey WHERE k = 3;
INSERT INTO pgsync.nokey VALUES (4, 'four');
\connect :wh
:run('pgsync', 'nokey');
SELECT k, v FROM pgsync.nokey ORDER BY k;
:run('pgsync', 'nokey');
SELECT table_name, primary_key, cursor_column, rows_total, last_status
  FROM dbsync.status WHERE server = 'pgsync' AND table_name = 'nokey';

--
-- dbsync_set_table(cursor_column => 'created_at')
--
SELECT dbsync_set_table('pgsync', 'co', cursor_column => 'created_at');
:run('pgsync', 'co');
:st WHERE server = 'pgsync' AND table_name = 'co';
\connect :srcconn
INSERT INTO pgsync.co VALUES (3, 'c', '2023-03-01 00:00:00+00', '2024-06-03 00:00:00+00');
\connect :wh
:run('pgsync', 'co');
SELECT id, v FROM pgsync.co ORDER BY id;
:st WHERE server = 'pgsync' AND table_name = 'co';
-- '' resets it: updated_at again, read in full once
SELECT dbsync_set_table('pgsync', 'co', cursor_column => '');
:run('pgsync', 'co');
:st WHERE server = 'pgsync' AND table_name = 'co';
-- the warehouse owner drops a target table: the run that creates it again
-- loads it in full (its rows span months: an incremental read would miss most)
DROP TABLE pgsync.co;
:run('pgsync', 'co');
SELECT id, v FROM pgsync.co ORDER BY id;
:st WHERE server = 'pgsync' AND table_name = 'co';

--
-- One failing table does not stop the others
--
SELECT dbsync_set_table('pgsync', 'failing', primary_key => '{no_such_column}');
\connect :srcconn
INSERT INTO pgsync.full_t VALUES (14, 'f14');
\connect :wh
SELECT table_name, mode, rows_upserted, rows_deleted, status,
       split_part(message, E'\n', 1) AS message
  FROM dbsync_run('pgsync') ORDER BY 1;
SELECT table_name, last_status, last_error IS NOT NULL AS has_error
  FROM dbsync.status WHERE server = 'pgsync' ORDER BY 1;
SELECT last_error FROM dbsync.status WHERE server = 'pgsync' AND table_name = 'failing';
SELECT count(*) FROM pgsync.full_t;
SELECT dbsync_set_table('pgsync', 'failing', primary_key => '{}');
:run('pgsync', 'failing');
-- disabled tables are skipped
SELECT dbsync_set_table('pgsync', 'failing', enabled => false);
SELECT table_name, rows_upserted, rows_deleted, status, message FROM dbsync_run('pgsync', 'failing');
SELECT dbsync_set_table('pgsync', 'failing', enabled => true);

--
-- Schema drift: a column added at the source is added and backfilled; a dropped
-- source column keeps its local data
--
\connect :srcconn
ALTER TABLE pgsync.drift ADD COLUMN extra int DEFAULT 42;
\connect :wh
:run('pgsync', 'drift');
SELECT id, v, extra FROM pgsync.drift ORDER BY id;
:run('pgsync', 'drift');
\connect :srcconn
ALTER TABLE pgsync.drift DROP COLUMN v;
INSERT INTO pgsync.drift VALUES (3, '2024-01-02 00:00:00+00', 43);
UPDATE pgsync.drift SET extra = 44, updated_at = '2024-01-02 00:00:00+00' WHERE id = 2;
\connect :wh
:run('pgsync', 'drift');
SELECT id, v, extra FROM pgsync.drift ORDER BY id;
:run('pgsync', 'drift');
:st WHERE server = 'pgsync' AND table_name = 'drift';

--
-- A table dropped at the source: the local table and its rows stay
--
\connect :srcconn
DROP TABLE pgsync.gone;
\connect :wh
SELECT table_name, mode, rows_upserted, rows_deleted, status, message
  FROM dbsync_run('pgsync') WHERE table_name = 'gone';
SELECT id, v FROM pgsync.gone ORDER BY id;
SELECT table_name, remote_missing_since IS NOT NULL AS missing_at_source, rows_total
  FROM dbsync.status WHERE server = 'pgsync' AND table_name = 'gone';
:run('pgsync', 'gone');

-- the whole server, nothing changed
:run('pgsync') ORDER BY 1;
:st WHERE server = 'pgsync' ORDER BY 1;

--
-- deletes 'soft' and 'ignore'
--
CREATE SERVER pgsync_soft FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'postgresql', host '127.0.0.1', port :'src_port', dbname 'srcdb',
    schema 'pgsync', tables 'sd%', deletes 'soft');
CREATE USER MAPPING FOR CURRENT_USER SERVER pgsync_soft OPTIONS (user 'src_user', password 'src_pw');
CREATE SERVER pgsync_ign FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'postgresql', host '127.0.0.1', port :'src_port', dbname 'srcdb',
    schema 'pgsync', tables 'sd%', deletes 'ignore');
CREATE USER MAPPING FOR CURRENT_USER SERVER pgsync_ign OPTIONS (user 'src_user', password 'src_pw');
:run('pgsync_soft') ORDER BY 1;
:run('pgsync_ign') ORDER BY 1;
\connect :srcconn
DELETE FROM pgsync.sd WHERE id IN (2, 3);
DELETE FROM pgsync.sdf WHERE id IN (2, 3);
\connect :wh
:run('pgsync_soft') ORDER BY 1;
:run('pgsync_ign') ORDER BY 1;
SELECT id, v, _dbsync_deleted FROM pgsync_soft.sd ORDER BY id;
SELECT id, v, _dbsync_deleted FROM pgsync_soft.sdf ORDER BY id;
SELECT id, v FROM pgsync_ign.sd ORDER BY id;
SELECT id, v FROM pgsync_ign.sdf ORDER BY id;
SELECT server, table_name, rows_total FROM dbsync.status
 WHERE server IN ('pgsync_soft', 'pgsync_ign') ORDER BY 1, 2;
-- nothing changed
:run('pgsync_soft') ORDER BY 1;
:run('pgsync_ign') ORDER BY 1;
-- a row that comes back is live again
\connect :srcconn
INSERT INTO pgsync.sd VALUES (2, 's2 again', '2024-01-01 00:00:00+00');
INSERT INTO pgsync.sdf VALUES (2, 's2 again');
\connect :wh
:run('pgsync_soft') ORDER BY 1;
SELECT id, v, _dbsync_deleted FROM pgsync_soft.sd ORDER BY id;
SELECT id, v, _dbsync_deleted FROM pgsync_soft.sdf ORDER BY id;
SELECT server, table_name, rows_total FROM dbsync.status
 WHERE server = 'pgsync_soft' ORDER BY 1, 2;

-- clean up
SET client_min_messages = warning;
DROP SERVER pgsync CASCADE;
DROP SERVER pgsync_soft CASCADE;
DROP SERVER pgsync_ign CASCADE;
DROP SCHEMA pgsync CASCADE;
DROP SCHEMA pgsync_soft CASCADE;
DROP SCHEMA pgsync_ign CASCADE;
\connect :srcconn
SET client_min_messages = warning;
DROP SCHEMA pgsync CASCADE;
