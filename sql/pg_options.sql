--
-- pg_options: CREATE EXTENSION, the option validator, and how a run reports
-- bad servers, an unreachable source and bad credentials.
-- Source: the PostgreSQL stand-in for YugabyteDB (SRC_PG_PORT), schema pgopt (schema names starting with pg_ are reserved).
--
\getenv src_port SRC_PG_PORT
\set srcconn 'host=127.0.0.1 port=' :src_port ' dbname=srcdb user=src_user password=src_pw'
\set wh 'host=' :HOST ' port=' :PORT ' dbname=' :DBNAME ' user=' :USER
-- this session's own settings (pg_regress's), to check that runs leave them alone
SELECT current_setting('TimeZone') AS tz_before, current_setting('DateStyle') AS ds_before \gset

-- A fresh CREATE EXTENSION (other suites may have left it installed).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS dbsync CASCADE;
RESET client_min_messages;
CREATE EXTENSION dbsync;

-- What CREATE EXTENSION creates
SELECT nspname FROM pg_namespace WHERE nspname = 'dbsync';
SELECT fdwname, fdwhandler = 0 AS no_handler, fdwvalidator::regproc
  FROM pg_foreign_data_wrapper WHERE fdwname = 'dbsync';
-- the functions of the contract
SELECT f, to_regprocedure(f) IS NOT NULL AS exists
  FROM unnest(ARRAY['dbsync_run(name,text)', 'dbsync_discover(name)',
                    'dbsync_set_table(name,text,text[],text,boolean)',
                    'dbsync_resync(name,text)']) AS f;
-- dbsync_run's result row
SELECT u.n, format_type(u.t, NULL)
  FROM pg_proc p, unnest(p.proargnames, p.proallargtypes, p.proargmodes) WITH ORDINALITY AS u(n, t, m, i)
 WHERE p.oid = 'dbsync_run(name,text)'::regprocedure AND u.m IN ('o', 't')
 ORDER BY u.i;
-- dbsync_set_table's named arguments
SELECT pg_get_function_arguments('dbsync_set_table(name,text,text[],text,boolean)'::regprocedure);
-- dbsync.status has (at least) the columns of the contract, with these types
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a
 WHERE a.attrelid = 'dbsync.status'::regclass AND a.attnum > 0
   AND a.attname IN ('server', 'table_name', 'target', 'primary_key', 'cursor_column',
                     'cursor_value', 'last_status', 'last_synced_at', 'rows_total',
                     'last_error', 'last_error_at', 'last_row_error_sample')
 ORDER BY a.attname;
SELECT relkind FROM pg_class WHERE oid = 'dbsync.status'::regclass;
SELECT has_table_privilege('public', 'dbsync.status', 'SELECT') AS public_can_read_status;
SELECT count(*) FROM dbsync.status;

--
-- The validator: every malformed option is refused at CREATE SERVER
--
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'oracle');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'YugabyteDB');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (host 'h');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync;
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', port 'abc');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', port '0');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', port '65536');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', port '5433x');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', lookback 'a while');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', lookback '');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', delete_check_interval 'sometimes');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', sync_interval '5 parsecs');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', sync_interval 'yesterday');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', hots 'h');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', user 'u');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', password 'secret');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'tidb', sslmode 'require');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', sslrootcert '/x.pem');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', ssl_mode 'required');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', ssl_ca '/x.pem');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', sslmode 'required');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'tidb', ssl_mode 'require');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', deletes 'sometimes');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', batch_size '0');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', batch_size '-5');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', batch_size 'many');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', connect_timeout '-1');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', connect_timeout '2s');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', vector_columns 'embedding');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', vector_columns 'docs.');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', vector_columns '.embedding');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', vector_columns 'docs.embedding, items');
-- Citus layout options: table.column / table.other_table pairs
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', distribution_columns 'orders');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', colocate_with 'items');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', distributed_tables ' , ');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', tables ' , ');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', exclude_tables '');
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', cursor_columns '');
-- none of them was created
SELECT count(*) FROM pg_foreign_server WHERE srvname = 'bad';
-- the wrapper itself takes no options
ALTER FOREIGN DATA WRAPPER dbsync OPTIONS (ADD host 'h');

