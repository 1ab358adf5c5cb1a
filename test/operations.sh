#!/usr/bin/env bash
# Operating dbsync: dbsync.runs (ok, error, skipped, and 'aborted' after a cancel,
# pg_terminate_backend, an immediate-mode restart and a SIGKILLed worker), history
# retention, dbsync.progress on a long load (growing counts, estimate, ETA; NOTICEs of
# CALL), backoff timing and pause of the auto-sync, dbsync_pause/dbsync_resume,
# NOTIFY payloads, dbsync.metrics through prometheus-postgres-exporter, and parallel
# workers (two tables at once; a long load does not hold up another table).
# Needs the warehouse preloaded with dbsync (scripts/testenv.sh) and the PG source.
#
# Slow loads: a BEFORE INSERT trigger on the local table sleeps 0.1 s every 1000 rows.
set -euo pipefail
shopt -s extglob
source "$DBSYNC_REPO/scripts/lib.sh"

source "$DBSYNC_REPO/test/lib/tap.sh"

WORK=$DBSYNC_TESTDIR/tests/work.operations
mkdir -p "$WORK"
chmod 777 "$WORK"
BIG=150000

restart_warehouse() {   # $1: immediate | fast
    as_pg "$PG_BINDIR/pg_ctl" -D "$WH_DATADIR" -m "$1" -w stop >/dev/null 2>&1 || true
    pg_server_start "$WH_DATADIR" "$WH_LOG" >/dev/null
}
set_gucs() {            # NAME=VALUE...: ALTER SYSTEM + reload
    local kv
    for kv in "$@"; do wh_psql -c "ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}'" >/dev/null; done
    q "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
}
reset_gucs() {
    wh_psql -c "ALTER SYSTEM RESET dbsync.retry_min" -c "ALTER SYSTEM RESET dbsync.retry_max" \
        -c "ALTER SYSTEM RESET dbsync.pause_after_failures" -c "ALTER SYSTEM RESET dbsync.pause_after" \
        -c "ALTER SYSTEM RESET dbsync.max_workers" >/dev/null
    q "SELECT pg_reload_conf()" >/dev/null
}
trap reset_gucs EXIT

# the rows of TABLE in SCHEMA (the same schema name at the source and locally)
DIGEST="SELECT count(*) || ':' || md5(coalesce(string_agg(id || ':' || v, ',' ORDER BY id), ''))"
src_digest() { src_psql -Atc "$DIGEST FROM $2.\"$1\""; }
wh_digest()  { q "$DIGEST FROM $2.\"$1\""; }
same_rows()  { [ "$(src_digest "$1" "$2")" = "$(wh_digest "$1" "$2")" ]; }
slow_on()    { q "CREATE TRIGGER slow BEFORE INSERT ON $1 FOR EACH ROW EXECUTE FUNCTION public.ops_slow()"; }
slow_off()   { q "DROP TRIGGER IF EXISTS slow ON $1"; }
progress_rows() { q "SELECT count(*) FROM dbsync.progress WHERE server = '$1' AND table_name IS NOT NULL"; }
# start_call TABLE TAG: a CALL in the background (psql's pid in CALL_PID, its NOTICEs
# in $WORK/TAG.notices); once it loads rows, its backend's pid is in BPID
start_call() {
    local tbl=$1 tag=$2
    "$PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "$WH_PORT" -U postgres -d "$WH_DB" \
        -c "CALL dbsync_sync('ops', '$tbl')" >"$WORK/$tag.out" 2>"$WORK/$tag.notices" &
    CALL_PID=$!
    wait_until 20 eval "[ \"\$(q \"SELECT count(*) FROM dbsync.progress WHERE table_name = '$tbl' AND rows_read > 0\")\" = 1 ]" || true
    BPID=$(q "SELECT pid FROM dbsync.progress WHERE table_name = '$tbl'")
}

