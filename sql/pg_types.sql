--
-- pg_types: values of every common PostgreSQL type round-trip exactly from a
-- PostgreSQL-family source (the YugabyteDB stand-in) into the warehouse.
--
-- The source server runs in America/New_York, this session in pg_regress's
-- PST8PDT with DateStyle 'Postgres, MDY': dbsync must not depend on either.
-- Two tables with the same rows: alltypes (no cursor: full sync through a
-- staging table and upsert) and alltypes_inc (updated_at cursor: initial load
-- by COPY straight into the target, then incremental).
-- Every column is compared as text (TimeZone UTC, DateStyle ISO on both sides)
-- through one digest view, defined at the source and copied to the warehouse.
--
\getenv src_port SRC_PG_PORT
\set srcconn 'host=127.0.0.1 port=' :src_port ' dbname=srcdb user=src_user password=src_pw'
\set wh 'host=' :HOST ' port=' :PORT ' dbname=' :DBNAME ' user=' :USER
-- this session's own settings (pg_regress's), to check that runs leave them alone
SELECT current_setting('TimeZone') AS tz_before, current_setting('DateStyle') AS ds_before \gset
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dbsync;
DROP SCHEMA IF EXISTS pgtypes CASCADE;
RESET client_min_messages;

\connect :srcconn
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS pgtypes CASCADE;
RESET client_min_messages;
CREATE SCHEMA pgtypes;
CREATE TYPE pgtypes.mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"');
CREATE DOMAIN pgtypes.posint AS integer CHECK (VALUE > 0);
CREATE TYPE pgtypes.pair AS (a int, b text);
CREATE TABLE pgtypes.alltypes (
    id          int PRIMARY KEY,
    i2          smallint,
    i4          integer,
    i8          bigint,
    n           numeric,
    n124        numeric(12,4),
    r4          real,
    f8          double precision,
    b           boolean,
    t           text,
    vc          varchar(10),
    ch          char(3),
    qc          "char",
    nm          name,
    ba          bytea,
    d           date,
    ts          timestamp,
    ts3         timestamp(3),
    tstz        timestamptz,
    tm          time,
    tmtz        timetz,
    iv          interval,
    jb          jsonb,
    js          json,
    ia          int[],
    ta          text[],
    na          numeric[],
    u           uuid,
    ip          inet,
    cidr_       cidr,
    mac         macaddr,
    mac8        macaddr8,
    bt          bit(5),
    vb          bit varying(8),
    e           pgtypes.mood,
    ea          pgtypes.mood[],
    dm          pgtypes.posint,
    cp          pgtypes.pair,
    pt          point,
    bx          box,
    poly        polygon,
    circ        circle,
    x           xml,
    tsv         tsvector,
    i4r         int4range,
    tstzr       tstzrange,
    i4mr        int4multirange,
    lsn         pg_lsn
);
INSERT INTO pgtypes.alltypes VALUES
-- extremes
(1, -32768, -2147483648, -9223372036854775808,
    -1234567890123456789012345678901234567890.0123456789, -99999999.9999,
    -3.4028235e38, -1.7976931348623157e308, false,
    E'tab\there\nnewline \\ backslash '' quote " dq \U0001F600 emoji \r cr',
    'ten chars!', 'abc', 'x', 'a_name',
    '\x00090a5c00ff'::bytea,
    '4713-01-01 BC', '0044-03-15 12:34:56.789012 BC', '2000-01-01 00:00:00.123',
    '1900-01-01 00:00:00.000001+00', '00:00:00', '00:00:00+14:59',
    '-178000000 years', '{"a": {"b": [1, 2.50, null, true, "\u00e9\u4e2d"]}, "e": {}}',
    '{"dup": 1, "dup": 2,   "sp" :  [ ] , "nul": "\u0000"}',
    '{-2147483648,NULL,2147483647}', '{"a,b","c\"d","{x}",NULL,"NULL","",'' '',"\\\\"}',
    '{1.0,-0.000,NaN,NULL}',
    '00000000-0000-0000-0000-000000000000', '0.0.0.0/0', '0.0.0.0/0', '00:00:00:00:00:00',
    '00:00:00:00:00:00:00:00', B'00000', B'',
    'sad', '{sad,"it''s \"complicated\""}', 1, ROW(-1, 'x, "y"'),
    '(-1.5,0)', '(0,0),(-1,-1)', '((0,0),(1,0),(0,1))', '<(0,0),0.5>',
    '<a x="1">&amp;</a>', 'a:1 b:2', 'empty', 'empty', '{}', '0/0'),
