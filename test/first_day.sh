#!/usr/bin/env bash
# A data engineer's first day: failures a scheduler sees (CALL ends with an ERROR,
# pg_cron records it as failed), a server that never connected is in dbsync.status and
# dbsync.runs, specific hints (a revoked SELECT, wrong password, missing table) with the
# SQLSTATE and the remote SQL in their own columns, every silent change said (target
# moved, cursor column lost, excluded tables), dbsync_discover predicting the next run,
# and the documented way to move targets to another schema without a reload.
set -euo pipefail
source "$DBSYNC_REPO/scripts/lib.sh"

source "$DBSYNC_REPO/test/lib/tap.sh"
mode_of() { q "SELECT mode FROM dbsync_discover('fd') WHERE table_name = '$1'"; }

src_admin_psql <<SQL
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS fd CASCADE;
CREATE SCHEMA fd AUTHORIZATION $SRC_USER;
SQL
src_psql <<'SQL'
CREATE TABLE fd.orders (id int PRIMARY KEY, v text, updated_at timestamptz DEFAULT now());
CREATE TABLE fd.items (id int PRIMARY KEY, v text, updated_at timestamptz DEFAULT now());
CREATE TABLE fd."secret table" (id int PRIMARY KEY, v text);
INSERT INTO fd.orders SELECT g, 'o' || g FROM generate_series(1, 20) g;
INSERT INTO fd.items SELECT g, 'i' || g FROM generate_series(1, 5) g;
INSERT INTO fd."secret table" VALUES (1, 's');
SQL
wh_psql <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dbsync;
DROP SCHEMA IF EXISTS fd CASCADE;
DROP SCHEMA IF EXISTS fd_new CASCADE;
DROP SCHEMA IF EXISTS fd_moved CASCADE;
DROP SERVER IF EXISTS fd CASCADE;
DROP SERVER IF EXISTS fd_down CASCADE;
CREATE SERVER fd FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql',
    host '127.0.0.1', port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'fd');
CREATE USER MAPPING FOR CURRENT_USER SERVER fd OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER fd_down FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql',
    host '127.0.0.1', port '1', dbname '$SRC_DB', schema 'fd');
CREATE USER MAPPING FOR CURRENT_USER SERVER fd_down OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL

# ---------------------------------------------------------------- discover predicts
check "discover: a new table will be loaded initially" [ "$(mode_of orders)" = initial ]
q "SELECT count(*) FROM dbsync_run('fd')" >/dev/null
check "discover: after the first run, incremental" [ "$(mode_of orders)" = incremental ]

# ---------------------------------------------------------------- a server that never connected
out=$(wh_psql -c "CALL dbsync_sync('fd_down')" 2>&1 || true)
check "never connected: CALL ends with an ERROR naming the server" grep -q 'dbsync_sync: 1 table(s) failed: fd_down\.\*' <<<"$out"
check "never connected: dbsync.status has a row for the server with the error and SQLSTATE" \
    is "SELECT (table_name IS NULL) || ' ' || last_status || ' ' || health || ' ' || (last_error LIKE 'could not connect%') || ' ' || left(last_sqlstate, 2) FROM dbsync.status WHERE server = 'fd_down'" \
    "true error failing true 08"
check "never connected: dbsync.runs has the failure" \
    is "SELECT count(*) FROM dbsync.runs WHERE server = 'fd_down' AND status = 'error' AND table_name IS NULL" 1

# ---------------------------------------------------------------- CALL fails for schedulers; pg_cron records it
q "SELECT dbsync_set_table('fd', 'items', cursor_column => 'nope')" >/dev/null
out=$(wh_psql -c "CALL dbsync_sync('fd')" 2>&1 || true)
diag "$(grep ERROR <<<"$out")"
check "CALL: ends with an ERROR naming the failed table" grep -q 'ERROR:  dbsync_sync: 1 table(s) failed: fd\.items' <<<"$out"
call_sqlstate() {
    local out
    out=$(wh_psql -c '\set VERBOSITY verbose' -c "CALL dbsync_sync('fd')" 2>&1 || true)
    grep -q 'ERROR:  HV000: dbsync_sync' <<<"$out" && grep -q 'DETAIL:  The other tables were synced and committed. The first failure had SQLSTATE 42703.' <<<"$out" || { diag "$out"; return 1; }
}
check "CALL: a dbsync SQLSTATE (HV000), the first failure's SQLSTATE (42703) in the DETAIL" call_sqlstate
src_psql -c "UPDATE fd.orders SET v = 'changed', updated_at = now() WHERE id = 1"
wh_psql -c "CALL dbsync_sync('fd')" >/dev/null 2>&1 || true
check "CALL: the other tables were synced and committed" is "SELECT v FROM fd.orders WHERE id = 1" changed
check "SELECT dbsync_run() does not raise: one row per table" \
    is "SELECT string_agg(table_name || ':' || status, ',' ORDER BY table_name) FROM dbsync_run('fd')" \
    "items:error,orders:ok,secret table:ok"