# ------------------------------------------------------------------ setup
src_psql <<SQL
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS ops CASCADE;
CREATE SCHEMA ops;
CREATE TABLE ops.big   (id int PRIMARY KEY, v text, updated_at timestamptz);
CREATE TABLE ops.small (id int PRIMARY KEY, v text, updated_at timestamptz);
CREATE TABLE ops."Bad table" (id int PRIMARY KEY, v text, updated_at timestamptz);
INSERT INTO ops.small SELECT g, 's' || g, now() FROM generate_series(1, 5) g;
INSERT INTO ops."Bad table" VALUES (1, 'b', now());
CREATE SCHEMA IF NOT EXISTS ops2;
SQL
wh_psql <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dbsync;
DROP SCHEMA IF EXISTS ops CASCADE;
DROP SCHEMA IF EXISTS ops3 CASCADE;
DROP SERVER IF EXISTS ops CASCADE;
DROP SERVER IF EXISTS ops3 CASCADE;
DROP ROLE IF EXISTS ops_monitor;
DROP ROLE IF EXISTS ops_nobody;
CREATE ROLE ops_monitor LOGIN;
CREATE ROLE ops_nobody;
GRANT pg_read_all_stats TO ops_monitor;
CREATE SERVER ops FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql',
    host '127.0.0.1', port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'ops', batch_size '50000');
CREATE USER MAPPING FOR CURRENT_USER SERVER ops OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE OR REPLACE FUNCTION public.ops_slow() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF NEW.id % 1000 = 0 THEN PERFORM pg_catalog.pg_sleep(0.1); END IF;
    RETURN NEW;
END \$\$;
SELECT count(*) FROM dbsync_run('ops');
SQL
slow_on ops.big
src_psql -c "INSERT INTO ops.big SELECT g, 'b' || g, now() FROM generate_series(1, $BIG) g; ANALYZE ops.big"

# ------------------------------------------------------------------ 1. progress of a long load
t0=$SECONDS
start_call big load
s1=$(q "SELECT rows_read FROM dbsync.progress WHERE table_name = 'big'")
sleep 2
s2=$(q "SELECT rows_read || '|' || rows_estimated || '|' || coalesce(pct::text, '') || '|' || coalesce(extract(epoch FROM eta)::int::text, '') || '|' || phase || '|' || trigger || '|' || mode || '|' || (rows_per_sec > 0) FROM dbsync.progress WHERE table_name = 'big'")
diag "progress samples: $s1 then $s2 (rows_read|rows_estimated|pct|eta s|phase|trigger|mode|rate>0)"
IFS='|' read -r r2 est pct eta phase trig mode rate <<<"$s2"
check "progress: rows_read grows during the load" eval '[ -n "$s1" ] && [ "${r2:-0}" -gt "${s1:-0}" ]'
check "progress: estimate from the source's statistics" eval '[ "${est:-0}" -ge $((BIG * 9 / 10)) ] && [ "${est:-0}" -le $((BIG * 11 / 10)) ]'
check "progress: pct between 0 and 100, ETA sane (0 < eta < 10 min)" \
    awk -v p="$pct" -v e="$eta" 'BEGIN { exit !(p > 0 && p < 100 && e > 0 && e < 600) }'
check "progress: phase, trigger and mode shown" eval '[[ "$phase|$trig|$mode" == @(copying|committing)"|call|initial" ]]'
check "progress: a monitoring role (pg_read_all_stats) sees the row" \
    is "SET ROLE ops_monitor; SELECT count(*) FROM dbsync.progress WHERE table_name = 'big'" 1
check "progress: the row's pid is the CALL's backend" \
    is "SELECT count(*) FROM pg_stat_activity WHERE pid = '${BPID:-0}' AND query LIKE 'CALL dbsync_sync%'" 1
wait "$CALL_PID" || true
diag "load took $((SECONDS - t0)) s"
check "CALL reported progress as NOTICEs" grep -q "rows read" "$WORK/load.notices"
check "progress: no row once the load ended" [ "$(progress_rows ops)" = 0 ]
check "runs: the load is one ok row (trigger call, mode initial, rows read = upserted = $BIG, cursor set)" \
    is "SELECT status || ' ' || trigger || ' ' || mode || ' ' || rows_read || ' ' || rows_upserted || ' ' || (cursor_to IS NOT NULL) || ' ' || (bytes_read > 0) FROM dbsync.runs WHERE table_name = 'big' ORDER BY finished_at DESC LIMIT 1" \
    "ok call initial $BIG $BIG true true"
check "the load is exact" same_rows big ops

