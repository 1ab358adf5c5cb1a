--
-- pg_concurrency: runs that meet other sessions, made deterministic with dblink
-- (a second warehouse session, and source sessions that hold locks or stay open).
--   * two runs of one table never interleave: the second skips it, leaves its
--     last_status alone, and syncs the server's other tables;
--   * statement_timeout and pg_cancel_backend stop a run that waits on the source;
--     the state stays at the last committed sync;
--   * no password in pg_stat_activity, on either side;
--   * rows that commit late (a transaction open at the source while a run moves
--     the cursor past its rows' cursor values) are not missed.
-- Remote schema pgconc; server pgconc.
--
\getenv src_port SRC_PG_PORT
\set srcconn 'host=127.0.0.1 port=' :src_port ' dbname=srcdb user=src_user password=src_pw'
\set wh 'host=' :HOST ' port=' :PORT ' dbname=' :DBNAME ' user=' :USER
\set run 'SELECT table_name, mode, rows_upserted, rows_deleted, status, message FROM dbsync_run'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dbsync;
CREATE EXTENSION IF NOT EXISTS dblink;
DROP SCHEMA IF EXISTS pgconc CASCADE;
RESET client_min_messages;

\connect :srcconn
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS pgconc CASCADE;
RESET client_min_messages;
CREATE SCHEMA pgconc;
CREATE TABLE pgconc.t (id int PRIMARY KEY, v text, updated_at timestamptz);
INSERT INTO pgconc.t SELECT g, 'v' || g, '2024-01-01 00:00:00+00' FROM generate_series(1, 3) g;
CREATE TABLE pgconc.other (id int PRIMARY KEY, v text);
INSERT INTO pgconc.other VALUES (1, 'x');
\connect :wh

CREATE SERVER pgconc FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'yugabytedb', host '127.0.0.1', port :'src_port', dbname 'srcdb',
    schema 'pgconc');
CREATE USER MAPPING FOR CURRENT_USER SERVER pgconc OPTIONS (user 'src_user', password 'src_pw');
:run('pgconc') ORDER BY 1;

-- source sessions: "src" writes, "src_lock" holds locks, "writer" stays open
SELECT dblink_connect('src', :'srcconn');
SELECT dblink_connect('src_lock', :'srcconn');
SELECT dblink_connect('writer', :'srcconn');
-- a second warehouse session
SELECT dblink_connect('other_run', :'wh');
-- wait until a dbsync session at the source waits for a lock (asked through
-- "src": a session inside a transaction sees one snapshot of pg_stat_activity)
CREATE FUNCTION pg_temp.wait_for_blocked_sync() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..600 LOOP
        IF EXISTS (SELECT 1 FROM dblink('src',
                   'SELECT 1 FROM pg_stat_activity WHERE application_name = ''dbsync''
                       AND wait_event_type = ''Lock''') AS x(one int)) THEN
            RETURN 'blocked';
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN 'never blocked';
END $$;
-- ... and until none does any more (a canceled run must not leave its remote
-- statement behind)
CREATE FUNCTION pg_temp.wait_for_no_blocked_sync() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..100 LOOP
        IF NOT EXISTS (SELECT 1 FROM dblink('src',
                   'SELECT 1 FROM pg_stat_activity WHERE application_name = ''dbsync''
                       AND wait_event_type = ''Lock''') AS x(one int)) THEN
            RETURN 'none left';
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN 'still waiting at the source after 5 s';
END $$;

--
-- Two runs of the same table
--
SELECT dblink_exec('src', 'UPDATE pgconc.t SET v = ''changed'', updated_at = ''2024-01-02 00:00:00+00'' WHERE id = 1');
SELECT dblink_exec('src_lock', 'BEGIN');
SELECT dblink_exec('src_lock', 'LOCK TABLE pgconc.t IN ACCESS EXCLUSIVE MODE');
SELECT dblink_send_query('other_run', 'SELECT table_name, mode, rows_upserted, status FROM dbsync_run(''pgconc'', ''t'')');
SELECT pg_temp.wait_for_blocked_sync();
-- meanwhile: t is skipped, other is synced
:run('pgconc') ORDER BY 1;
:run('pgconc', 't');
SELECT table_name, last_status, last_mode, cursor_value FROM dbsync.status
 WHERE server = 'pgconc' ORDER BY 1;
