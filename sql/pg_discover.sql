--
-- pg_discover: what dbsync_discover() sees in a PostgreSQL-family source (the
-- YugabyteDB stand-in), and the local tables a run creates from it.
-- Remote schemas: pgdisc (the server's) and pgdisc_other (must stay invisible).
--
\getenv src_port SRC_PG_PORT
\set srcconn 'host=127.0.0.1 port=' :src_port ' dbname=srcdb user=src_user password=src_pw'
\set wh 'host=' :HOST ' port=' :PORT ' dbname=' :DBNAME ' user=' :USER
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dbsync;
DROP SCHEMA IF EXISTS pgdisc CASCADE;
DROP SCHEMA IF EXISTS "pgdisc filtered" CASCADE;
DROP SCHEMA IF EXISTS pgdisc_c CASCADE;
RESET client_min_messages;

\connect :srcconn
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS pgdisc CASCADE;
DROP SCHEMA IF EXISTS pgdisc_other CASCADE;
RESET client_min_messages;
CREATE SCHEMA pgdisc;
CREATE SCHEMA pgdisc_other;
-- another schema: never seen, even where a table name is the same
CREATE TABLE pgdisc_other.secret (id int PRIMARY KEY, payload text);
CREATE TABLE pgdisc_other.shared_name (other_id int PRIMARY KEY, other_col text);
INSERT INTO pgdisc_other.shared_name VALUES (1, 'other');
CREATE TABLE pgdisc.shared_name (id int PRIMARY KEY, mine text);
INSERT INTO pgdisc.shared_name VALUES (1, 'mine'), (2, 'mine too');
-- mixed case and reserved words
CREATE TABLE pgdisc."Order" (
    "Id" int PRIMARY KEY, "select" text, "user" text, "CamelCase" int,
    updated_at timestamptz, created_at timestamptz);
INSERT INTO pgdisc."Order" VALUES
    (1, 'from', 'alice', 10, '2024-01-02 03:04:05+00', '2024-01-01 00:00:00+00'),
    (2, 'where', 'bob', NULL, '2024-01-03 03:04:05+00', '2024-01-01 00:00:00+00');
-- a space and a double quote in the table name and in a column name
CREATE TABLE pgdisc."my ""odd"" table" (id int PRIMARY KEY, "a ""quoted"" col" text, "with space" int);
INSERT INTO pgdisc."my ""odd"" table" VALUES (1, 'x', 1), (2, 'y"z', 2);
-- composite key whose order differs from the column order
CREATE TABLE pgdisc.order_lines (
    line_no int, qty int NOT NULL, order_id int, created_at timestamptz DEFAULT now(),
    PRIMARY KEY (order_id, line_no));
INSERT INTO pgdisc.order_lines VALUES
    (1, 5, 100, '2024-01-01 00:00:00+00'), (2, 1, 100, '2024-01-01 00:00:01+00'),
    (1, 7, 200, '2024-01-01 00:00:02+00');
-- no primary key (its cursor column is not used: no key, no incremental)
CREATE TABLE pgdisc.events_log (ts timestamptz, msg text, updated_at timestamptz);
INSERT INTO pgdisc.events_log VALUES ('2024-01-01 00:00:00+00', 'boot', NULL), ('2024-01-01 00:00:00+00', 'boot', NULL);
-- only a column that is not a default cursor candidate
CREATE TABLE pgdisc.audit (id bigint PRIMARY KEY, modified_at timestamptz, note text);
INSERT INTO pgdisc.audit VALUES (1, '2024-01-01 00:00:00+00', 'n');
-- identity and generated columns, a NOT NULL non-key column with a default,
-- a dropped column, a key with INCLUDE columns
CREATE TABLE pgdisc.products (
    sku bigint GENERATED ALWAYS AS IDENTITY,
    name text NOT NULL DEFAULT 'unnamed',
    gone int,
    price numeric(10,2) NOT NULL,
    qty int,
    total numeric GENERATED ALWAYS AS (price * qty) STORED,
    PRIMARY KEY (sku) INCLUDE (name));
ALTER TABLE pgdisc.products DROP COLUMN gone;
INSERT INTO pgdisc.products (name, price, qty) VALUES ('bolt', 0.25, 4), ('nut', 0.10, 10);
-- a partitioned table: the parent is listed once, its partitions never
CREATE TABLE pgdisc.measurements (
    id int, logdate date, val numeric, updated_at timestamp,
    PRIMARY KEY (id, logdate)) PARTITION BY RANGE (logdate);
CREATE TABLE pgdisc.measurements_2023 PARTITION OF pgdisc.measurements
    FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE pgdisc.measurements_2024 PARTITION OF pgdisc.measurements
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY RANGE (id);
CREATE TABLE pgdisc.measurements_2024_low PARTITION OF pgdisc.measurements_2024
    FOR VALUES FROM (0) TO (1000);
CREATE TABLE pgdisc.measurements_default PARTITION OF pgdisc.measurements DEFAULT;
INSERT INTO pgdisc.measurements VALUES
    (1, '2023-06-01', 1.5, '2024-02-01 00:00:00'), (2, '2024-06-01', 2.5, '2024-02-01 00:00:00'),
    (3, '2030-01-01', 3.5, '2024-02-01 00:00:00');
-- things that are not tables: a view, a materialized view, a sequence, an index,
-- a composite type
CREATE VIEW pgdisc.v_orders AS SELECT * FROM pgdisc."Order";
CREATE MATERIALIZED VIEW pgdisc.mv_orders AS SELECT * FROM pgdisc."Order";
CREATE SEQUENCE pgdisc.some_seq;
CREATE INDEX order_lines_qty ON pgdisc.order_lines (qty);
CREATE TYPE pgdisc.pair AS (a int, b int);
\connect :wh

CREATE SERVER pgdisc FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'yugabytedb', host '127.0.0.1', port :'src_port', dbname 'srcdb',
    schema 'pgdisc');