# ------------------------------------------------------------------ 2. aborted runs
reload_big() { q "TRUNCATE ops.big" >/dev/null; q "SELECT dbsync_resync('ops', 'big')" >/dev/null; }
aborted_row() { q "SELECT count(*) FROM dbsync.runs WHERE table_name = 'big' AND status = 'aborted' AND sqlstate = '$1' AND error LIKE '%$2%'"; }
# cancel
reload_big
start_call big cancel
q "SELECT pg_cancel_backend(${BPID:-0})" >/dev/null
wait "$CALL_PID" || true
check "cancel: the CALL failed" grep -q "canceling statement" "$WORK/cancel.notices"
q "SELECT count(*) FROM dbsync_run('ops', 'small')" >/dev/null
check "cancel: an aborted row (57014) once any run looks" [ "$(aborted_row 57014 'canceling statement')" = 1 ]
check "cancel: no progress row left behind" [ "$(progress_rows ops)" = 0 ]
# pg_terminate_backend
start_call big term
q "SELECT pg_terminate_backend(${BPID:-0})" >/dev/null
wait "$CALL_PID" || true
q "SELECT count(*) FROM dbsync_run('ops', 'small')" >/dev/null
check "terminate: an aborted row (57P01, terminated)" [ "$(aborted_row 57P01 terminated)" = 1 ]
# history older than the retention goes at the next start, keeping the last runs and failure
oid=$(q "SELECT oid FROM pg_foreign_server WHERE srvname = 'ops'")
wh_psql <<SQL
INSERT INTO dbsync.run_history (run_id, server, server_oid, table_name, trigger, started_at, finished_at, status, error)
SELECT 0, 'ops', $oid, 'old_t', 'sql', now() - interval '40 days' + g * interval '1 min',
       now() - interval '40 days' + g * interval '1 min', CASE WHEN g = 1 THEN 'error' ELSE 'ok' END,
       CASE WHEN g = 1 THEN 'old failure' END
  FROM generate_series(1, 16) g;
INSERT INTO dbsync.run_history (run_id, server, server_oid, table_name, trigger, started_at, finished_at, status)
SELECT 0, 'ops', $oid, 'old_u', 'sql', now() - interval '40 days', now() - interval '40 days', 'ok'
  FROM generate_series(1, 3) g;
SQL
# immediate-mode restart in the middle of a load
start_call big crash
check "crash: the load was running" [ -n "$BPID" ]
restart_warehouse immediate
wait "$CALL_PID" || true
if wait_until 30 eval "[ \"\$(aborted_row XX000 'killed or the server crashed')\" = 1 ]"; then
    ok "crash: the launcher records the interrupted load as aborted (no run needed)"
else
    not_ok "crash: the launcher records the interrupted load as aborted"
    q "SELECT status, sqlstate, error FROM dbsync.runs WHERE table_name = 'big' ORDER BY finished_at" | diag "$(cat)"
fi
check "retention: 40-day-old runs pruned at start, last 10 and last failure kept" \
    is "SELECT count(*) || ' ' || count(*) FILTER (WHERE status = 'error') FROM dbsync.runs WHERE table_name = 'old_t'" "11 1"
check "retention: a table's last runs are kept however old" is "SELECT count(*) FROM dbsync.runs WHERE table_name = 'old_u'" 3
dbid=$(q "SELECT oid FROM pg_database WHERE datname = current_database()")
check "no leftover files of interrupted runs" [ -z "$(ls "$WH_DATADIR/pg_dbsync" 2>/dev/null | grep "^$dbid\.")" ]
slow_off ops.big
q "CALL dbsync_sync('ops', 'big')" >/dev/null 2>&1
check "after cancel, kill and crash the load resumes and ends exact" same_rows big ops

# ------------------------------------------------------------------ 3. ok / error / skipped rows
q "SELECT dbsync_set_table('ops', 'Bad table', cursor_column => 'nope')" >/dev/null
q "SELECT count(*) FROM dbsync_run('ops', 'Bad table')" >/dev/null
check "error row: SQLSTATE, class, message and hint separate" \
    is "SELECT status || ' ' || sqlstate || ' ' || error_class || ' ' || (error LIKE 'cursor column \"nope\"%') || ' ' || (error_hint LIKE '%dbsync_set_table%') FROM dbsync.runs WHERE table_name = 'Bad table' ORDER BY finished_at DESC LIMIT 1" \
    "error 42703 config true true"
check "status: failing since the error, next attempt after the backoff" \
    is "SELECT health || ' ' || consecutive_failures || ' ' || (next_attempt_at > now()) || ' ' || last_sqlstate FROM dbsync.status WHERE table_name = 'Bad table'" \
    "failing 1 true 42703"
