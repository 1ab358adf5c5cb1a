#!/usr/bin/env bash
# Fault injection against the PostgreSQL source (the YugabyteDB stand-in).
#
# Every case injects one fault into a running sync and then proves, by comparing
# the source and the warehouse row by row (COPY text of every column, in key
# order, both sessions in UTC), that the warehouse holds exactly the source's rows:
#
#   A  kill -9 of the whole source server in the middle of an initial load
#   B  pg_terminate_backend of the syncing backend mid-load (+ source changes
#      made while the load was interrupted)
#   C  immediate-mode restart of the warehouse mid-load
#   D  source frozen with SIGSTOP, sync stopped with pg_cancel_backend
#   E  source frozen with SIGSTOP, sync stopped by statement_timeout
#   F  source frozen with SIGSTOP, read_timeout '2' ends the sync by itself
#   K  source frozen, fast shutdown of the warehouse (the blocked sync must let it stop)
#   L  source frozen at connect time, connect_timeout bounds the wait
#   G  late commits: a transaction in flight during a sync (in-flight cap, lookback
#      0) and a row committed after a sync with an old updated_at (lookback)
#   H  ties on the cursor across batch boundaries (and across a resume)
#   I  deletes between runs (hard, soft, ignore; cursor and full tables)
#   J  schema changes between runs (column added, widened, dropped; table
#      dropped; new table)
#
# After a fault the committed state must be the last checkpoint (rows = the
# source's rows up to resume_key, nothing partial), and the next run must say
# mode 'resume' and upsert exactly the rows after that checkpoint.  Measured
# figures (time to detect / give up, rows re-read) are printed as "# FIGURE" lines.
# shellcheck disable=SC2034  # the driver interface (SRC_NS, ...) is read by lib/fault_common.sh
set -uo pipefail
# shellcheck source=test/lib/fault_common.sh
source "$(dirname "$0")/lib/fault_common.sh"

SRC_SCHEMA=fault_pg
SRV=fp

# ---------------------------------------------------------------- driver interface
# (see "driver interface" in lib/fault_common.sh)
SRC_NS=$SRC_SCHEMA
SRC_NOW="clock_timestamp()"
SRC_SERVER_OPTIONS="source_type 'postgresql', host '127.0.0.1', port '$SRC_PG_PORT', dbname '$SRC_DB', schema '$SRC_SCHEMA'"
# the defaults fit the rest; the read counter (src_rows_read) is exact: no slack

src_exec()     { src_psql -q -c "$1" >/dev/null; }
src_exec_utc() { PGOPTIONS='-c TimeZone=UTC' src_psql -q -c "$1" >/dev/null; }
src_val()      { src_psql -At -c "$1" 2>/dev/null || true; }
src_session()  { PGAPPNAME=$1 src_psql; }

# ---------------------------------------------------------------- source server control
FROZEN=$T_WORK/frozen.pids
src_pg_pids() {
    local pm
    pm=$(head -n 1 "$SRC_PG_DATADIR/postmaster.pid" 2>/dev/null) || return 1
    echo "$pm"
    ps -o pid= --ppid "$pm" | tr -d ' '
}
src_freeze() {
    src_pg_pids >"$FROZEN"
    # shellcheck disable=SC2046
    kill -STOP $(cat "$FROZEN")
}
src_thaw() {
    [[ -s $FROZEN ]] || return 0
    # shellcheck disable=SC2046
    kill -CONT $(cat "$FROZEN") 2>/dev/null || true
    rm -f "$FROZEN"
}
src_kill9() {
    SRC_PIDS=$(src_pg_pids)
    # shellcheck disable=SC2086
    kill -KILL $SRC_PIDS 2>/dev/null
}
# after kill -9: wait until the old postmaster is reaped (a zombie still holds
# its pid, and the new postmaster refuses to start while that pid exists), start it
src_restart_killed() {
    local pm=${SRC_PIDS%%$'\n'*}
    wait_until 20 eval "! kill -0 $pm" || diag "old postmaster $pm still exists"
    pg_server_start "$SRC_PG_DATADIR" "$SRC_PG_LOG"
}
cleanup() {
    src_thaw
    pg_server_running "$SRC_PG_DATADIR" || pg_server_start "$SRC_PG_DATADIR" "$SRC_PG_LOG" || true
}
trap cleanup EXIT