-- no password in what either server shows of its sessions
SELECT count(*) AS warehouse_sessions_showing_password
  FROM pg_stat_activity WHERE query LIKE '%src' || '_pw%';
SELECT * FROM dblink('src', 'SELECT count(*) FROM pg_stat_activity
    WHERE application_name = ''dbsync'' AND query LIKE ''%src'' || ''_pw%''') AS x(source_sessions_showing_password bigint);
SELECT dblink_exec('src_lock', 'COMMIT');
SELECT * FROM dblink_get_result('other_run') AS r(table_name text, mode text, rows_upserted bigint, status text);
SELECT * FROM dblink_get_result('other_run') AS r(table_name text, mode text, rows_upserted bigint, status text);
SELECT id, v FROM pgconc.t ORDER BY id;
SELECT table_name, last_status, last_mode, cursor_value FROM dbsync.status
 WHERE server = 'pgconc' ORDER BY 1;

--
-- statement_timeout and pg_cancel_backend stop a run that waits on the source
--
SELECT dblink_exec('src', 'UPDATE pgconc.t SET v = ''changed again'', updated_at = ''2024-01-03 00:00:00+00'' WHERE id = 2');
SELECT dblink_exec('src_lock', 'BEGIN');
SELECT dblink_exec('src_lock', 'LOCK TABLE pgconc.t IN ACCESS EXCLUSIVE MODE');
SET statement_timeout = '500ms';
:run('pgconc', 't');
RESET statement_timeout;
SELECT pg_temp.wait_for_no_blocked_sync();
SELECT dblink_send_query('other_run', 'SELECT table_name, mode, rows_upserted, status FROM dbsync_run(''pgconc'', ''t'')');
SELECT pg_temp.wait_for_blocked_sync();
SELECT pg_cancel_backend(pid) FROM pg_stat_activity
 WHERE query LIKE 'SELECT table_name, mode, rows_upserted, status FROM dbsync_run(%' AND pid <> pg_backend_pid();
\set VERBOSITY terse
SELECT * FROM dblink_get_result('other_run', false) AS r(table_name text, mode text, rows_upserted bigint, status text);
\set VERBOSITY default
SELECT dblink_error_message('other_run');
SELECT * FROM dblink_get_result('other_run') AS r(table_name text, mode text, rows_upserted bigint, status text);
-- the canceled run left nothing behind: the state and the rows are the last sync's
SELECT table_name, last_status, last_mode, cursor_value FROM dbsync.status
 WHERE server = 'pgconc' AND table_name = 't';
SELECT id, v FROM pgconc.t ORDER BY id;
SELECT pg_temp.wait_for_no_blocked_sync();
SELECT dblink_exec('src_lock', 'COMMIT');
:run('pgconc', 't');
SELECT id, v FROM pgconc.t ORDER BY id;

--
-- Late commits: a source transaction writes a row stamped with its start time
-- and commits only after a run has seen newer rows
--
SELECT dblink_exec('writer', 'BEGIN');
SELECT dblink_exec('writer', 'INSERT INTO pgconc.t VALUES (10, ''slow writer'', now())');
SELECT dblink_exec('src', 'INSERT INTO pgconc.t VALUES (11, ''quick writer'', clock_timestamp() + interval ''10 minutes'')');
:run('pgconc', 't');
SELECT id, v FROM pgconc.t ORDER BY id;
SELECT dblink_exec('writer', 'COMMIT');
:run('pgconc', 't');
SELECT id, v FROM pgconc.t ORDER BY id;
:run('pgconc', 't');

SELECT dblink_disconnect('src');
SELECT dblink_disconnect('src_lock');
SELECT dblink_disconnect('writer');
SELECT dblink_disconnect('other_run');

-- clean up
SET client_min_messages = warning;
DROP SERVER pgconc CASCADE;
DROP SCHEMA pgconc CASCADE;
\connect :srcconn
SET client_min_messages = warning;
DROP SCHEMA pgconc CASCADE;