--
-- Success: every option, valid values (in a transaction that is rolled back, so
-- that no background auto-sync ever sees the sync_interval server; ON_ERROR_ROLLBACK
-- keeps it open across the expected errors)
--
\set ON_ERROR_ROLLBACK on
BEGIN;
CREATE SERVER all_opts FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'yugabytedb', host 'yb-1.internal,yb-2.internal', port '5433',
    dbname 'yugabyte', schema 'public', target_schema 'iot',
    tables 'sensor_%, devices', exclude_tables '%_tmp', cursor_columns 'modified,updated_at',
    lookback '5 minutes', deletes 'soft', batch_size '50000', sync_interval '00:01:00',
    connect_timeout '5', sslmode 'verify-full', sslrootcert '/etc/ssl/yb.crt',
    vector_columns 'docs.embedding, items.vec', distributed_tables 'sensor_%',
    reference_tables 'devices', distribution_columns 'sensor_a.device_id',
    colocate_with 'sensor_b.sensor_a, sensor_c.none');
CREATE SERVER tidb_opts FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'tidb', host 'tidb.example', port '4000', dbname 'test',
    ssl_mode 'verify_identity', ssl_ca '/etc/ssl/ca.pem', deletes 'ignore',
    lookback 'PT30S', sync_interval '1 hour');
CREATE SERVER pg_opts FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', sslmode 'disable', deletes 'hard');
CREATE SERVER my_opts FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', dbname 'app', ssl_mode 'disabled');
CREATE USER MAPPING FOR CURRENT_USER SERVER all_opts OPTIONS (user 'yugabyte', password 'secret');
CREATE USER MAPPING FOR PUBLIC SERVER tidb_opts OPTIONS (user 'root');
CREATE USER MAPPING FOR CURRENT_USER SERVER pg_opts;
SELECT srvname, srvoptions FROM pg_foreign_server
 WHERE srvname IN ('all_opts', 'tidb_opts', 'pg_opts', 'my_opts') ORDER BY srvname;
-- user mapping options are validated too
CREATE USER MAPPING FOR CURRENT_USER SERVER tidb_opts OPTIONS (user 'root', passwd 'x');
CREATE USER MAPPING FOR CURRENT_USER SERVER tidb_opts OPTIONS (user 'root', host 'h');
CREATE USER MAPPING FOR CURRENT_USER SERVER tidb_opts OPTIONS (user 'root', source_type 'tidb');
-- ALTER SERVER is validated against the resulting option list
ALTER SERVER pg_opts OPTIONS (ADD lookback 'never');
ALTER SERVER pg_opts OPTIONS (ADD port '99999');
ALTER SERVER pg_opts OPTIONS (ADD bogus 'x');
ALTER SERVER pg_opts OPTIONS (ADD ssl_mode 'required');
ALTER SERVER pg_opts OPTIONS (SET deletes 'never');
ALTER SERVER pg_opts OPTIONS (DROP source_type);
ALTER SERVER pg_opts OPTIONS (SET source_type 'tidb');      -- sslmode does not apply to tidb
ALTER SERVER all_opts OPTIONS (SET batch_size '0');
ALTER SERVER all_opts OPTIONS (SET vector_columns 'embedding');
ALTER USER MAPPING FOR CURRENT_USER SERVER all_opts OPTIONS (ADD dbname 'x');
-- valid changes go through
ALTER SERVER pg_opts OPTIONS (SET sslmode 'require', ADD lookback '10 min', ADD port '5432');
ALTER SERVER pg_opts OPTIONS (DROP sslmode);
ALTER SERVER pg_opts OPTIONS (SET source_type 'yugabytedb');
ALTER SERVER pg_opts OPTIONS (SET deletes 'ignore');
ALTER USER MAPPING FOR CURRENT_USER SERVER pg_opts OPTIONS (ADD user 'u', ADD password 'p');
SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname = 'pg_opts';
SELECT umoptions FROM pg_user_mappings WHERE srvname = 'pg_opts';
ROLLBACK;
\set ON_ERROR_ROLLBACK off