# pg_cron's scheduler ends for good when its database is dropped (pg_regress does):
# a restart brings it back
if [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron scheduler'")" = 0 ]; then
    as_pg "$PG_BINDIR/pg_ctl" -D "$WH_DATADIR" -m fast -w stop >/dev/null
    pg_server_start "$WH_DATADIR" "$WH_LOG" >/dev/null
fi
if q "SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'" | grep -q 1 || wh_psql -c "CREATE EXTENSION pg_cron" >/dev/null 2>&1; then
    q "SELECT cron.schedule('fd-sync', '* * * * *', \$\$CALL dbsync_sync('fd')\$\$)" >/dev/null
    if wait_until 75 eval "[ -n \"\$(q \"SELECT status FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'fd-sync' AND status IN ('failed', 'succeeded')\")\" ]"; then
        check "pg_cron: a run with a failing table is recorded as failed, with the table named" \
            is "SELECT status || ' ' || (return_message LIKE '%fd.items%') FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'fd-sync' ORDER BY runid DESC LIMIT 1" "failed true"
    else
        not_ok "pg_cron: the job ran within 75 s"
    fi
    q "SELECT cron.unschedule('fd-sync')" >/dev/null
else
    not_ok "pg_cron is available in the warehouse"
fi
q "SELECT dbsync_set_table('fd', 'items', cursor_column => '')" >/dev/null
out=$(wh_psql -c "CALL dbsync_sync('fd')" 2>&1) && ok "CALL: succeeds once nothing fails" || not_ok "CALL: succeeds once nothing fails ($out)"

# ---------------------------------------------------------------- specific hints, SQLSTATE, remote SQL apart
src_admin_psql -c "REVOKE SELECT ON fd.orders FROM $SRC_USER; ALTER TABLE fd.orders OWNER TO postgres" >/dev/null
q "SELECT count(*) FROM dbsync_run('fd', 'orders')" >/dev/null
check "revoked SELECT: SQLSTATE 42501, config class" \
    is "SELECT last_sqlstate || ' ' || last_error_class FROM dbsync.status WHERE table_name = 'orders'" "42501 config"
check "revoked SELECT: the hint is the GRANT to run at the source" \
    is "SELECT last_error LIKE '%HINT: The source user \"$SRC_USER\" lacks a privilege. At the source, run: GRANT USAGE ON SCHEMA fd TO $SRC_USER; GRANT SELECT ON ALL TABLES IN SCHEMA fd TO $SRC_USER;%' FROM dbsync.status WHERE table_name = 'orders'" t
check "revoked SELECT: the failing remote SQL in its own column, not in the row sample" \
    is "SELECT (last_remote_sql LIKE '%FROM fd.orders%') || ' ' || (last_row_error_sample IS NULL) FROM dbsync.status WHERE table_name = 'orders'" "true true"
check "revoked SELECT: runs has SQLSTATE, hint and remote SQL apart" \
    is "SELECT sqlstate || ' ' || (error_hint LIKE 'The source user%GRANT SELECT%') || ' ' || (remote_sql IS NOT NULL) FROM dbsync.runs WHERE table_name = 'orders' ORDER BY finished_at DESC LIMIT 1" "42501 true true"
src_admin_psql -c "ALTER TABLE fd.orders OWNER TO $SRC_USER; GRANT SELECT ON fd.orders TO $SRC_USER" >/dev/null
wh_psql -c "ALTER USER MAPPING FOR CURRENT_USER SERVER fd OPTIONS (SET password 'wrong')"
q "SELECT count(*) FROM dbsync_run('fd')" >/dev/null
check "wrong password: the hint points at the user mapping (28P01)" \
    is "SELECT last_sqlstate || ' ' || (last_error LIKE '%HINT: Check the user and password in the user mapping for server \"fd\".%') FROM dbsync.status WHERE table_name = 'orders'" "28P01 true"
wh_psql -c "ALTER USER MAPPING FOR CURRENT_USER SERVER fd OPTIONS (SET password '$SRC_PASSWORD')"
q "SELECT count(*) FROM dbsync_run('fd')" >/dev/null

# ---------------------------------------------------------------- silent changes said
# a cursor column dropped at the source: said now and on every later run
src_psql -c "ALTER TABLE fd.items DROP COLUMN updated_at"
m1=$(q "SELECT message FROM dbsync_run('fd', 'items')")
m2=$(q "SELECT message FROM dbsync_run('fd', 'items')")
diag "cursor lost: $m2"
check "cursor lost: said on the run that noticed it" grep -q 'cursor column "updated_at" is no longer at the source' <<<"$m1"
check "cursor lost: said again on the next run (still read in full)" grep -q 'read in full on every run' <<<"$m2"
check "cursor lost: in dbsync.status and dbsync.runs too" \
    is "SELECT (s.last_message LIKE '%no longer at the source%') || ' ' || (r.message LIKE '%no longer at the source%') FROM dbsync.status s, LATERAL (SELECT message FROM dbsync.runs WHERE table_name = 'items' ORDER BY finished_at DESC LIMIT 1) r WHERE s.table_name = 'items'" "true true"
check "cursor lost: discover predicts full" [ "$(mode_of items)" = full ]
# excluded: one model with disabled, shown in status and discover
wh_psql -c "ALTER SERVER fd OPTIONS (ADD exclude_tables 'secret%')"
q "SELECT count(*) FROM dbsync_run('fd')" >/dev/null
check "excluded: health 'excluded' in status" is "SELECT health FROM dbsync.status WHERE table_name = 'secret table'" excluded
check "excluded: discover shows it as excluded" [ "$(mode_of 'secret table')" = excluded ]
wh_psql -c "ALTER SERVER fd OPTIONS (DROP exclude_tables)"
q "SELECT dbsync_set_table('fd', 'secret table', enabled => false)" >/dev/null
check "disabled: health 'disabled', discover 'disabled'" \
    eval "[ \"\$(q \"SELECT health FROM dbsync.status WHERE table_name = 'secret table'\")\" = disabled ] && [ \"\$(mode_of 'secret table')\" = disabled ]"
q "SELECT dbsync_set_table('fd', 'secret table', enabled => true)" >/dev/null
q "SELECT count(*) FROM dbsync_run('fd')" >/dev/null
check "selected and enabled again: ok" is "SELECT health FROM dbsync.status WHERE table_name = 'secret table'" ok
# target_schema changed: discover predicts the reload, the run names the old table
wh_psql -c "ALTER SERVER fd OPTIONS (ADD target_schema 'fd_new')"
check "target_schema changed: discover predicts initial (a new table)" [ "$(mode_of orders)" = initial ]
msg=$(q "SELECT message FROM dbsync_run('fd', 'orders')")
diag "target moved: $msg"
check "target_schema changed: the run names the old table it no longer syncs" grep -q 'the old table fd.orders keeps its rows but is no longer synced' <<<"$msg"
check "target_schema changed: the old table is kept" is "SELECT count(*) FROM fd.orders" 20
# the documented rename: no reload
q "SELECT count(*) FROM dbsync_run('fd')" >/dev/null
wh_psql -c "ALTER SCHEMA fd_new RENAME TO fd_moved" -c "ALTER SERVER fd OPTIONS (SET target_schema 'fd_moved')"
check "schema renamed: discover predicts incremental" [ "$(mode_of orders)" = incremental ]
check "schema renamed, then target_schema set: incremental, no reload" \
    is "SELECT mode || ' ' || rows_upserted || ' ' || status FROM dbsync_run('fd', 'orders')" "incremental 0 ok"

wh_psql -c "DROP SERVER fd CASCADE; DROP SERVER fd_down CASCADE; DROP SCHEMA fd CASCADE; DROP SCHEMA fd_moved CASCADE;" >/dev/null 2>&1 || true
[ "$failed" = 0 ]
