--
-- mysql_errors: what a user sees when a MySQL-family source (MariaDB, the
-- TiDB stand-in) fails: bad credentials, an unreachable port, an unknown
-- database, TLS the source does not offer, a missing password, and a value
-- that cannot be converted.  Each error has a message and a hint, is
-- recorded in dbsync.status, and leaves the synced data intact.
--
\getenv my_port SRC_MY_PORT
\setenv MY 'mariadb --no-defaults --batch --skip-column-names --default-character-set=utf8mb4 -h 127.0.0.1 -u src_user -psrc_pw srcdb -P'
\set run 'SELECT table_name, mode, rows_upserted, rows_deleted, status, message FROM dbsync_run'
\set st 'SELECT table_name, last_status, rows_total, last_error IS NOT NULL AS has_error FROM dbsync.status'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dbsync;
DROP SCHEMA IF EXISTS myerr CASCADE;
DROP SERVER IF EXISTS myerr CASCADE;
DROP SERVER IF EXISTS myerr_nopw CASCADE;
DROP ROLE IF EXISTS regress_myerr_owner;
RESET client_min_messages;

\! $MY "$SRC_MY_PORT" < "$PG_ABS_SRCDIR/sql/mysql_errors.mysql"

CREATE SERVER myerr FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'mysql', host '127.0.0.1', port :'my_port', dbname 'srcdb',
    tables 'er_%', vector_columns 'er_vec.emb');
CREATE USER MAPPING FOR CURRENT_USER SERVER myerr
    OPTIONS (user 'src_user', password 'src_pw');
:run('myerr') ORDER BY 1;
:st WHERE server = 'myerr' ORDER BY 1;

--
-- Bad password: the run reports it, every known table records it
--
ALTER USER MAPPING FOR CURRENT_USER SERVER myerr OPTIONS (SET password 'wrong');
:run('myerr') ORDER BY 1;
SELECT table_name, last_status, last_error FROM dbsync.status
 WHERE server = 'myerr' ORDER BY 1;
-- the password never shows
SELECT count(*) AS leaks FROM dbsync.status WHERE last_error LIKE '%wrong%';
-- the data is intact
SELECT count(*) AS ok_rows FROM myerr.er_ok;
ALTER USER MAPPING FOR CURRENT_USER SERVER myerr OPTIONS (SET password 'src_pw');

--
-- Nothing listens on the port
--
ALTER SERVER myerr OPTIONS (SET port '1');
:run('myerr') ORDER BY 1;

--
-- Unknown database (src_user may not see it: MariaDB says access denied)
--
ALTER SERVER myerr OPTIONS (SET port :'my_port', SET dbname 'nosuchdb');
:run('myerr') ORDER BY 1;
ALTER SERVER myerr OPTIONS (SET dbname 'srcdb');

--
-- TLS: the test source has none
--
ALTER SERVER myerr OPTIONS (ADD ssl_mode 'bogus');
ALTER SERVER myerr OPTIONS (ADD ssl_mode 'required');
:run('myerr') ORDER BY 1;
ALTER SERVER myerr OPTIONS (SET ssl_mode 'disabled');
:run('myerr') ORDER BY 1;
:st WHERE server = 'myerr' ORDER BY 1;

--
-- A value that cannot be converted: the table fails with a sample of the
-- row, keeps what it had; the other table still syncs
--
\! $MY "$SRC_MY_PORT" -e "INSERT INTO er_vec VALUES (3, '[7,eight,9]'); INSERT INTO er_ok VALUES (3, 'three')"
:run('myerr') ORDER BY 1;
SELECT table_name, last_status, last_error, last_row_error_sample->>'error' AS sample_error
  FROM dbsync.status WHERE server = 'myerr' ORDER BY 1;
SELECT id, emb FROM myerr.er_vec ORDER BY id;
SELECT id, v FROM myerr.er_ok ORDER BY id;
-- on_row_error 'skip': the other rows are synced, the bad one is skipped and
-- kept as a sample
ALTER SERVER myerr OPTIONS (ADD on_row_error 'skip');
:run('myerr', 'er_vec');
SELECT id, emb FROM myerr.er_vec ORDER BY id;
SELECT table_name, last_status, last_row_error_sample IS NOT NULL AS has_sample,
       last_row_error_sample::text LIKE '%eight%' AS sample_names_value
  FROM dbsync.status WHERE server = 'myerr' AND table_name = 'er_vec';
ALTER SERVER myerr OPTIONS (DROP on_row_error);
-- fixed at the source: the next run succeeds
\! $MY "$SRC_MY_PORT" -e "UPDATE er_vec SET emb = '[7,8,9]' WHERE id = 3"
:run('myerr') ORDER BY 1;
SELECT id, emb FROM myerr.er_vec ORDER BY id;
SELECT table_name, last_status, last_error, last_row_error_sample
  FROM dbsync.status WHERE server = 'myerr' ORDER BY 1;

--
-- A non-superuser owner must give a password
--
CREATE ROLE regress_myerr_owner;
GRANT USAGE ON FOREIGN DATA WRAPPER dbsync TO regress_myerr_owner;
SET ROLE regress_myerr_owner;
CREATE SERVER myerr_nopw FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'mysql', host '127.0.0.1', port :'my_port', dbname 'srcdb');
CREATE USER MAPPING FOR CURRENT_USER SERVER myerr_nopw OPTIONS (user 'src_user');
:run('myerr_nopw') ORDER BY 1;
RESET ROLE;
DROP SERVER myerr_nopw CASCADE;
REVOKE USAGE ON FOREIGN DATA WRAPPER dbsync FROM regress_myerr_owner;
DROP ROLE regress_myerr_owner;