CREATE USER MAPPING FOR CURRENT_USER SERVER pgdisc OPTIONS (user 'src_user', password 'src_pw');

-- the preview
SELECT table_name, target, columns, primary_key, cursor_column, mode
  FROM dbsync_discover('pgdisc') ORDER BY table_name COLLATE "C";
SELECT table_name, remote_types, local_types
  FROM dbsync_discover('pgdisc') ORDER BY table_name COLLATE "C";
SELECT DISTINCT source_flavor LIKE 'PostgreSQL %' AS flavor_is_postgresql
  FROM dbsync_discover('pgdisc');
-- ... changed nothing
SELECT count(*) FROM pg_namespace WHERE nspname = 'pgdisc';
SELECT count(*) FROM dbsync.tables WHERE server = 'pgdisc';

-- a run creates the tables
SELECT table_name, mode, rows_upserted, rows_deleted, status, message
  FROM dbsync_run('pgdisc') ORDER BY table_name COLLATE "C";
SELECT c.relname, c.relkind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'pgdisc' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
 ORDER BY c.relname COLLATE "C";
-- local primary keys: key columns in key order, nothing else in the index
SELECT c.relname, i.indisprimary, i.indnatts, i.indnkeyatts,
       array_agg(a.attname ORDER BY k.ord) AS key_columns
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
 WHERE n.nspname = 'pgdisc'
 GROUP BY c.relname, i.indexrelid, i.indisprimary, i.indnatts, i.indnkeyatts
 ORDER BY c.relname COLLATE "C", i.indexrelid;
-- tables without any index (no key at the source)
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'pgdisc' AND c.relkind = 'r'
   AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid);
-- local columns: types, NOT NULL only on key columns, no defaults except the
-- one of _dbsync_synced_at, no identity or generated columns
SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull, a.attidentity <> '' AS is_identity, a.attgenerated <> '' AS is_generated,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = 'pgdisc' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY c.relname COLLATE "C", a.attnum;

-- the rows
SELECT "Id", "select", "user", "CamelCase", updated_at AT TIME ZONE 'UTC' AS updated_utc
  FROM pgdisc."Order" ORDER BY "Id";
SELECT id, "a ""quoted"" col", "with space" FROM pgdisc."my ""odd"" table" ORDER BY id;
SELECT order_id, line_no, qty FROM pgdisc.order_lines ORDER BY order_id, line_no;
SELECT ts AT TIME ZONE 'UTC' AS ts_utc, msg FROM pgdisc.events_log ORDER BY msg;
SELECT sku, name, price, qty, total FROM pgdisc.products ORDER BY sku;
SELECT id, logdate, val FROM pgdisc.measurements ORDER BY id;
SELECT id, mine FROM pgdisc.shared_name ORDER BY id;

-- after the run: targets are known, cursor tables go incremental
SELECT table_name, target, primary_key, cursor_column, mode
  FROM dbsync_discover('pgdisc') ORDER BY table_name COLLATE "C";