q "SELECT count(*) FROM dbsync_run('ops', 'Bad table')" >/dev/null
check "a manual run ignores the backoff (second failure at once)" \
    is "SELECT consecutive_failures || ' ' || failures_total FROM dbsync.metrics WHERE table_name = 'Bad table'" "2 2"
q "SELECT dbsync_set_table('ops', 'Bad table', cursor_column => '')" >/dev/null
q "SELECT count(*) FROM dbsync_run('ops', 'Bad table')" >/dev/null
check "a success ends the streak" is "SELECT health || ' ' || consecutive_failures FROM dbsync.status WHERE table_name = 'Bad table'" "ok 0"
q "SELECT dbsync_set_table('ops', 'small', enabled => false)" >/dev/null
q "SELECT count(*) FROM dbsync_run('ops', 'small')" >/dev/null
check "skipped row for a disabled table" \
    is "SELECT status || ' ' || (error LIKE '%disabled%') FROM dbsync.runs WHERE table_name = 'small' ORDER BY finished_at DESC LIMIT 1" "skipped true"
q "SELECT dbsync_set_table('ops', 'small', enabled => true)" >/dev/null
check "a role without USAGE on the server (nor pg_read_all_stats) sees none of its runs" \
    is "SET ROLE ops_nobody; SELECT count(*) FROM dbsync.runs WHERE server = 'ops'" 0
check "a monitoring role (pg_read_all_stats) sees no runs and no status (cursor values, errors)" \
    is "SET ROLE ops_monitor; SELECT (SELECT count(*) FROM dbsync.runs) + (SELECT count(*) FROM dbsync.status)" 0
check "a monitoring role sees every table in dbsync.metrics" \
    is "SET ROLE ops_monitor; SELECT count(*) >= 3 FROM dbsync.metrics WHERE server = 'ops'" t
check "a role without USAGE sees nothing in dbsync.metrics" \
    is "SET ROLE ops_nobody; SELECT count(*) FROM dbsync.metrics" 0

# ------------------------------------------------------------------ 4. backoff, pause, NOTIFY, resume
set_gucs dbsync.retry_min=1s dbsync.retry_max=4s dbsync.pause_after_failures=4 dbsync.pause_after=0
# a listener: psql prints (and flushes) what arrived after each statement
{ echo "LISTEN dbsync;"; for _ in $(seq 1 400); do echo "SELECT pg_sleep(0.25);"; done; } >"$WORK/listen.sql"
"$PG_BINDIR/psql" -X -q -At -h 127.0.0.1 -p "$WH_PORT" -U postgres -d "$WH_DB" \
    -f "$WORK/listen.sql" >"$WORK/listen.out" 2>&1 &
listener=$!
wh_psql -c "ALTER SERVER ops OPTIONS (ADD sync_interval '1 second')"
wait_until 20 eval "[ \"\$(q \"SELECT count(*) FROM dbsync.runs WHERE table_name = 'small' AND trigger = 'worker' AND status = 'ok'\")\" != 0 ]" || true
mark=$(q "SELECT now()")
src_psql -c "UPDATE ops.small SET v = 'x'"
wh_psql -c "ALTER SERVER ops OPTIONS (SET port '1')"    # nothing listens: connection refused
if wait_until 40 eval "[ \"\$(q \"SELECT health FROM dbsync.status WHERE table_name = 'small'\")\" = paused ]"; then
    ok "backoff: paused after dbsync.pause_after_failures failures"
else
    not_ok "backoff: paused after dbsync.pause_after_failures failures"