--
-- dbsync functions on servers that are not (dbsync) servers
--
SELECT * FROM dbsync_run('no_such_server');
SELECT * FROM dbsync_discover('no_such_server');
SELECT dbsync_resync('no_such_server');
SELECT dbsync_set_table('no_such_server', 't', primary_key => '{id}');
CREATE FOREIGN DATA WRAPPER other_fdw;
CREATE SERVER not_dbsync FOREIGN DATA WRAPPER other_fdw;
SELECT * FROM dbsync_run('not_dbsync');
SELECT * FROM dbsync_discover('not_dbsync');
SELECT dbsync_resync('not_dbsync');
SELECT dbsync_set_table('not_dbsync', 't', cursor_column => 'x');
SELECT * FROM dbsync_run(NULL, 'some_table');
-- a run of every server ignores servers of other wrappers
SELECT count(*) FROM dbsync_run();
DROP SERVER not_dbsync;
DROP FOREIGN DATA WRAPPER other_fdw;
-- a dbsync server without a user mapping for its owner
CREATE SERVER pgopt_nomap FOREIGN DATA WRAPPER dbsync
    OPTIONS (source_type 'postgresql', host '127.0.0.1', port :'src_port', dbname 'srcdb');
SELECT table_name, mode, status, message FROM dbsync_run('pgopt_nomap');
DROP SERVER pgopt_nomap;

--
-- A working source, then the same server made unreachable / given a bad password
--
\connect :srcconn
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS pgopt CASCADE;
RESET client_min_messages;
CREATE SCHEMA pgopt;
CREATE TABLE pgopt.items (id int PRIMARY KEY, name text);
INSERT INTO pgopt.items SELECT g, 'item ' || g FROM generate_series(1, 3) g;
\connect :wh

CREATE SERVER pgopt_src FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'yugabytedb', host '127.0.0.1', port :'src_port', dbname 'srcdb',
    schema 'pgopt', connect_timeout '2');
CREATE USER MAPPING FOR CURRENT_USER SERVER pgopt_src
    OPTIONS (user 'src_user', password 'src_pw');
-- target_schema defaults to the server's name
SELECT table_name, mode, rows_upserted, rows_deleted, status, message
  FROM dbsync_run('pgopt_src') ORDER BY 1;
SELECT id, name, _dbsync_synced_at IS NOT NULL AS has_synced_at FROM pgopt_src.items ORDER BY id;
SELECT server, table_name, target, last_status, rows_total, last_error
  FROM dbsync.status WHERE server = 'pgopt_src';
-- the session's own settings are untouched by a run
SELECT current_setting('TimeZone') = :'tz_before' AS timezone_kept,
       current_setting('DateStyle') = :'ds_before' AS datestyle_kept;

-- unreachable source: nothing listens on port 1
ALTER SERVER pgopt_src OPTIONS (SET port '1');
SELECT table_name, mode, rows_upserted, rows_deleted, status,
       message LIKE 'could not connect to source "pgopt_src"%' AS says_could_not_connect,
       message LIKE '%HINT: %' AS has_hint
  FROM dbsync_run('pgopt_src');
-- recorded for the tables the server is known to have; data kept
SELECT table_name, last_status,
       last_error LIKE 'could not connect to source "pgopt_src"%' AS error_recorded,
       last_error_at IS NOT NULL AS has_error_time, rows_total
  FROM dbsync.status WHERE server = 'pgopt_src';
SELECT count(*) FROM pgopt_src.items;
-- the same for a run of one table
SELECT table_name, status, message LIKE 'could not connect%' AS says_could_not_connect
  FROM dbsync_run('pgopt_src', 'items');
-- dbsync_discover reports it as an error
SELECT * FROM dbsync_discover('pgopt_src');
ALTER SERVER pgopt_src OPTIONS (SET port :'src_port');

-- bad password: a clear error that never shows the password
ALTER USER MAPPING FOR CURRENT_USER SERVER pgopt_src OPTIONS (SET password 'wrongpw');
SELECT table_name, mode, rows_upserted, rows_deleted, status,
       message LIKE 'could not connect to source "pgopt_src"%' AS says_could_not_connect,
       message LIKE '%password authentication failed for user "src_user"%' AS says_why,
       message LIKE '%HINT: %' AS has_hint,
       message LIKE '%wrongpw%' AS shows_password
  FROM dbsync_run('pgopt_src');