# src_rows_read TABLE: rows the source fetched through index scans of TABLE so far;
# a backend's counts are flushed when it exits, at the latest (src_reads_settle).
src_rows_read() {
    src_admin_psql -At -c "SELECT idx_tup_fetch FROM pg_stat_user_tables WHERE schemaname = '$SRC_SCHEMA' AND relname = '$1'" 2>/dev/null
}
src_reads_settle() {
    for _ in $(seq 1 50); do [[ $(remote_sessions) == 0 ]] && break; sleep 0.1; done
}
# remote_sessions: dbsync sessions at the source working on this test's schema.
remote_sessions() {
    src_admin_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbsync'
        AND datname = '$SRC_DB' AND query LIKE '%$SRC_SCHEMA%'" 2>/dev/null || echo "?"
}
remote_sessions_list() {
    src_admin_psql -At -c "SELECT pid, state, left(query, 120) FROM pg_stat_activity WHERE application_name = 'dbsync'"
}

# ---------------------------------------------------------------- comparison
# COPY text of the columns (COLS: space separated), both sessions in UTC
src_dump() {  # TABLE [WHERE] [COLS]
    local cols=${3:-$COLS}
    PGOPTIONS='-c TimeZone=UTC -c extra_float_digits=3' src_psql -c \
        "COPY (SELECT ${cols// /, } FROM $SRC_SCHEMA.$1 ${2:+WHERE $2} ORDER BY id) TO STDOUT"
}
wh_dump() {   # TABLE [WHERE] [COLS] [SCHEMA]
    local cols=${3:-$COLS}
    PGOPTIONS='-c TimeZone=UTC -c extra_float_digits=3' wh_psql -c \
        "COPY (SELECT ${cols// /, } FROM ${4:-$SRV}.$1 ${2:+WHERE $2} ORDER BY id) TO STDOUT"
}