(2, 32767, 2147483647, 9223372036854775807,
    1234567890123456789012345678901234567890.0123456789, 99999999.9999,
    3.4028235e38, 1.7976931348623157e308, true,
    E'\\N', '', '', '"', '',
    ''::bytea,
    '5874897-12-31', '294276-12-31 23:59:59.999999', '1999-12-31 23:59:59.999',
    '2038-01-19 03:14:07.999999-05:30', '24:00:00', '23:59:59.999999-15:59',
    '178000000 years 11 mons 30 days 23:59:59.999999', '[]', '[]',
    '{{1,2},{3,4}}', '{}', '{}',
    'ffffffff-ffff-ffff-ffff-ffffffffffff', '2001:db8::ff00:42:8329/64', '2001:db8::/32',
    'ff:ff:ff:ff:ff:ff', 'ff:ff:ff:ff:ff:ff:ff:ff', B'11111', B'10101010',
    'happy', '{}', 2147483647, ROW(NULL, NULL),
    '(1e+300,-1e-300)', '(1,1),(1,1)', '((1,1))', '<(1,1),1e+10>',
    '<!-- c --><r/>', '', '[1,10)', '(,"2024-01-01 00:00:00+00"]', '{[1,3),[5,7)}',
    'FFFFFFFF/FFFFFFFF'),
-- ordinary and special values
(3, 0, 0, 0, 'NaN', 0, 'NaN', 'NaN', true,
    E'\\.', 'x', 'a', 'a', 'name with space',
    '\x5c4e'::bytea,
    'infinity', 'infinity', 'infinity', 'infinity', '12:00:01.5', '12:00:01.5-03:00',
    '-1 year -2 mons +3 days -04:05:06.789', '"just a string"', '  "padded"  ',
    '[0:1]={5,6}', E'{"line\nbreak","tab\tx"}', '{{1.5,2.25}}',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1', '10.0.0.0/8', '08:00:2b:01:02:03',
    '08:00:2b:01:02:03:04:05', B'01010', B'1',
    'it''s "complicated"', '{happy,ok}', 42, ROW(7, ''),
    '(0.1,0.2)', '(0.1,0.2),(0.3,0.4)', '((0.1,0.1),(0.2,0.2),(0.3,0.1))', '<(0.1,0.1),0.1>',
    'text only', 'fat:2A cat:1 rat', '[-10,-5]', '["2020-02-29 23:59:59.999999+00",infinity)',
    '{[1,2],[10,20)}', '16/B374D848'),
(4, 1, -1, 1, '0.1', 0.1, 0.1, 0.1, false,
    repeat('long text ', 20000), 'ä€𝄞', 'é', 'é', repeat('n', 63),
    decode(repeat('00ff5c0a09', 1000), 'hex'),
    '-infinity', '-infinity', '-infinity', '-infinity', '23:59:59.999999', '23:59:59.999999+05:30',
    '1 mon -1 days +00:00:00.000001', '{"k": "\u00e9\ud83d\ude00 \" \\ /", "n": 1e-7}',
    '{"k": "\u00e9\ud83d\ude00 \" \\ /", "n": 1e-7}',
    '{0}', '{"\u00e9","\\N","\\."}', '{1e-20}',
    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12', '::1', '::ffff:1.2.3.0/120', '0800.2b01.0204',
    '08002b0102030405', B'10000', B'00000000',
    'ok', '{ok,NULL}', 1, ROW(0, NULL),
    '(-0,-0)', '(-1,-1),(1,1)', '((-1,-1),(1,1),(1,-1))', '<(-1,-1),0>',
    '<?xml version="1.0"?><doc>é</doc>', 'a:1A,2B b:3', '(,)', 'empty', '{(,)}', '0/1'),
