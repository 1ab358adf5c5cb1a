--
-- mysql_sync: runs against a MySQL-family source (MariaDB, the TiDB stand-in):
-- initial load in batches on a composite key, incremental reads on DATETIME
-- and TIMESTAMP cursors, updates and deletes, full and multiset mirrors,
-- names that need backtick quoting, schema drift and new tables.
--
-- The source tables are created by sql/mysql_sync.mysql and changed with the
-- mariadb client ($MY, in +05:30 like the server).  Contents are compared
-- through :dg_* digests (row count and md5 of the rows in key order) computed
-- on both sides.
--
\getenv my_port SRC_MY_PORT
\setenv MY 'mariadb --no-defaults --batch --skip-column-names --default-character-set=utf8mb4 -h 127.0.0.1 -u src_user -psrc_pw srcdb -P'
\set my 'mariadb --no-defaults --batch --skip-column-names --default-character-set=utf8mb4 -h 127.0.0.1 -u src_user -psrc_pw srcdb -P ' :my_port
\set run 'SELECT table_name, mode, rows_upserted, rows_deleted, status, message FROM dbsync_run'
\set st 'SELECT table_name, cursor_column, cursor_value, rows_total, last_status, last_mode FROM dbsync.status'
-- digests: "count:md5" of the rows as id|val|updated_at in id order
\set my_dg_ev 'SET SESSION group_concat_max_len = 100000000; SELECT CONCAT(COUNT(*), '':'', IFNULL(MD5(GROUP_CONCAT(CONCAT_WS(''|'', id, IFNULL(val, ''-''), IFNULL(DATE_FORMAT(updated_at, ''%Y-%m-%d %H:%i:%s.%f''), ''-'')) ORDER BY id SEPARATOR ''/'')), ''-'')) FROM sy_ev'
\set wh_dg_ev 'SELECT count(*) || '':'' || coalesce(md5(string_agg(concat_ws(''|'', id, coalesce(val, ''-''), coalesce(to_char(updated_at, ''YYYY-MM-DD HH24:MI:SS.US''), ''-'')), ''/'' ORDER BY id)), ''-'') AS dg FROM mysync.sy_ev'
\set my_dg_big 'SET SESSION group_concat_max_len = 100000000; SELECT CONCAT(COUNT(*), '':'', IFNULL(MD5(GROUP_CONCAT(CONCAT_WS(''|'', grp, n, v, DATE_FORMAT(created_at, ''%Y-%m-%d %H:%i:%s'')) ORDER BY n SEPARATOR ''/'')), ''-'')) FROM sy_big'
\set wh_dg_big 'SELECT count(*) || '':'' || coalesce(md5(string_agg(concat_ws(''|'', grp, n, v, to_char(created_at, ''YYYY-MM-DD HH24:MI:SS'')), ''/'' ORDER BY n)), ''-'') AS dg FROM mysync.sy_big'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dbsync;
DROP SCHEMA IF EXISTS mysync CASCADE;
DROP SERVER IF EXISTS mysync CASCADE;
RESET client_min_messages;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';

\! $MY "$SRC_MY_PORT" < "$PG_ABS_SRCDIR/sql/mysql_sync.mysql"

CREATE SERVER mysync FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'mysql', host '127.0.0.1', port :'my_port', dbname 'srcdb',
    tables 'sy_%,order', batch_size '1000');
CREATE USER MAPPING FOR CURRENT_USER SERVER mysync
    OPTIONS (user 'src_user', password 'src_pw');

--
-- First run: every table; the 2500-row table is read in batches of 1000
--
:run('mysync') ORDER BY 1;
:st WHERE server = 'mysync' ORDER BY 1;
SELECT table_name, primary_key FROM dbsync.status WHERE server = 'mysync' ORDER BY 1;
\set src `:my -e ":my_dg_ev"`
SELECT :'src' AS source, (:wh_dg_ev) AS local, :'src' = (:wh_dg_ev) AS same_rows;
\set src `:my -e ":my_dg_big"`
SELECT :'src' AS source, (:wh_dg_big) AS local, :'src' = (:wh_dg_big) AS same_rows;
SELECT grp, count(*), min(n), max(n) FROM mysync.sy_big GROUP BY grp ORDER BY grp;
-- nothing changed: nothing written
:run('mysync') ORDER BY 1;