SELECT table_name, last_status,
       last_error LIKE '%password authentication failed%' AS error_recorded,
       last_error LIKE '%wrongpw%' AS shows_password
  FROM dbsync.status WHERE server = 'pgopt_src';
SELECT count(*) AS state_rows_with_password FROM dbsync.tables t WHERE t::text LIKE '%wrongpw%';
SELECT count(*) FROM pgopt_src.items;
ALTER USER MAPPING FOR CURRENT_USER SERVER pgopt_src OPTIONS (SET password 'src_pw');

-- a wrong dbname / remote schema
ALTER SERVER pgopt_src OPTIONS (SET dbname 'no_such_db');
SELECT table_name, status,
       message LIKE '%database "no_such_db" does not exist%' AS says_why
  FROM dbsync_run('pgopt_src');
ALTER SERVER pgopt_src OPTIONS (SET dbname 'srcdb');
-- a remote schema that does not exist is an error, not an empty source
CREATE SERVER pgopt_noschema FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'yugabytedb', host '127.0.0.1', port :'src_port', dbname 'srcdb',
    schema 'no_such_schema');
CREATE USER MAPPING FOR CURRENT_USER SERVER pgopt_noschema
    OPTIONS (user 'src_user', password 'src_pw');
SELECT status, message LIKE '%"no_such_schema"%' AS names_schema
  FROM dbsync_run('pgopt_noschema');
DROP SERVER pgopt_noschema CASCADE;

-- back to normal: the next run succeeds and clears the error
SELECT table_name, mode, rows_upserted, rows_deleted, status, message
  FROM dbsync_run('pgopt_src');
SELECT table_name, last_status, last_error, last_error_at, rows_total
  FROM dbsync.status WHERE server = 'pgopt_src';
SELECT current_setting('TimeZone') = :'tz_before' AS timezone_kept;

-- TLS options reach libpq: this source has no TLS
ALTER SERVER pgopt_src OPTIONS (ADD sslmode 'require');
SELECT table_name, status,
       message LIKE '%server does not support SSL, but SSL was required%' AS says_why
  FROM dbsync_run('pgopt_src');
ALTER SERVER pgopt_src OPTIONS (SET sslmode 'disable');
SELECT table_name, status FROM dbsync_run('pgopt_src');
ALTER SERVER pgopt_src OPTIONS (DROP sslmode);
-- a libpq multi-host list: the first host refuses, the second serves
ALTER SERVER pgopt_src OPTIONS (SET host '127.0.0.2,127.0.0.1');
SELECT table_name, status FROM dbsync_run('pgopt_src');
ALTER SERVER pgopt_src OPTIONS (SET host '127.0.0.1');

-- a table that is not at the source, named explicitly
SELECT table_name, mode, status, message FROM dbsync_run('pgopt_src', 'nope');

--
-- A non-superuser owner: needs a password, and must really have used it
--
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_dbsync_owner;
RESET client_min_messages;
CREATE ROLE regress_dbsync_owner;
GRANT USAGE ON FOREIGN DATA WRAPPER dbsync TO regress_dbsync_owner;
GRANT CREATE ON DATABASE :"DBNAME" TO regress_dbsync_owner;
SET ROLE regress_dbsync_owner;
CREATE SERVER pgopt_user FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'postgresql', host '127.0.0.1', port :'src_port', dbname 'srcdb',
    schema 'pgopt', connect_timeout '2');
-- no password in the mapping
CREATE USER MAPPING FOR CURRENT_USER SERVER pgopt_user OPTIONS (user 'src_user');
SELECT table_name, status, message LIKE 'password is required%' AS password_required
  FROM dbsync_run('pgopt_user');
-- the source trusts its superuser on 127.0.0.1: a password given but not used is refused
ALTER USER MAPPING FOR CURRENT_USER SERVER pgopt_user
    OPTIONS (SET user 'postgres', ADD password 'unused');
SELECT table_name, status, message LIKE 'password is required%' AS password_required
  FROM dbsync_run('pgopt_user');