fi
gaps=$(q "SELECT string_agg(round(extract(epoch FROM started_at - lag)::numeric, 1)::text, ' ' ORDER BY started_at)
            FROM (SELECT started_at, lag(started_at) OVER (ORDER BY started_at) FROM dbsync.runs
                   WHERE table_name = 'small' AND status = 'error' AND started_at > '$mark') x WHERE lag IS NOT NULL")
diag "seconds between the failed attempts: $gaps (retry_min 1 s, doubling, retry_max 4 s, jitter 0.8-1.2)"
read -r g1 g2 g3 <<<"$gaps"
check "backoff: 4 attempts, waits grow (~1 s, ~2 s, ~4 s)" \
    awk -v a="$g1" -v b="$g2" -v c="$g3" 'BEGIN { exit !(a >= 0.8 && b >= 1.6 && c >= 3.2 && c < 8) }'
check "backoff: transient class, reason recorded" \
    is "SELECT last_error_class || ' ' || (paused_reason LIKE '4 failures in a row%') FROM dbsync.status WHERE table_name = 'small'" "transient true"
before=$(q "SELECT count(*) FROM dbsync.runs WHERE table_name = 'small' AND started_at > '$mark'")
sleep 5
check "paused: the auto-sync leaves it alone" [ "$before" = "$(q "SELECT count(*) FROM dbsync.runs WHERE table_name = 'small' AND started_at > '$mark'")" ]
check "paused: a manual run skips it and says how to resume" \
    is "SELECT status || ' ' || (message LIKE '%dbsync_resume(%') FROM dbsync_run('ops', 'small')" "skipped true"
check "paused after failures: CALL still ends with an ERROR (a scheduler sees it)" \
    eval "! wh_psql -c \"CALL dbsync_sync('ops', 'small')\" >/dev/null 2>&1"
wh_psql -c "ALTER SERVER ops OPTIONS (SET port '$SRC_PG_PORT')"
resumed=$(q "SELECT now()")
q "SELECT dbsync_resume('ops')" >/dev/null
check "resume: failing until the next success" is "SELECT health || ' ' || consecutive_failures FROM dbsync.status WHERE table_name = 'small'" "failing 0"
if wait_until 20 eval "[ \"\$(q \"SELECT count(*) FROM dbsync.runs WHERE table_name = 'small' AND status = 'ok' AND trigger = 'worker' AND started_at > '$resumed'\")\" != 0 ]"; then
    check "resume: the auto-sync syncs it again, health ok" is "SELECT health FROM dbsync.status WHERE table_name = 'small'" ok
else not_ok "resume: the auto-sync syncs it again"; fi
check "resume: the change made meanwhile arrived" same_rows small ops
q "SELECT dbsync_pause('ops', 'small', 'maintenance')" >/dev/null
check "dbsync_pause: paused with the reason" is "SELECT health || ' ' || (paused_reason LIKE 'maintenance (by %') FROM dbsync.status WHERE table_name = 'small'" "paused true"
q "SELECT dbsync_resume('ops', 'small')" >/dev/null
wh_psql -c "ALTER SERVER ops OPTIONS (DROP sync_interval)"
sleep 1
kill "$listener" 2>/dev/null || true; wait "$listener" 2>/dev/null || true
grep -o '{[^}]*}' "$WORK/listen.out" | grep '"table_name": "small"' | sed 's/.*"health": "\([a-z]*\)", "previous": "\([a-z]*\)".*/\2>\1/' >"$WORK/transitions" || true
diag "transitions notified for small: $(tr '\n' ' ' <"$WORK/transitions")"
check "NOTIFY: ok>failing, failing>paused, paused>failing (resume), failing>ok, then ok>paused, paused>ok (dbsync_pause, dbsync_resume)" \
    [ "$(tr '\n' ' ' <"$WORK/transitions")" = "ok>failing failing>paused paused>failing failing>ok ok>paused paused>ok " ]
check "NOTIFY: one payload per transition (no repeats while failing)" \
    [ "$(grep -c 'ok>failing' "$WORK/transitions")" = 1 ]
reset_gucs

# ------------------------------------------------------------------ 5. metrics, and through the exporter
check "metrics: totals, flags and times for big" \
    is "SELECT (runs_total >= 2) || ' ' || (rows_upserted_total >= $BIG) || ' ' || running || ' ' || healthy || ' ' || (last_success_timestamp_seconds > extract(epoch FROM now()) - 600) || ' ' || (staleness_seconds BETWEEN 0 AND 600) FROM dbsync.metrics WHERE table_name = 'big'" \
    "true true 0 1 true true"
check "metrics: numbers only besides the labels" \
    is "SELECT string_agg(DISTINCT data_type, ',' ORDER BY data_type) FROM information_schema.columns WHERE table_schema = 'dbsync' AND table_name = 'metrics' AND column_name NOT IN ('server', 'table_name', 'target', 'health')" \
    "bigint,double precision,integer"
if [ -x /usr/bin/prometheus-postgres-exporter ] && command -v curl >/dev/null; then
    port=59187
    wh_psql -c "ALTER ROLE ops_monitor PASSWORD 'mon'" >/dev/null
    DATA_SOURCE_NAME="postgresql://ops_monitor:mon@127.0.0.1:$WH_PORT/$WH_DB?sslmode=disable" \
        /usr/bin/prometheus-postgres-exporter --web.listen-address="127.0.0.1:$port" \
        --extend.query-path="$DBSYNC_REPO/contrib/prometheus/queries.yaml" \
        --disable-settings-metrics >"$WORK/exporter.log" 2>&1 &
    exporter=$!
    wait_until 20 curl -sf "http://127.0.0.1:$port/metrics" || true
    curl -s "http://127.0.0.1:$port/metrics" >"$WORK/metrics.txt" || true
    kill "$exporter" 2>/dev/null || true; wait "$exporter" 2>/dev/null || true
    line=$(grep '^dbsync_table_rows_upserted_total{' "$WORK/metrics.txt" | grep 'table_name="big"' || true)
    diag "exporter: $line"
    check "exporter: dbsync_table_rows_upserted_total for big, with labels" \
        eval "[[ \$line == *source=\\\"ops\\\"* && \$line == *target=\\\"ops.big\\\"* ]] && awk '{exit !(\$2 >= $BIG)}' <<<\"\$line\""
    check "exporter: last success timestamp and health gauge exported" \
        eval "grep -q '^dbsync_table_last_success_timestamp_seconds{.*table_name=\"big\"' '$WORK/metrics.txt' && grep -q '^dbsync_table_healthy{.*table_name=\"big\".* 1\$' '$WORK/metrics.txt'"
else
    not_ok "prometheus-postgres-exporter and curl are installed (scripts/deps.sh)"
fi

# ------------------------------------------------------------------ 6. parallel workers, SIGKILL
src_psql <<SQL
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS ops3 CASCADE;
CREATE SCHEMA ops3;
CREATE TABLE ops3.slowa (id int PRIMARY KEY, v text, updated_at timestamptz);
CREATE TABLE ops3.slowb (id int PRIMARY KEY, v text, updated_at timestamptz);
CREATE TABLE ops3.quick (id int PRIMARY KEY, v text, updated_at timestamptz);
INSERT INTO ops3.quick VALUES (1, 'q', now());
SQL
wh_psql <<SQL
CREATE SERVER ops3 FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql',
    host '127.0.0.1', port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'ops3', batch_size '20000');