--
-- DATETIME cursor: ties, updates, inserts, deletes, NULL cursors
--
\! $MY "$SRC_MY_PORT" -e "UPDATE sy_ev SET val = CONCAT('v2-', id), updated_at = '2024-01-01 00:10:00' WHERE id <= 250; INSERT INTO sy_ev SELECT seq, CONCAT('v2-', seq), '2024-01-01 00:10:00' FROM seq_501_to_600"
:run('mysync', 'sy_ev');
:st WHERE server = 'mysync' AND table_name = 'sy_ev';
\! $MY "$SRC_MY_PORT" -e "INSERT INTO sy_ev SELECT seq, CONCAT('v2-', seq), '2024-01-01 00:10:00' FROM seq_601_to_700; UPDATE sy_ev SET val = 'v3', updated_at = '2024-01-01 00:20:00.000001' WHERE id IN (1, 300); DELETE FROM sy_ev WHERE id IN (2, 3, 650); INSERT INTO sy_ev VALUES (900, 'null cursor', NULL)"
:run('mysync', 'sy_ev');
\set src `:my -e ":my_dg_ev"`
SELECT :'src' AS source, (:wh_dg_ev) AS local, :'src' = (:wh_dg_ev) AS same_rows;
:st WHERE server = 'mysync' AND table_name = 'sy_ev';
SELECT id, val, updated_at FROM mysync.sy_ev WHERE id IN (1, 2, 300, 650, 700, 900) ORDER BY id;
-- a late row within lookback (1 minute), and a change of the NULL-cursor row
\! $MY "$SRC_MY_PORT" -e "INSERT INTO sy_ev VALUES (901, 'late by 30s', '2024-01-01 00:19:30'); UPDATE sy_ev SET val = 'null cursor, changed' WHERE id = 900"
:run('mysync', 'sy_ev');
SELECT id, val, updated_at FROM mysync.sy_ev WHERE id IN (900, 901) ORDER BY id;
\set src `:my -e ":my_dg_ev"`
SELECT :'src' = (:wh_dg_ev) AS same_rows;
:run('mysync', 'sy_ev');

--
-- TIMESTAMP cursor: the server writes in +05:30, values arrive as instants
--
:st WHERE server = 'mysync' AND table_name = 'sy_ts';
SELECT id, v, updated_at FROM mysync.sy_ts ORDER BY id;
\! $MY "$SRC_MY_PORT" -e "UPDATE sy_ts SET v = 'one, later', updated_at = '2024-01-01 10:05:00' WHERE id = 1; INSERT INTO sy_ts VALUES (3, 'three', '2024-01-01 10:04:59.999999')"
:run('mysync', 'sy_ts');
SELECT id, v, updated_at FROM mysync.sy_ts ORDER BY id;
:st WHERE server = 'mysync' AND table_name = 'sy_ts';
:run('mysync', 'sy_ts');

--
-- Composite key with a string part: updates and deletes after the batched load
--
\! $MY "$SRC_MY_PORT" -e "UPDATE sy_big SET v = 'changed', created_at = '2024-02-01 00:00:00' WHERE n IN (5, 1000, 2500); DELETE FROM sy_big WHERE n IN (7, 1001); INSERT INTO sy_big VALUES ('b''q', 3000, 'new', '2024-02-01 00:00:00')"
:run('mysync', 'sy_big');
\set src `:my -e ":my_dg_big"`
SELECT :'src' AS source, (:wh_dg_big) AS local, :'src' = (:wh_dg_big) AS same_rows;
SELECT grp, n, v FROM mysync.sy_big WHERE n IN (5, 7, 1000, 1001, 2500, 3000) ORDER BY n;

--
-- Names that need quoting; full mirror with a composite key
--
SELECT "co`l", "select", "order" FROM mysync."sy_we`ird table" ORDER BY 1;
\! $MY "$SRC_MY_PORT" -e 'UPDATE `sy_we``ird table` SET `select` = "x`y", updated_at = "2024-01-02 00:00:00" WHERE `co``l` = 2; INSERT INTO `sy_we``ird table` VALUES (3, "new", 30, "2024-01-02 00:00:00")'
:run('mysync', 'sy_we`ird table');
SELECT "co`l", "select", "order" FROM mysync."sy_we`ird table" ORDER BY 1;
SELECT "key", "group", v FROM mysync."order" ORDER BY 1, 2;
\! $MY "$SRC_MY_PORT" -e 'UPDATE `order` SET v = "changed" WHERE `key` = 1 AND `group` = 2; DELETE FROM `order` WHERE `key` = 2; INSERT INTO `order` VALUES (5, 5, "five")'
:run('mysync', 'order');
SELECT "key", "group", v FROM mysync."order" ORDER BY 1, 2;

--
-- A multiset: duplicates are kept, one of them deleted
--
SELECT a, b, count(*) FROM mysync.sy_multi GROUP BY a, b ORDER BY a, b;
\! $MY "$SRC_MY_PORT" -e "DELETE FROM sy_multi WHERE a = 1 LIMIT 1; INSERT INTO sy_multi VALUES (3, 'new')"
:run('mysync', 'sy_multi');
SELECT a, b, count(*) FROM mysync.sy_multi GROUP BY a, b ORDER BY a, b;
:run('mysync', 'sy_multi');

--
-- Schema drift and a new table
--
\! $MY "$SRC_MY_PORT" -e "ALTER TABLE sy_ev ADD COLUMN note varchar(10) DEFAULT 'n'; UPDATE sy_ev SET note = 'drift', updated_at = '2024-01-01 00:30:00' WHERE id = 5; CREATE TABLE sy_new (id bigint unsigned PRIMARY KEY, d date); INSERT INTO sy_new VALUES (18446744073709551615, '2024-12-31'), (1, '0000-00-00')"
:run('mysync') ORDER BY 1;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'mysync.sy_ev'::regclass AND attname = 'note';
SELECT id, val, note FROM mysync.sy_ev WHERE id = 5;
SELECT id, d FROM mysync.sy_new ORDER BY id;