-- with a real password it works; the table belongs to the server's owner
ALTER USER MAPPING FOR CURRENT_USER SERVER pgopt_user
    OPTIONS (SET user 'src_user', SET password 'src_pw');
SELECT table_name, mode, rows_upserted, status, message FROM dbsync_run('pgopt_user');
-- the owner sees its own server in dbsync.status, not the superuser's one
SELECT server, table_name, last_status FROM dbsync.status ORDER BY 1, 2;
RESET ROLE;
SELECT c.relname, pg_get_userbyid(c.relowner) AS owner
  FROM pg_class c WHERE c.oid = 'pgopt_user.items'::regclass;
-- a superuser's run of that server still syncs as its owner
\connect :srcconn
INSERT INTO pgopt.items VALUES (4, 'item 4');
\connect :wh
SELECT table_name, mode, rows_upserted, status FROM dbsync_run('pgopt_user');
SELECT count(*) FROM pgopt_user.items;
SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'pgopt_user.items'::regclass;
-- another role without USAGE may neither run nor see it
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_dbsync_other;
RESET client_min_messages;
CREATE ROLE regress_dbsync_other;
SET ROLE regress_dbsync_other;
SELECT * FROM dbsync_run('pgopt_user');
SELECT count(*) FROM dbsync.status;
SELECT dbsync_resync('pgopt_user');
RESET ROLE;

-- clean up
SET client_min_messages = warning;
DROP SCHEMA pgopt_user CASCADE;
DROP SERVER pgopt_user CASCADE;
REVOKE CREATE ON DATABASE :"DBNAME" FROM regress_dbsync_owner;
REVOKE USAGE ON FOREIGN DATA WRAPPER dbsync FROM regress_dbsync_owner;
DROP ROLE regress_dbsync_owner;
DROP ROLE regress_dbsync_other;
DROP SCHEMA pgopt_src CASCADE;
DROP SERVER pgopt_src CASCADE;
\connect :srcconn
SET client_min_messages = warning;
DROP SCHEMA pgopt CASCADE;

-- statements for source flavors no test can run, checked as text
\connect :wh
SELECT dbsync.generated_sql('catalog_version', 'yugabytedb');
SELECT dbsync.generated_sql('catalog_version', 'tidb');
SELECT dbsync.generated_sql('catalog_version', 'mysql') IS NULL AS mysql_keeps_no_version;
SELECT dbsync.generated_sql('catalog_version', 'postgresql') LIKE 'SELECT pg_catalog.count(*)%hashtextextended(pg_catalog.string_agg(%' AS pg_digest;
SELECT dbsync.generated_sql('catalog_version', 'oracle');
-- log capture: the slot, the snapshot handover and the stream, per flavor
SELECT dbsync.generated_sql('log_slot', 'yugabytedb');
SELECT dbsync.generated_sql('log_slot', 'postgresql');
SELECT dbsync.generated_sql('log_snapshot', 'yugabytedb');
SELECT dbsync.generated_sql('log_snapshot', 'postgresql');
SELECT dbsync.generated_sql('log_start', 'yugabytedb');
SELECT dbsync.generated_sql('log_slot', 'tidb') IS NULL AS tidb_has_no_log;
-- log capture options
CREATE SERVER cap_tidb FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'tidb', dbname 'x', capture 'log');
CREATE SERVER cap_yb FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', capture 'logs');
CREATE SERVER cap_yb FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', capture 'log', slot_name 'Bad-Name');
CREATE SERVER cap_yb FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'yugabytedb', capture 'log', slot_name 'good_slot_1', publication 'My Pub');
ALTER SERVER cap_yb OPTIONS (SET slot_name '');
ALTER SERVER cap_yb OPTIONS (DROP slot_name, DROP publication, SET source_type 'mysql', ADD dbname 'x');
CREATE SERVER cap_my FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', dbname 'x', publication 'p');
CREATE SERVER cap_my FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', dbname 'x', capture 'cursor');
DROP SERVER cap_yb;
DROP SERVER cap_my;
CREATE ROLE gen_sql_nobody;
SET ROLE gen_sql_nobody;
SELECT dbsync.generated_sql('catalog_version', 'tidb');
RESET ROLE;
DROP ROLE gen_sql_nobody;