(5, 7, 7, 7, '1.10', 1.1, 0, 0, true,
    'plain', 'plain', 'pl', 'p', 'plain',
    'plain'::bytea,
    '2024-02-29', '2024-02-29 12:34:56.123456', '2024-02-29 12:34:56.123',
    -- no offset: read in this session's zone (PST8PDT), the source server's is New York
    '2024-02-29 12:34:56.123456', '12:34:56.123456', '12:34:56.123456+01',
    '1 day', '{"b": 1, "a": 2}', '{"b": 1, "a": 2}',
    '{1,2,3}', '{plain}', '{1.10}',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13', '10.1.2.3/24', '10.1.2.0/24', '08:00:2b:01:02:04',
    '08:00:2b:01:02:03:04:06', B'00001', B'0001',
    'happy', '{sad}', 5, ROW(5, 'five'),
    '(5,5)', '(5,5),(0,0)', '((0,0),(5,0),(0,5))', '<(5,5),5>',
    '<five/>', 'five', '[5,6)', '[2024-02-29 12:34:56+00,2024-03-01 00:00:00+00)',
    '{[5,6)}', '5/5'),
-- NULL in every column
(6, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL);
-- the same rows with a cursor column
CREATE TABLE pgtypes.alltypes_inc (LIKE pgtypes.alltypes INCLUDING ALL,
    updated_at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00');
INSERT INTO pgtypes.alltypes_inc SELECT * FROM pgtypes.alltypes;

-- One text per column: md5 of the column's values in key order.  (xml through its
-- output function: xml::text would also show a stored '<?xml version="1.0"?>'
-- declaration that xml's output -- and so COPY -- leaves out.)  A view, so that
-- exactly the same definition runs on both sides (views are never synced).
CREATE VIEW pgtypes.digest AS
SELECT 'alltypes'::text AS tbl, c.col, count(*) AS n,
       md5(string_agg(coalesce(c.val, '<NULL>'), '|' ORDER BY t.id)) AS md5
  FROM pgtypes.alltypes t
 CROSS JOIN LATERAL (VALUES
    ('i2', t.i2::text), ('i4', t.i4::text), ('i8', t.i8::text), ('n', t.n::text),
    ('n124', t.n124::text), ('r4', t.r4::text), ('f8', t.f8::text), ('b', t.b::text),
    ('t', t.t::text), ('vc', t.vc::text), ('ch', t.ch::text), ('qc', t.qc::text),
    ('nm', t.nm::text), ('ba', t.ba::text), ('d', t.d::text), ('ts', t.ts::text),
    ('ts3', t.ts3::text), ('tstz', t.tstz::text), ('tm', t.tm::text), ('tmtz', t.tmtz::text),
    ('iv', t.iv::text), ('jb', t.jb::text), ('js', t.js::text), ('ia', t.ia::text),
    ('ta', t.ta::text), ('na', t.na::text), ('u', t.u::text), ('ip', t.ip::text),
    ('cidr_', t.cidr_::text), ('mac', t.mac::text), ('mac8', t.mac8::text), ('bt', t.bt::text),
    ('vb', t.vb::text), ('e', t.e::text), ('ea', t.ea::text), ('dm', t.dm::text),
    ('cp', t.cp::text), ('pt', t.pt::text), ('bx', t.bx::text), ('poly', t.poly::text),
    ('circ', t.circ::text), ('x', format('%s', t.x)), ('tsv', t.tsv::text), ('i4r', t.i4r::text),
    ('tstzr', t.tstzr::text), ('i4mr', t.i4mr::text), ('lsn', t.lsn::text)) AS c(col, val)
 GROUP BY c.col
UNION ALL
SELECT 'alltypes_inc', c.col, count(*),
       md5(string_agg(coalesce(c.val, '<NULL>'), '|' ORDER BY t.id))
  FROM pgtypes.alltypes_inc t
 CROSS JOIN LATERAL (VALUES
    ('i2', t.i2::text), ('i4', t.i4::text), ('i8', t.i8::text), ('n', t.n::text),
    ('n124', t.n124::text), ('r4', t.r4::text), ('f8', t.f8::text), ('b', t.b::text),
    ('t', t.t::text), ('vc', t.vc::text), ('ch', t.ch::text), ('qc', t.qc::text),
    ('nm', t.nm::text), ('ba', t.ba::text), ('d', t.d::text), ('ts', t.ts::text),
    ('ts3', t.ts3::text), ('tstz', t.tstz::text), ('tm', t.tm::text), ('tmtz', t.tmtz::text),
    ('iv', t.iv::text), ('jb', t.jb::text), ('js', t.js::text), ('ia', t.ia::text),
    ('ta', t.ta::text), ('na', t.na::text), ('u', t.u::text), ('ip', t.ip::text),
    ('cidr_', t.cidr_::text), ('mac', t.mac::text), ('mac8', t.mac8::text), ('bt', t.bt::text),
    ('vb', t.vb::text), ('e', t.e::text), ('ea', t.ea::text), ('dm', t.dm::text),
    ('cp', t.cp::text), ('pt', t.pt::text), ('bx', t.bx::text), ('poly', t.poly::text),
    ('circ', t.circ::text), ('x', format('%s', t.x)), ('tsv', t.tsv::text), ('i4r', t.i4r::text),
    ('tstzr', t.tstzr::text), ('i4mr', t.i4mr::text), ('lsn', t.lsn::text),
    ('updated_at', t.updated_at::text)) AS c(col, val)
 GROUP BY c.col;
SELECT pg_get_viewdef('pgtypes.digest'::regclass) AS digest_view \gset
-- the source's digest, as one text
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SELECT string_agg(tbl || '.' || col || '=' || n || ':' || md5, ',' ORDER BY tbl, col) AS src_digest
  FROM pgtypes.digest \gset
\connect :wh

-- the check: one row per table and column, "t" when the warehouse holds exactly
-- the source's values
\set compare 'SELECT coalesce(l.col, r.col) AS col, l.md5 IS NOT DISTINCT FROM r.md5 AS same FROM (SELECT tbl || ''.'' || col AS col, n || '':'' || md5 AS md5 FROM pgtypes.digest) l FULL JOIN (SELECT split_part(x, ''='', 1) AS col, split_part(x, ''='', 2) AS md5 FROM unnest(string_to_array(:''src_digest'', '','')) x) r ON r.col = l.col ORDER BY 1'

CREATE SERVER pgtypes FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'yugabytedb', host '127.0.0.1', port :'src_port', dbname 'srcdb',
    schema 'pgtypes');