CREATE USER MAPPING FOR CURRENT_USER SERVER ops3 OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SELECT count(*) FROM dbsync_run('ops3');
SQL
slow_on ops3.slowa
slow_on ops3.slowb
src_psql -c "INSERT INTO ops3.slowa SELECT g, 'a' || g, now() FROM generate_series(1, 100000) g;
             INSERT INTO ops3.slowb SELECT g, 'b' || g, now() FROM generate_series(1, 100000) g;"
set_gucs dbsync.max_workers=3
wh_psql -c "ALTER SERVER ops3 OPTIONS (ADD sync_interval '1 second')"
if wait_until 30 eval "[ \"\$(q \"SELECT count(DISTINCT table_name) FROM dbsync.progress WHERE server = 'ops3' AND trigger = 'worker' AND table_name LIKE 'slow_'\")\" = 2 ]"; then
    ok "parallel: two tables of one server load at once (their progress rows overlap)"
else
    not_ok "parallel: two tables of one server load at once"
fi
src_psql -c "INSERT INTO ops3.quick VALUES (2, 'during the long loads', now())"
if wait_until 20 eval "[ \"\$(wh_digest quick ops3)\" = \"\$(src_digest quick ops3)\" ]"; then
    check "parallel: a small table syncs while the long loads go on" [ "$(progress_rows ops3)" -ge 1 ]
else
    not_ok "parallel: a small table syncs while the long loads go on"
fi
wpid=$(q "SELECT pid FROM dbsync.progress WHERE table_name = 'slowa' AND trigger = 'worker'")
if [ -n "$wpid" ]; then
    kill -9 "$wpid"
    wait_until 30 eval "q 'SELECT 1' >/dev/null" || true
    slow_off ops3.slowa
    slow_off ops3.slowb
    if wait_until 90 eval "[ \"\$(wh_digest slowa ops3)\" = \"\$(src_digest slowa ops3)\" ] && [ \"\$(wh_digest slowb ops3)\" = \"\$(src_digest slowb ops3)\" ]"; then
        ok "SIGKILLed worker: replaced after the crash restart, both tables end exact"
    else
        not_ok "SIGKILLed worker: both tables end exact ($(wh_digest slowa ops3) vs $(src_digest slowa ops3))"
    fi
    check "SIGKILLed worker: its run is in dbsync.runs as aborted (trigger worker)" \
        is "SELECT count(*) > 0 FROM dbsync.runs WHERE table_name = 'slowa' AND status = 'aborted' AND trigger = 'worker'" t
