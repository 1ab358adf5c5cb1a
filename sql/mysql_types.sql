--
-- mysql_types: every row of the MySQL-family type table, with boundary
-- values, synced from MariaDB (the TiDB stand-in) into the warehouse.
--
-- The source tables (ty_*) are created by sql/mysql_types.mysql through the
-- mariadb client.  The MariaDB server runs in +05:30, this session (as
-- pg_regress sets it up) in PST8PDT: a TIMESTAMP must still arrive as the
-- same instant.  Values are shown in UTC with ISO dates.
--
\getenv my_port SRC_MY_PORT
\set run 'SELECT table_name, mode, rows_upserted, rows_deleted, status, message FROM dbsync_run'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dbsync;
DROP SCHEMA IF EXISTS mytypes CASCADE;
DROP SERVER IF EXISTS mytypes CASCADE;
RESET client_min_messages;

-- the source side (\! takes no psql variables: the environment has them)
\! mariadb --no-defaults --batch --default-character-set=utf8mb4 -h 127.0.0.1 -P "$SRC_MY_PORT" -u src_user -psrc_pw srcdb < "$PG_ABS_SRCDIR/sql/mysql_types.mysql"

CREATE SERVER mytypes FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'mysql', host '127.0.0.1', port :'my_port', dbname 'srcdb',
    tables 'ty_%', vector_columns 'ty_vecs.emb,ty_vecs.emb2');
CREATE USER MAPPING FOR CURRENT_USER SERVER mytypes
    OPTIONS (user 'src_user', password 'src_pw');

-- what a run would do
SELECT table_name, primary_key, cursor_column, mode,
       source_flavor LIKE 'MariaDB %' AS mariadb
  FROM dbsync_discover('mytypes') ORDER BY table_name;
SELECT table_name, c AS column_name, r AS remote_type, l AS local_type
  FROM dbsync_discover('mytypes'),
       unnest(columns, remote_types, local_types) AS u(c, r, l)
 WHERE table_name = 'ty_types'
 ORDER BY table_name;

:run('mytypes') ORDER BY table_name;

-- the local tables
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull
  FROM pg_attribute
 WHERE attrelid = 'mytypes.ty_types'::regclass AND attnum > 0
 ORDER BY attnum;
SELECT attrelid::regclass AS tbl, attname, format_type(atttypid, atttypmod) AS type
  FROM pg_attribute
 WHERE attrelid IN ('mytypes.ty_json'::regclass, 'mytypes.ty_vecs'::regclass,
                    'mytypes.ty_geo'::regclass)
   AND attnum > 0 AND attname <> '_dbsync_synced_at'
 ORDER BY attrelid::regclass::text, attnum;

SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\x on
SELECT id, b1, b2, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, f, d, dec1, dec2,
       c, vc, t, tt, mt, lt, bin, vb, bl, dt, dtm, dtm6, ts, ts6, tm, tm6, y,
       j, e, s, bt1, bt10, bt64
  FROM mytypes.ty_types ORDER BY id;
\x off

-- exactness, checked as values rather than as text
SELECT id,
       f = real '0.1' AS float_0_1,
       d = double precision '0.1' AS double_0_1,
       biu = 18446744073709551615 AS bigint_unsigned_max,
       dec2 = 99999999999999999999999999999999999.999999999999999999999999999999 AS decimal_65_30,
       ts = timestamptz '2024-06-01 12:00:00+05:30' AS ts_instant,
       ts6 = timestamptz '2024-06-01 12:00:00.654321+05:30' AS ts6_instant,
       extract(epoch FROM tm) AS tm_seconds,
       t = E'line1\nline2\\back\rcr' AS text_escapes,
       tt = 'emoji 😀 ü' AS emoji, octet_length(tt) AS tt_bytes,
       bin = '\x00090a5c'::bytea AS binary_bytes,
       bl = '\x5c000d0a09'::bytea AS blob_bytes,
       j -> 'u' = '"ü"' AS json_unicode
  FROM mytypes.ty_types WHERE id = 1;
SELECT id,
       f = real '-3.4028235e38' AS float_min,
       d = double precision '1.7976931348623157e308' AS double_max,
       ts6 = timestamptz '1970-01-01 00:00:01+00' AS ts6_epoch_plus_1,
       extract(epoch FROM tm) AS tm_seconds,
       extract(epoch FROM tm6) AS tm6_seconds,
       s = '{}' AS empty_set, cardinality(s) AS set_size
  FROM mytypes.ty_types WHERE id = 2;
SELECT id, f = real '1.17549435e-38' AS float_smallest_normal,
       s = ARRAY['z "q\'] AS set_quote_backslash,
       bt64 = B'0000000000000000000000000000000000000000000000000000000000000001' AS bit64
  FROM mytypes.ty_types WHERE id = 4;

SELECT id, doc, plain, chk, jsonb_typeof(doc) AS doc_type
  FROM mytypes.ty_json ORDER BY id;
SELECT id, emb, emb2, emb[3] = real '3.4028235e38' AS emb3_max
  FROM mytypes.ty_vecs ORDER BY id;
SELECT id, g, p, substr(g, 1, 4) = '\xe6100000'::bytea AS srid_4326
  FROM mytypes.ty_geo ORDER BY id;

-- nothing changed at the source: nothing is written
:run('mytypes') ORDER BY table_name;
SELECT table_name, last_status, rows_total, last_error
  FROM dbsync.status WHERE server = 'mytypes' ORDER BY table_name;
-- the source's product is recorded with the state
SELECT DISTINCT source_flavor LIKE 'MariaDB %' AS status_says_mariadb
  FROM dbsync.status WHERE server = 'mytypes';