CREATE USER MAPPING FOR CURRENT_USER SERVER pgtypes OPTIONS (user 'src_user', password 'src_pw');

SELECT table_name, mode, rows_upserted, rows_deleted, status, message
  FROM dbsync_run('pgtypes') ORDER BY 1;
-- the session's settings are the caller's again
SELECT current_setting('TimeZone') = :'tz_before' AS timezone_kept,
       current_setting('DateStyle') = :'ds_before' AS datestyle_kept;

-- local types: the remote type where it exists here; enum, domain and composite
-- (and arrays of them) become text
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a
 WHERE a.attrelid = 'pgtypes.alltypes'::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum;
SELECT count(*) AS same_types_in_both_tables
  FROM pg_attribute a JOIN pg_attribute b ON b.attname = a.attname
 WHERE a.attrelid = 'pgtypes.alltypes'::regclass AND b.attrelid = 'pgtypes.alltypes_inc'::regclass
   AND a.attnum > 0 AND a.atttypid = b.atttypid AND a.atttypmod = b.atttypmod;

-- the digest view, as the source defines it
CREATE VIEW pgtypes.digest AS :digest_view
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
:compare;

-- a few values as they are
SELECT id, i8, n, r4, f8, t = E'tab\there\nnewline \\ backslash '' quote " dq \U0001F600 emoji \r cr' AS t_ok
  FROM pgtypes.alltypes WHERE id = 1;