else
    not_ok "SIGKILLed worker: no worker was loading slowa"
fi
# ------------------------------------------------------------------ 7. edges (from the review)
# an excluded table shows as excluded, and syncs again once it is selected again
wh_psql -c "ALTER SERVER ops3 OPTIONS (ADD exclude_tables 'quick', SET sync_interval '1 second')" 2>/dev/null ||
    wh_psql -c "ALTER SERVER ops3 OPTIONS (ADD exclude_tables 'quick', ADD sync_interval '1 second')"
if wait_until 20 eval "[ \"\$(q \"SELECT health FROM dbsync.status WHERE server = 'ops3' AND table_name = 'quick'\")\" = excluded ]"; then
    ok "excluded: status shows the table as excluded"; else not_ok "excluded: status shows the table as excluded"; fi
src_psql -c "INSERT INTO ops3.quick VALUES (3, 'while excluded', now())"
sleep 3
check "excluded: not synced meanwhile" [ "$(q "SELECT count(*) FROM ops3.quick")" = 2 ]
wh_psql -c "ALTER SERVER ops3 OPTIONS (DROP exclude_tables)"
if wait_until 20 eval "[ \"\$(wh_digest quick ops3)\" = \"\$(src_digest quick ops3)\" ]"; then
    ok "excluded, then selected again: the auto-sync syncs it again"
else not_ok "excluded, then selected again: the auto-sync syncs it again"; fi
check "selected again: health ok" is "SELECT health FROM dbsync.status WHERE server = 'ops3' AND table_name = 'quick'" ok
wh_psql -c "ALTER SERVER ops3 OPTIONS (DROP sync_interval)"
reset_gucs
# a history file cut short (a full disk) never stops a run: set aside as .bad
bad="$WH_DATADIR/pg_dbsync/$dbid.999999.1.1.aborted"
as_pg sh -c "printf 'dbsync aborted runs\n{\"run_id\": 1, \"ser' > '$bad'"
check "a broken history file: the run still works" is "SELECT count(*) FROM dbsync_run('ops', 'small')" 1
# a worker still ending its pass may hold the recovery lock (the run then
# skips recovery): a later run sets the file aside
set_aside() {
    [ -f "$bad.bad" ] && [ ! -f "$bad" ] && return 0
    q "SELECT count(*) FROM dbsync_run('ops', 'small')" >/dev/null
    return 1
}
if wait_until 15 set_aside; then
    ok "a broken history file: set aside as .bad"
else not_ok "a broken history file: set aside as .bad"; fi
as_pg rm -f "$bad.bad"
# a run that meets a table another run holds records it as skipped, and nothing aborted later
reload_big
slow_on ops.big
start_call big held
wh_psql -Atc "SELECT count(*) FROM dbsync_run('ops', 'big')" >/dev/null
q "SELECT pg_cancel_backend(${BPID:-0})" >/dev/null
wait "$CALL_PID" || true
slow_off ops.big
q "SELECT count(*) FROM dbsync_run('ops', 'small')" >/dev/null
check "held table: a skipped row, no aborted row for the skipping session" \
    is "SELECT count(*) FILTER (WHERE status = 'skipped' AND error LIKE 'another run%') || ' ' || count(*) FILTER (WHERE status = 'aborted' AND started_at > now() - interval '30 seconds') FROM dbsync.runs WHERE table_name = 'big' AND trigger = 'sql'" "1 0"
# a savepoint rolled back over a run: the run is aborted, not nothing
q "BEGIN; SAVEPOINT s; SELECT count(*) FROM dbsync_run('ops', 'small'); ROLLBACK TO s; COMMIT;" >/dev/null
q "SELECT count(*) FROM dbsync_run('ops', 'Bad table')" >/dev/null
check "savepoint rolled back: its run shows as aborted" \
    is "SELECT count(*) FROM dbsync.runs WHERE table_name = 'small' AND status = 'aborted' AND error LIKE '%rolled back%'" 1

wh_psql -c "DROP SERVER ops CASCADE; DROP SERVER ops3 CASCADE; DROP SCHEMA ops CASCADE; DROP SCHEMA ops3 CASCADE;" >/dev/null 2>&1 || true
[ "$failed" = 0 ]