# ---------------------------------------------------------------- source tables of G, H, I, J
src_create_late() {
    src_psql -q <<SQL >/dev/null
CREATE TABLE $SRC_SCHEMA.late (id int PRIMARY KEY, val text, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO $SRC_SCHEMA.late SELECT g, 'v' || g, now() - interval '1 hour' + g * interval '1 s' FROM generate_series(1, 100) g;
SQL
}
src_create_ties() {  # ROWS: three cursor values, each shared by ~2 batches' worth of rows;
    # every group boundary and every batch boundary fall inside a tie
    src_psql -q <<SQL >/dev/null
CREATE TABLE $SRC_SCHEMA.ties (id bigint PRIMARY KEY, val text, updated_at timestamptz NOT NULL);
INSERT INTO $SRC_SCHEMA.ties SELECT g, md5(g::text),
    timestamptz '2024-06-01 00:00:00+00' + ((g + $BATCH / 2) / ($BATCH * 2)) * interval '1 s'
  FROM generate_series(1, $1) g;
SQL
}
src_ties_summary() {
    src_val "SELECT string_agg(n || ' rows at ' || to_char(updated_at AT TIME ZONE 'UTC', 'HH24:MI:SS'), ', ' ORDER BY updated_at) FROM (SELECT updated_at, count(*) n FROM $SRC_SCHEMA.ties GROUP BY 1) s"
}
src_create_deletes_tables() {
    src_psql -q <<SQL >/dev/null
CREATE TABLE $SRC_SCHEMA.del_h (id bigint PRIMARY KEY, val text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO $SRC_SCHEMA.del_h SELECT g, 'v' || g, now() - interval '1 day' FROM generate_series(1, 2000) g;
CREATE TABLE $SRC_SCHEMA.del_s (LIKE $SRC_SCHEMA.del_h INCLUDING ALL);
INSERT INTO $SRC_SCHEMA.del_s SELECT * FROM $SRC_SCHEMA.del_h;
CREATE TABLE $SRC_SCHEMA.del_i (LIKE $SRC_SCHEMA.del_h INCLUDING ALL);
INSERT INTO $SRC_SCHEMA.del_i SELECT * FROM $SRC_SCHEMA.del_h;
CREATE TABLE $SRC_SCHEMA.del_f (id bigint PRIMARY KEY, val text);
INSERT INTO $SRC_SCHEMA.del_f SELECT g, 'v' || g FROM generate_series(1, 2000) g;
SQL
}
src_create_schema_tables() {
    src_psql -q <<SQL >/dev/null
CREATE TABLE $SRC_SCHEMA.sch (id bigint PRIMARY KEY, val varchar(10), note text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO $SRC_SCHEMA.sch SELECT g, 'v' || g, 'note ' || g, now() - interval '1 day' FROM generate_series(1, 1000) g;
CREATE TABLE $SRC_SCHEMA.sch_gone (id int PRIMARY KEY, val text);
INSERT INTO $SRC_SCHEMA.sch_gone SELECT g, 'v' || g FROM generate_series(1, 50) g;
SQL
}
src_widen_sch() { src_exec "ALTER TABLE $SRC_SCHEMA.sch ALTER COLUMN val TYPE varchar(60), ALTER COLUMN extra TYPE bigint"; }
src_create_sch_new() {
    src_exec "CREATE TABLE $SRC_SCHEMA.sch_new (id int PRIMARY KEY, val text, updated_at timestamptz DEFAULT clock_timestamp());
              INSERT INTO $SRC_SCHEMA.sch_new SELECT g, 'n' || g FROM generate_series(1, 300) g"
}

# ---------------------------------------------------------------- G1: the in-flight cap
# The writer (fd 7) inserts with updated_at = now(), the start of its transaction;
# lookback is 0, so only the in-flight cap can catch the row: the run made while
# the transaction is open must hold the stored cursor at or below its start.
writer_in_xact() {
    [[ $(src_admin_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'late_writer' AND backend_xid IS NOT NULL") == 1 ]]
}
late_writer_begin() {
    echo "BEGIN; INSERT INTO $SRC_SCHEMA.late VALUES (1001, 'in flight during the sync', now());" >&7
    wait_until 10 writer_in_xact ||
        diag "the late writer's transaction did not show up"
    XSTART=$(src_admin_psql -At -c "SELECT to_char(xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM pg_stat_activity WHERE application_name = 'late_writer'")
}
late_open_checks() {
    local c=$1 cur maxsrc
    cur=$(cursor_utc late)
    maxsrc=$(src_val "SELECT to_char(max(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM $SRC_SCHEMA.late")
    if [[ -n $cur && ! $cur > $XSTART ]]; then
        ok "$c: the stored cursor is held at or below the start of the open transaction ($cur <= $XSTART)"
    else
        not_ok "$c: the stored cursor is held at or below the start of the open transaction (cursor $cur, open transaction started $XSTART)"
    fi
    figure "$c cursor held back" "cursor $cur while the newest committed row has $maxsrc and the open transaction started $XSTART"
}

# ---------------------------------------------------------------- H: holding the load
# The session on fd 8 is ready once it holds ACCESS SHARE; its ACCESS EXCLUSIVE
# request then queues the load's next batch behind it.
ties_lock_prepare() { echo "BEGIN; LOCK TABLE $SRC_SCHEMA.ties IN ACCESS SHARE MODE;" >&8; }
ties_lock()         { echo "LOCK TABLE $SRC_SCHEMA.ties IN ACCESS EXCLUSIVE MODE;" >&8; }
ties_load_blocked() {
    [[ $(src_admin_psql -At -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE a.application_name = 'dbsync' AND NOT l.granted") -ge 1 ]]
}
ties_unlock()       { echo "COMMIT;" >&8; }

# ---------------------------------------------------------------- setup
src_psql -q <<SQL >/dev/null || { echo "not ok 1 - source setup"; exit 1; }
DROP SCHEMA IF EXISTS $SRC_SCHEMA CASCADE;
CREATE SCHEMA $SRC_SCHEMA;
SET search_path = $SRC_SCHEMA;
CREATE TABLE template (id bigint PRIMARY KEY, val text,
                       updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO template SELECT g, md5(g::text), timestamptz '2024-01-01 00:00:00+00' + g * interval '1 ms'
  FROM generate_series(1, $ROWS) g;
SQL
for t in $FAULT_TABLES; do
    src_exec "CREATE TABLE $SRC_SCHEMA.$t (LIKE $SRC_SCHEMA.template INCLUDING ALL);
              INSERT INTO $SRC_SCHEMA.$t SELECT * FROM $SRC_SCHEMA.template;"
done

use_wh_db fault_pg
src_server $SRV "batch_size '$BATCH', tables 'big%'" || { echo "not ok 1 - warehouse setup"; exit 1; }
diag "source: $ROWS rows per table, batch_size $BATCH, PostgreSQL source on port $SRC_PG_PORT"

# ---------------------------------------------------------------- the cases
run_load_faults                                    # A B C D E F K L
case_late_commits fpl '0 seconds' G1_inflight_cap "lookback 0"   # G
case_ties fpt                                      # H
case_deletes fd fdel                               # I
case_schema_changes fsch                           # J

print_figures
((T_FAILED == 0))