SELECT id, i8, n, r4, f8 FROM pgtypes.alltypes WHERE id IN (2, 3, 4) ORDER BY id;
SELECT id, t, vc, ch, ba FROM pgtypes.alltypes WHERE id IN (2, 3, 5) ORDER BY id;
SELECT id, d, ts, tstz, tm, tmtz, iv FROM pgtypes.alltypes ORDER BY id;
SELECT id, jb, js, ia, ta FROM pgtypes.alltypes WHERE id <> 4 ORDER BY id;
SELECT id, e, ea, dm, cp, pt, bx FROM pgtypes.alltypes ORDER BY id;
SELECT id, length(t) AS t_len, length(ba) AS ba_len, md5(t) AS t_md5, md5(ba) AS ba_md5
  FROM pgtypes.alltypes WHERE id = 4;
SELECT id, (t IS NULL) AND (ba IS NULL) AND (jb IS NULL) AND (pt IS NULL) AND (cp IS NULL) AS nulls_kept
  FROM pgtypes.alltypes WHERE id = 6;
RESET timezone;
RESET datestyle;

-- nothing changed: nothing is written (also for point, polygon, json, xml: no "=")
SELECT table_name, mode, rows_upserted, rows_deleted, status, message
  FROM dbsync_run('pgtypes') ORDER BY 1;
SELECT table_name, mode, rows_upserted, rows_deleted, status, message
  FROM dbsync_run('pgtypes') ORDER BY 1;

--
-- Changes that "=" cannot see must still reach the warehouse: values equal as
-- numbers / spans / sets of points but different as values (1.0 vs 1.00, 1 day vs
-- 24:00:00, 0 vs -0), and changes of types without "=" (box area, point, json).
--
\connect :srcconn
-- rows 4 and 5: only values that are "=" to the old ones
UPDATE pgtypes.alltypes SET n = 1.100, na = '{1.100}', f8 = '-0', r4 = '-0' WHERE id = 5;
UPDATE pgtypes.alltypes SET iv = '29 days 00:00:00.000001' WHERE id = 4;
-- row 3: only types without "=" (compared as text)
UPDATE pgtypes.alltypes SET bx = '(0.1,0.5),(0.3,0.3)', pt = '(0.1,0.2000001)', js = '  "padded" '
 WHERE id = 3;
-- row 1: an ordinary change
UPDATE pgtypes.alltypes SET t = 'changed' WHERE id = 1;
UPDATE pgtypes.alltypes_inc i SET n = a.n, na = a.na, iv = a.iv, f8 = a.f8, r4 = a.r4,
       bx = a.bx, pt = a.pt, js = a.js, t = a.t, updated_at = '2024-01-02 00:00:00+00'
  FROM pgtypes.alltypes a WHERE a.id = i.id AND i.id IN (1, 3, 4, 5);
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SELECT string_agg(tbl || '.' || col || '=' || n || ':' || md5, ',' ORDER BY tbl, col) AS src_digest
  FROM pgtypes.digest \gset
\connect :wh
SELECT table_name, mode, rows_upserted, rows_deleted, status, message
  FROM dbsync_run('pgtypes') ORDER BY 1;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
:compare;
SELECT id, n, na, iv, f8, r4, bx, pt, js FROM pgtypes.alltypes WHERE id IN (3, 4, 5) ORDER BY id;
SELECT id, n, na, iv, f8, r4, bx, pt, js FROM pgtypes.alltypes_inc WHERE id IN (3, 4, 5) ORDER BY id;
RESET timezone;
RESET datestyle;
SELECT table_name, mode, rows_upserted, rows_deleted, status, message
  FROM dbsync_run('pgtypes') ORDER BY 1;