SELECT table_name, target, primary_key, cursor_column, last_status, rows_total
  FROM dbsync.status WHERE server = 'pgdisc' ORDER BY table_name COLLATE "C";

-- partitions added or dropped at the source change nothing for the user;
-- a new table is picked up by the next run
\connect :srcconn
CREATE TABLE pgdisc.measurements_2022 PARTITION OF pgdisc.measurements
    FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
INSERT INTO pgdisc.measurements VALUES (4, '2022-03-03', 4.5, '2024-03-01 00:00:00');
DROP TABLE pgdisc.measurements_2023;
CREATE TABLE pgdisc.added_later (id int PRIMARY KEY, updated_at timestamptz);
INSERT INTO pgdisc.added_later VALUES (1, '2024-05-05 05:05:05+00');
\connect :wh
SELECT table_name, mode, rows_upserted, rows_deleted, status, message
  FROM dbsync_run('pgdisc') ORDER BY table_name COLLATE "C";
SELECT id, logdate, val FROM pgdisc.measurements ORDER BY id;
SELECT id, updated_at AT TIME ZONE 'UTC' AS updated_utc FROM pgdisc.added_later;

--
-- tables / exclude_tables (% wildcards, case sensitive) and cursor_columns
--
CREATE SERVER pgdisc_f FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'postgresql', host '127.0.0.1', port :'src_port', dbname 'srcdb',
    schema 'pgdisc', tables 'order%, %odd%, measure%, Ord%', exclude_tables '%_lines',
    target_schema 'pgdisc filtered');
CREATE USER MAPPING FOR CURRENT_USER SERVER pgdisc_f OPTIONS (user 'src_user', password 'src_pw');
SELECT table_name FROM dbsync_discover('pgdisc_f') ORDER BY table_name COLLATE "C";
ALTER SERVER pgdisc_f OPTIONS (DROP tables, SET exclude_tables '%s, Order, my "odd" table');
SELECT table_name FROM dbsync_discover('pgdisc_f') ORDER BY table_name COLLATE "C";
ALTER SERVER pgdisc_f OPTIONS (DROP exclude_tables, ADD tables 'audit');
SELECT table_name FROM dbsync_discover('pgdisc_f') ORDER BY table_name COLLATE "C";
-- a run syncs only the selected tables
SELECT table_name, mode, rows_upserted, status FROM dbsync_run('pgdisc_f');
-- ... into its target_schema
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname LIKE 'pgdisc%f%' AND c.relkind = 'r' ORDER BY 1, 2;
SELECT table_name, target FROM dbsync.status WHERE server = 'pgdisc_f';
-- the table name is case sensitive
SELECT table_name, status, split_part(message, E'\n', 1) AS message FROM dbsync_run('pgdisc', 'order');

-- cursor_columns: the first candidate present wins
CREATE SERVER pgdisc_c FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'postgresql', host '127.0.0.1', port :'src_port', dbname 'srcdb',
    schema 'pgdisc', cursor_columns 'modified_at, created_at');
CREATE USER MAPPING FOR CURRENT_USER SERVER pgdisc_c OPTIONS (user 'src_user', password 'src_pw');
SELECT table_name, primary_key, cursor_column, mode
  FROM dbsync_discover('pgdisc_c') ORDER BY table_name COLLATE "C";
-- dbsync_set_table's cursor_column overrides the candidates
SELECT dbsync_set_table('pgdisc_c', 'Order', cursor_column => 'updated_at');
SELECT table_name, cursor_column, mode FROM dbsync_discover('pgdisc_c') WHERE table_name = 'Order';
SELECT table_name, mode, rows_upserted, status FROM dbsync_run('pgdisc_c', 'Order');
SELECT table_name, cursor_column, cursor_value FROM dbsync.status WHERE server = 'pgdisc_c';

-- clean up
SET client_min_messages = warning;
DROP SERVER pgdisc CASCADE;
DROP SERVER pgdisc_f CASCADE;
DROP SERVER pgdisc_c CASCADE;
DROP SCHEMA pgdisc CASCADE;
DROP SCHEMA IF EXISTS "pgdisc filtered" CASCADE;
DROP SCHEMA IF EXISTS pgdisc_c CASCADE;
\connect :srcconn
SET client_min_messages = warning;
DROP SCHEMA pgdisc CASCADE;
DROP SCHEMA pgdisc_other CASCADE;