-- a value the local type cannot take is an error for that table only, with a
-- clear message and a hint, recorded with a sample of the row; the data synced
-- before stays.  The warehouse owner chose a local type the source's values do
-- not fit (integer for text: not a widening, so dbsync keeps it), two ways:
-- a target table created beforehand (initial load: COPY straight into it), and a
-- column changed after the first sync (full sync: staging table, then upsert).
CREATE TABLE pgtypes.zz_bad_copy (id int PRIMARY KEY, v integer, updated_at timestamptz,
    _dbsync_synced_at timestamptz NOT NULL DEFAULT now());
\connect :srcconn
CREATE TABLE pgtypes.zz_bad (id int PRIMARY KEY, v text);
INSERT INTO pgtypes.zz_bad VALUES (1, '1');
CREATE TABLE pgtypes.zz_bad_copy (id int PRIMARY KEY, v text, updated_at timestamptz);
INSERT INTO pgtypes.zz_bad_copy VALUES (1, '1', '2024-01-01 00:00:00+00'),
    (2, 'not a number', '2024-01-01 00:00:00+00');
\connect :wh
-- a table dbsync did not create is never written, until its owner adopts it
SELECT status, split_part(message, E'\n', 1) AS message FROM dbsync_run('pgtypes', 'zz_bad_copy');
SELECT count(*) FROM pgtypes.zz_bad_copy;
SELECT dbsync_adopt_table('pgtypes', 'zz_bad_copy');
SELECT table_name, mode, rows_upserted, status FROM dbsync_run('pgtypes', 'zz_bad');
ALTER TABLE pgtypes.zz_bad ALTER COLUMN v TYPE integer USING v::integer;
\connect :srcconn
INSERT INTO pgtypes.zz_bad VALUES (2, 'not a number');
\connect :wh
SELECT table_name, mode, rows_upserted, status,
       message LIKE '%HINT: %' AS has_hint
  FROM dbsync_run('pgtypes') ORDER BY 1;
SELECT table_name, last_status,
       last_row_error_sample IS NOT NULL AS has_sample,
       last_row_error_sample::text LIKE '%not a number%' AS sample_shows_value
  FROM dbsync.status WHERE server = 'pgtypes' ORDER BY 1;
SELECT id, v FROM pgtypes.zz_bad ORDER BY id;
SELECT count(*) FROM pgtypes.zz_bad_copy;
-- on_row_error 'skip': the rows that fit are loaded, the others are skipped, said
-- so, and sampled
ALTER SERVER pgtypes OPTIONS (ADD on_row_error 'skip');
SELECT table_name, mode, rows_upserted, status, message IS NOT NULL AS reported
  FROM dbsync_run('pgtypes') WHERE table_name LIKE 'zz%' ORDER BY 1;
SELECT table_name, last_status,
       last_row_error_sample::text LIKE '%not a number%' AS sample_shows_value
  FROM dbsync.status WHERE server = 'pgtypes' AND table_name LIKE 'zz%' ORDER BY 1;
SELECT id, v FROM pgtypes.zz_bad ORDER BY id;
SELECT id, v FROM pgtypes.zz_bad_copy ORDER BY id;
-- the bad rows are fixed at the source: they arrive
\connect :srcconn
UPDATE pgtypes.zz_bad SET v = '2' WHERE id = 2;
UPDATE pgtypes.zz_bad_copy SET v = '2', updated_at = '2024-01-02 00:00:00+00' WHERE id = 2;
\connect :wh
SELECT table_name, mode, rows_upserted, status, message
  FROM dbsync_run('pgtypes') WHERE table_name LIKE 'zz%' ORDER BY 1;
SELECT id, v FROM pgtypes.zz_bad ORDER BY id;
SELECT id, v FROM pgtypes.zz_bad_copy ORDER BY id;
SELECT table_name, last_status, last_row_error_sample
  FROM dbsync.status WHERE server = 'pgtypes' AND table_name LIKE 'zz%' ORDER BY 1;

-- clean up
SET client_min_messages = warning;
DROP SERVER pgtypes CASCADE;
DROP SCHEMA pgtypes CASCADE;
\connect :srcconn
SET client_min_messages = warning;
DROP SCHEMA pgtypes CASCADE;
