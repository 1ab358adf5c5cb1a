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
set -uo pipefail
source "$(dirname "$0")/lib/fault_common.sh"

SRC_SCHEMA=fault_pg
ROWS=${FAULT_ROWS:-500000}
BATCH=${FAULT_BATCH:-20000}
CANCEL_LIMIT=3        # seconds: the contract's 2 s plus scheduling margin
SRV=fp

# ---------------------------------------------------------------- source server control
FROZEN=$T_WORK/frozen.pids
src_pg_pids() {
    local pm
    pm=$(head -n 1 "$SRC_PG_DATADIR/postmaster.pid" 2>/dev/null) || return 1
    echo "$pm"
    ps -o pid= --ppid "$pm" | tr -d ' '
}
freeze_source() {
    src_pg_pids >"$FROZEN"
    # shellcheck disable=SC2046
    kill -STOP $(cat "$FROZEN")
}
thaw_source() {
    [[ -s $FROZEN ]] || return 0
    # shellcheck disable=SC2046
    kill -CONT $(cat "$FROZEN") 2>/dev/null || true
    rm -f "$FROZEN"
}
kill9_source() {
    SRC_PIDS=$(src_pg_pids)
    # shellcheck disable=SC2086
    kill -KILL $SRC_PIDS 2>/dev/null
}
# after kill -9: wait until the old postmaster is reaped (a zombie still holds
# its pid, and the new postmaster refuses to start while that pid exists)
wait_source_gone() {
    local pm=${SRC_PIDS%%$'\n'*}
    wait_until 20 eval "! kill -0 $pm" || diag "old postmaster $pm still exists"
}
cleanup() {
    thaw_source
    pg_server_running "$SRC_PG_DATADIR" || pg_server_start "$SRC_PG_DATADIR" "$SRC_PG_LOG" || true
}
trap cleanup EXIT

src_val() { src_psql -At -c "$1" 2>/dev/null || true; }
# src_fetches TABLE: rows the source fetched through index scans of TABLE so far
# (the batches of a load are primary-key index scans); a backend's counts are
# flushed when it exits, at the latest.
src_fetches() {
    src_admin_psql -At -c "SELECT idx_tup_fetch FROM pg_stat_user_tables WHERE schemaname = '$SRC_SCHEMA' AND relname = '$1'" 2>/dev/null
}
# remote_sessions: dbsync sessions at the source working on this test's schema.
remote_sessions() {
    src_admin_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbsync'
        AND datname = '$SRC_DB' AND query LIKE '%$SRC_SCHEMA%'" 2>/dev/null || echo "?"
}
# wait_remote_gone CASE [TABLE]: the source's dbsync session ends; figure of how
# long it took; then reads the source's fetch counter of TABLE (FETCH_R1).
wait_remote_gone() {
    local t0 n
    t0=$(now)
    for _ in $(seq 1 100); do
        n=$(remote_sessions)
        [[ $n == 0 ]] && break
        sleep 0.1
    done
    if [[ $n == 0 ]]; then
        ok "$1: no dbsync query left running at the source"
        figure "$1 remote query gone after" "$(elapsed "$t0" "$(now)") s (measured from after the client returned)"
        [[ -n ${2:-} ]] && FETCH_R1=$(src_fetches "$2")
    else
        not_ok "$1: no dbsync query left running at the source ($n still there after 10 s)"
        src_admin_psql -At -c "SELECT pid, state, left(query, 120) FROM pg_stat_activity WHERE application_name = 'dbsync'" | while read -r l; do diag "$l"; done
    fi
}

# ---------------------------------------------------------------- comparison
COLS="id, val, updated_at"
src_dump() {  # TABLE [WHERE] [COLS]
    PGOPTIONS='-c TimeZone=UTC -c extra_float_digits=3' src_psql -c \
        "COPY (SELECT ${3:-$COLS} FROM $SRC_SCHEMA.$1 ${2:+WHERE $2} ORDER BY id) TO STDOUT"
}
wh_dump() {   # TABLE [WHERE] [COLS] [SCHEMA]
    PGOPTIONS='-c TimeZone=UTC -c extra_float_digits=3' wh_psql -c \
        "COPY (SELECT ${3:-$COLS} FROM ${4:-$SRV}.$1 ${2:+WHERE $2} ORDER BY id) TO STDOUT"
}
# same NAME TABLE [SRC_WHERE] [WH_WHERE] [COLS] [LOCAL_SCHEMA]
same() {
    local q1 q2
    printf -v q1 'src_dump %q %q %q' "$2" "${3:-}" "${5:-$COLS}"
    printf -v q2 'wh_dump %q %q %q %q' "$2" "${4:-}" "${5:-$COLS}" "${6:-$SRV}"
    compare "$1" "$q1" "$q2"
}

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
for t in big_kill big_term big_crash big_cancel big_timeout big_readto big_shut; do
    src_psql -q -c "CREATE TABLE $SRC_SCHEMA.$t (LIKE $SRC_SCHEMA.template INCLUDING ALL);
                    INSERT INTO $SRC_SCHEMA.$t SELECT * FROM $SRC_SCHEMA.template;" >/dev/null
done

use_wh_db fault_pg
wh_psql -q <<SQL >/dev/null || { echo "not ok 1 - warehouse setup"; exit 1; }
CREATE SERVER fp FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql',
    host '127.0.0.1', port '$SRC_PG_PORT', dbname '$SRC_DB', schema '$SRC_SCHEMA',
    batch_size '$BATCH', tables 'big%');
CREATE USER MAPPING FOR postgres SERVER fp OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
diag "source: $ROWS rows per table, batch_size $BATCH, PostgreSQL source on port $SRC_PG_PORT"

# ---------------------------------------------------------------- load-fault skeleton
# start_load CASE TABLE [PRE_SQL]: CALL dbsync_sync in the background.
start_load() {
    local app=$1 table=$2 pre=${3:-}
    FETCH_R0=$(src_fetches "$table") FETCH_R1=
    if [[ -n $pre ]]; then bg_start "$app" "$pre" "CALL dbsync_sync('$SRV', '$table')"
    else bg_start "$app" "CALL dbsync_sync('$SRV', '$table')"; fi
    LOAD_PID=$BG_PID
}

# mid_load CASE TABLE MIN_ROWS: wait until a checkpoint covering MIN_ROWS is
# committed and the next batch is streaming; sample how far it got.
mid_load() {
    local c=$1 table=$2 min=$3
    if ! wait_ckpt_fast "$c" "$table" "$min" 60; then
        poll_close
        not_ok "$c: the load reached a checkpoint of >= $min rows (it did not within 60 s)"
        diag "$(cat "$T_WORK/$c.err" 2>/dev/null)"
        return 1
    fi
    FAULT_AT_START=$(elapsed "$BG_START" "$(now)")
    return 0
}

# committed_state CASE TABLE: after the fault, the warehouse holds exactly the last
# checkpoint: count = rows_total = resume_key (ids are 1..N), 0 < it < ROWS, and
# those rows equal the source's.  Sets CKPT.
committed_state() {
    local c=$1 table=$2 pending rk total cnt
    poll_close
    pending=$(st initial_load_pending "$table")
    rk=$(wh_val "SELECT resume_key[1] FROM dbsync.tables WHERE server = '$SRV' AND table_name = '$table'")
    total=$(st rows_total "$table")
    cnt=$(wh_val "SELECT count(*) FROM $SRV.$table")
    CKPT=${rk:-0}
    if [[ $pending == t && -n $rk && $rk == "$total" && $cnt == "$total" ]] && ((rk > 0 && rk <= ROWS)) &&
        ((rk % BATCH == 0)); then
        ok "$c: committed state is the last checkpoint (resume_key = rows_total = local rows = $rk)"
    else
        not_ok "$c: committed state is the last checkpoint"
        diag "initial_load_pending=$pending resume_key=$rk rows_total=$total local_rows=$cnt (batch $BATCH, total $ROWS)"
    fi
    figure "$c checkpoint" "sampled before the fault: $CKPT_SEEN rows committed + ${COPY_SEEN:-?} rows of the next batch streamed (fault ${FAULT_AT_START}s after start); committed after the fault: $CKPT rows"
}

# resume_case CASE TABLE: the next run resumes after the checkpoint, re-reads only
# the rows after it, and the warehouse then equals the source.
resume_case() {
    local c=$1 table=$2 expect up t0 mode r2 r3 extra lm lr
    expect=$(src_val "SELECT count(*) FROM $SRC_SCHEMA.$table WHERE id > $CKPT")
    r2=$(src_fetches "$table")
    t0=$(now)
    if ! sync_call "$table"; then
        not_ok "$c: the next run resumes"
        return 1
    fi
    figure "$c resume run took" "$(elapsed "$t0" "$(now)") s"
    up=$(upserted_of "$SYNC_NOTICE")
    mode=${SYNC_NOTICE%%,*}
    if [[ $SYNC_NOTICE == "resume, ok, "* ]]; then
        ok "$c: the next run says mode 'resume', status ok"
    else
        not_ok "$c: the next run says mode 'resume', status ok (got: $SYNC_NOTICE)"
    fi
    lm=$(st last_mode "$table") lr=$(st last_rows_upserted "$table")
    if [[ $lm == resume && $lr == "$up" ]]; then
        ok "$c: dbsync.status records the resume (last_mode '$lm', last_rows_upserted $lr)"
    else
        not_ok "$c: dbsync.status records the resume (expected last_mode 'resume', last_rows_upserted $up; got '$lm', $lr)"
    fi
    if [[ -n $up && $up == "$expect" ]]; then
        ok "$c: the resume upserted exactly the $expect rows after the checkpoint (never from zero, none twice)"
    else
        not_ok "$c: the resume upserted exactly the rows after the checkpoint (expected $expect, got '${up}' in mode '$mode')"
    fi
    figure "$c rows re-read by the resume" "${up:-?} = $ROWS total - $CKPT checkpointed; upserted by the resume minus rows after the checkpoint: $(( ${up:-0} - expect )); work lost = the uncommitted batch (${COPY_SEEN:-?} rows streamed when sampled, < batch_size $BATCH)"
    # what the source read: the killed run beyond its checkpoint, and the resume
    if [[ -n ${FETCH_R1:-} && -n ${FETCH_R0:-} ]]; then
        for _ in $(seq 1 50); do [[ $(remote_sessions) == 0 ]] && break; sleep 0.1; done
        r3=$(src_fetches "$table")
        extra=$((FETCH_R1 - FETCH_R0 - CKPT))
        figure "$c source rows read twice" "the interrupted run read $((FETCH_R1 - FETCH_R0)) rows at the source = $CKPT committed + $extra of the interrupted batch; the resume read $((r3 - r2)) (rows after the checkpoint: $expect)"
        if (((r3 - r2) <= expect + 0)); then
            ok "$c: the resume read only the rows after the checkpoint at the source ($((r3 - r2)) for $expect)"
        else
            not_ok "$c: the resume read only the rows after the checkpoint at the source (it read $((r3 - r2)), rows after the checkpoint: $expect)"
        fi
        if ((extra >= 0 && extra <= BATCH)); then
            ok "$c: work repeated at the source is at most one batch ($extra <= $BATCH rows)"
        else
            not_ok "$c: work repeated at the source is at most one batch ($extra rows, batch_size $BATCH)"
        fi
    fi
    [[ ${3:-} == no_compare ]] || same "$c: warehouse equals source after the resume" "$table"
}

# ======================================================================== A
# kill -9 of the source server mid-load
c=A_kill9_source
start_load $c big_kill
if mid_load $c big_kill $((3 * BATCH)); then
    t0=$(now)
    kill9_source
    if bg_wait "$LOAD_PID" 30; then
        figure "$c time to detect" "$(elapsed "$t0" "$BG_END") s from kill -9 of the source to the end of the CALL"
        n=$(notice_of $c big_kill)
        err=$(st last_error big_kill)
        if [[ $n == *", error, "* && $(st last_status big_kill) == error && -n $err ]]; then
            ok "$c: the run reports an error for the table and records it in dbsync.status"
        else
            not_ok "$c: the run reports an error for the table and records it in dbsync.status"
            diag "notice: $n; psql rc $BG_RC; stderr: $(head -c 600 "$T_WORK/$c.err")"
        fi
        diag "last_error: $err"
    else
        not_ok "$c: the run ends after the source died (still running after 30 s)"
        bg_kill "$LOAD_PID" $c
    fi
    committed_state $c big_kill
    wait_source_gone
    pg_server_start "$SRC_PG_DATADIR" "$SRC_PG_LOG" || { not_ok "$c: source restarts"; exit 1; }
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_kill "id <= $CKPT"
    resume_case $c big_kill
else
    bg_kill "$LOAD_PID" $c
fi

# ======================================================================== B
# pg_terminate_backend of the syncing backend mid-load; then the source changes
# while the load is interrupted (rows updated and deleted on both sides of the
# checkpoint, a row inserted)
c=B_terminate_backend
start_load $c big_term
if mid_load $c big_term $((3 * BATCH)); then
    # through the poller's open connection: a new psql costs several batches here
    t0=$(now)
    poll_q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$c'" >/dev/null
    if bg_wait "$LOAD_PID" 30; then
        figure "$c time to detect" "$(elapsed "$t0" "$BG_END") s from pg_terminate_backend to the end of the client"
        if grep -q "terminating connection due to administrator command" "$T_WORK/$c.err"; then
            ok "$c: the backend was terminated mid-load"
        else
            not_ok "$c: the backend was terminated mid-load"
            diag "psql rc $BG_RC: $(head -c 600 "$T_WORK/$c.err")"
        fi
    else
        not_ok "$c: the backend ends after pg_terminate_backend (still running after 30 s)"
        bg_kill "$LOAD_PID" $c
    fi
    wait_remote_gone $c big_term
    committed_state $c big_term
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_term "id <= $CKPT"
    # changes while the load is interrupted
    src_psql -q -c "UPDATE $SRC_SCHEMA.big_term SET val = 'changed', updated_at = clock_timestamp()
                      WHERE id IN (10, $((CKPT - 1)), $CKPT, $((CKPT + 1)), $((ROWS - 1)));
                    DELETE FROM $SRC_SCHEMA.big_term WHERE id IN (15, $((CKPT + 7)));
                    INSERT INTO $SRC_SCHEMA.big_term VALUES ($((ROWS + 1)), 'new', clock_timestamp());" >/dev/null
    expect=$(src_val "SELECT count(*) FROM $SRC_SCHEMA.big_term WHERE id > $CKPT")
    # rows changed below the checkpoint come with the next incremental run
    # (the load's high-water mark was taken when it started)
    resume_case $c big_term no_compare
    if sync_call big_term && [[ $SYNC_NOTICE == "incremental, ok, "* ]]; then
        ok "$c: the next run is incremental ($SYNC_NOTICE)"
    else
        not_ok "$c: the next run is incremental (got: ${SYNC_NOTICE:-})"
    fi
    same "$c: warehouse equals source after resume + incremental (changes made during the interruption)" big_term
else
    bg_kill "$LOAD_PID" $c
fi

# ======================================================================== C
# immediate-mode restart of the warehouse mid-load
c=C_warehouse_immediate_restart
start_load $c big_crash
if mid_load $c big_crash $((3 * BATCH)); then
    t0=$(now)
    pg_server_stop "$WH_DATADIR" immediate
    t1=$(now)
    if bg_wait "$LOAD_PID" 30; then
        figure "$c time to detect" "$(elapsed "$t0" "$BG_END") s from pg_ctl stop -m immediate to the client seeing the connection gone (stop took $(elapsed "$t0" "$t1") s)"
    else
        not_ok "$c: the client ends when the warehouse goes down"
        kill "$LOAD_PID" 2>/dev/null || true
    fi
    t0=$(now)
    pg_server_start "$WH_DATADIR" "$WH_LOG" || { not_ok "$c: warehouse restarts"; exit 1; }
    figure "$c warehouse crash recovery + start" "$(elapsed "$t0" "$(now)") s"
    ok "$c: the warehouse recovered and accepts connections"
    wait_remote_gone $c big_crash
    committed_state $c big_crash
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_crash "id <= $CKPT"
    resume_case $c big_crash
else
    bg_kill "$LOAD_PID" $c
fi

# ======================================================================== D
# frozen source (SIGSTOP) + pg_cancel_backend
c=D_frozen_source_cancel
start_load $c big_cancel
if mid_load $c big_cancel $((2 * BATCH)); then
    freeze_source
    sleep 1    # the backend drains what the kernel buffered, then waits on the socket
    bpid=$(backend_pid $c)
    wstate=$(wh_val "SELECT wait_event_type || ':' || wait_event FROM pg_stat_activity WHERE pid = '${bpid:-0}'")
    diag "backend $bpid waits on: $wstate"
    t0=$(now)
    poll_q "SELECT pg_cancel_backend($bpid)" >/dev/null
    if bg_wait "$LOAD_PID" 20; then
        dt=$(elapsed "$t0" "$BG_END")
        figure "$c time to give up" "$dt s from pg_cancel_backend to the end of the CALL (source frozen)"
        if lt "$dt" "$CANCEL_LIMIT"; then ok "$c: the cancel ended the sync within ${CANCEL_LIMIT}s (${dt}s)"
        else not_ok "$c: the cancel ended the sync within ${CANCEL_LIMIT}s (took ${dt}s)"; fi
        if grep -q "canceling statement due to user request" "$T_WORK/$c.err" && ((BG_RC != 0)); then
            ok "$c: the CALL fails with 'canceling statement due to user request'"
        else
            not_ok "$c: the CALL fails with 'canceling statement due to user request'"
            diag "psql rc $BG_RC: $(head -c 600 "$T_WORK/$c.err")"
        fi
    else
        not_ok "$c: the cancel ended the sync (still running 20 s after pg_cancel_backend)"
        bg_kill "$LOAD_PID" $c
    fi
    # nothing of the interrupted batch is visible (checked while the source is still frozen)
    committed_state $c big_cancel
    thaw_source
    wait_remote_gone $c big_cancel
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_cancel "id <= $CKPT"
    resume_case $c big_cancel
else
    bg_kill "$LOAD_PID" $c
fi
thaw_source

# ======================================================================== E
# frozen source (SIGSTOP) + statement_timeout
c=E_frozen_source_statement_timeout
TIMEOUT_S=3   # long enough for the first checkpoint on a busy machine; the source freezes right after it
start_load $c big_timeout "SET statement_timeout = '${TIMEOUT_S}s'"
if mid_load $c big_timeout "$BATCH"; then
    freeze_source
    tf=$(elapsed "$BG_START" "$(now)")
    if bg_wait "$LOAD_PID" 20; then
        total_s=$(elapsed "$BG_START" "$BG_END")
        over=$(awk -v a="$total_s" -v t="$TIMEOUT_S" 'BEGIN { printf "%.3f", a - t }')
        figure "$c time to give up" "CALL ended ${total_s}s after it started: ${over}s past the ${TIMEOUT_S}s statement_timeout (source frozen at ${tf}s)"
        if ! lt "$tf" "$TIMEOUT_S"; then
            not_ok "$c: setup: the source froze before the timeout (froze at ${tf}s)"
        fi
        if lt "$over" "$CANCEL_LIMIT"; then ok "$c: statement_timeout ended the sync within ${CANCEL_LIMIT}s of the deadline (${over}s)"
        else not_ok "$c: statement_timeout ended the sync within ${CANCEL_LIMIT}s of the deadline (${over}s)"; fi
        if grep -q "canceling statement due to statement timeout" "$T_WORK/$c.err" && ((BG_RC != 0)); then
            ok "$c: the CALL fails with 'canceling statement due to statement timeout'"
        else
            not_ok "$c: the CALL fails with 'canceling statement due to statement timeout'"
            diag "psql rc $BG_RC: $(head -c 600 "$T_WORK/$c.err")"
        fi
    else
        not_ok "$c: statement_timeout ended the sync (still running 20 s later)"
        bg_kill "$LOAD_PID" $c
    fi
    committed_state $c big_timeout
    thaw_source
    wait_remote_gone $c big_timeout
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_timeout "id <= $CKPT"
    resume_case $c big_timeout
else
    bg_kill "$LOAD_PID" $c
fi
thaw_source

# ======================================================================== F
# frozen source (SIGSTOP) + read_timeout '2': no cancel, the sync gives up itself
c=F_frozen_source_read_timeout
READ_TIMEOUT=2
wh_psql -q -c "ALTER SERVER fp OPTIONS (ADD read_timeout '$READ_TIMEOUT')"
start_load $c big_readto
if mid_load $c big_readto $((2 * BATCH)); then
    freeze_source
    t0=$(now)
    if bg_wait "$LOAD_PID" 30; then
        dt=$(elapsed "$t0" "$BG_END")
        figure "$c time to give up" "$dt s from SIGSTOP of the source to the end of the CALL (read_timeout ${READ_TIMEOUT}s)"
        limit=$((READ_TIMEOUT + 2))
        if lt "$dt" "$limit"; then ok "$c: read_timeout ended the sync within ${limit}s of the freeze (${dt}s)"
        else not_ok "$c: read_timeout ended the sync within ${limit}s of the freeze (${dt}s)"; fi
        n=$(notice_of $c big_readto)
        err=$(st last_error big_readto)
        if [[ $n == *", error, "* && $(st last_status big_readto) == error && $err == *"timed out"* ]]; then
            ok "$c: the table's run ends in an error row ('timed out ...') recorded in dbsync.status"
        else
            not_ok "$c: the table's run ends in an error row ('timed out ...') recorded in dbsync.status"
            diag "notice: $n; psql rc $BG_RC; stderr: $(head -c 600 "$T_WORK/$c.err")"
        fi
        diag "last_error: $err"
    else
        not_ok "$c: read_timeout ended the sync (still running 30 s after the freeze)"
        bg_kill "$LOAD_PID" $c
    fi
    committed_state $c big_readto
    thaw_source
    wait_remote_gone $c big_readto
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_readto "id <= $CKPT"
    wh_psql -q -c "ALTER SERVER fp OPTIONS (DROP read_timeout)"
    resume_case $c big_readto
else
    bg_kill "$LOAD_PID" $c
fi
thaw_source

# ======================================================================== K
# frozen source + fast shutdown of the warehouse: the blocked backend must exit
# promptly (contract: shutdown interrupts a sync waiting on the network)
c=K_frozen_source_shutdown
start_load $c big_shut
if mid_load $c big_shut $((2 * BATCH)); then
    freeze_source
    sleep 1
    t0=$(now)
    (cd / && as_pg "$PG_BINDIR/pg_ctl" -D "$WH_DATADIR" -m fast -w -t 20 stop >/dev/null 2>&1)
    src=$?
    dt=$(elapsed "$t0" "$(now)")
    figure "$c time to give up" "$dt s for pg_ctl stop -m fast of the warehouse while the sync waited on the frozen source"
    if ((src == 0)) && lt "$dt" "$CANCEL_LIMIT"; then ok "$c: fast shutdown completed within ${CANCEL_LIMIT}s (${dt}s)"
    else not_ok "$c: fast shutdown completed within ${CANCEL_LIMIT}s (pg_ctl rc $src, ${dt}s)"; fi
    bg_wait "$LOAD_PID" 10 || kill "$LOAD_PID" 2>/dev/null
    pg_server_running "$WH_DATADIR" && pg_server_stop "$WH_DATADIR" immediate
    thaw_source
    pg_server_start "$WH_DATADIR" "$WH_LOG" || { not_ok "$c: warehouse restarts"; exit 1; }
    wait_remote_gone $c big_shut
    committed_state $c big_shut
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_shut "id <= $CKPT"
    resume_case $c big_shut
else
    bg_kill "$LOAD_PID" $c
fi
thaw_source

# ======================================================================== L
# frozen source at connect time: connect_timeout '2' bounds the wait
c=L_frozen_source_connect_timeout
wh_psql -q -c "ALTER SERVER $SRV OPTIONS (ADD connect_timeout '2')"
before=$(wh_val "SELECT count(*) FROM $SRV.big_kill")
freeze_source
t0=$(now)
r=$(timeout 30 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$WH_PORT" -U postgres -d "$WH_DB" \
        -c "SELECT concat_ws('|', status, message) FROM dbsync_run('$SRV', 'big_kill')" 2>&1)
dt=$(elapsed "$t0" "$(now)")
thaw_source
figure "$c time to give up" "$dt s for a run against a frozen source with connect_timeout 2"
if lt "$dt" 4; then ok "$c: the run ends within 4s (${dt}s)"; else not_ok "$c: the run ends within 4s (${dt}s)"; fi
if [[ $r == error\|* && $r == *"time"* ]]; then ok "$c: the run reports an error row about the timeout"
else not_ok "$c: the run reports an error row about the timeout (got: $r)"; fi
diag "result: $r"
[[ $(st last_status big_kill) == error ]] && ok "$c: the error is recorded in dbsync.status" ||
    not_ok "$c: the error is recorded in dbsync.status (last_status $(st last_status big_kill))"
[[ $(wh_val "SELECT count(*) FROM $SRV.big_kill") == "$before" ]] && ok "$c: already-synced data is intact" ||
    not_ok "$c: already-synced data is intact"
wh_psql -q -c "ALTER SERVER $SRV OPTIONS (DROP connect_timeout)"

# ======================================================================== G
# late commits
SRV=fpl
src_psql -q <<SQL >/dev/null
CREATE TABLE $SRC_SCHEMA.late (id int PRIMARY KEY, val text, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO $SRC_SCHEMA.late SELECT g, 'v' || g, now() - interval '1 hour' + g * interval '1 s' FROM generate_series(1, 100) g;
SQL
wh_psql -q <<SQL >/dev/null
CREATE SERVER fpl FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql',
    host '127.0.0.1', port '$SRC_PG_PORT', dbname '$SRC_DB', schema '$SRC_SCHEMA',
    tables 'late', lookback '0 seconds');
CREATE USER MAPPING FOR postgres SERVER fpl OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
sync_call late
same "G_late: initial load" late

# G1: a transaction open during a sync commits afterwards with updated_at from its
# start; lookback 0, so only the in-flight cap can catch it.
c=G1_inflight_cap
fifo=$T_WORK/late.fifo
rm -f "$fifo"; mkfifo "$fifo"
PGAPPNAME=late_writer src_psql <"$fifo" >"$T_WORK/late_writer.out" 2>&1 &
wpid=$!
exec 7>"$fifo"
echo "BEGIN; INSERT INTO $SRC_SCHEMA.late VALUES (1001, 'in flight during the sync', now());" >&7
writer_in_xact() { [[ $(src_admin_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'late_writer' AND backend_xid IS NOT NULL") == 1 ]]; }
wait_until 10 writer_in_xact ||
    diag "the late writer's transaction did not show up"
xstart=$(src_admin_psql -At -c "SELECT to_char(xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM pg_stat_activity WHERE application_name = 'late_writer'")
sleep 0.05
src_psql -q -c "INSERT INTO $SRC_SCHEMA.late VALUES (1002, 'committed before the sync', clock_timestamp())"
sync_call late
cur=$(wh_val "SELECT to_char(cursor_value::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM dbsync.status WHERE server = 'fpl' AND table_name = 'late'")
maxsrc=$(src_val "SELECT to_char(max(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM $SRC_SCHEMA.late")
if [[ -n $cur && ! $cur > $xstart ]]; then
    ok "$c: the stored cursor is held at or below the start of the open transaction ($cur <= $xstart)"
else
    not_ok "$c: the stored cursor is held at or below the start of the open transaction (cursor $cur, open transaction started $xstart)"
fi
figure "$c cursor held back" "cursor $cur while the newest committed row has $maxsrc and the open transaction started $xstart"
echo "COMMIT;" >&7
exec 7>&-
wait "$wpid" 2>/dev/null || true
sync_call late
diag "after the late commit: $SYNC_NOTICE"
same "$c: the row of the transaction in flight during the sync arrives (lookback 0)" late

# G2: a row committed after a sync with updated_at 30 s below the stored cursor:
# lookback '1 minute' reads it.
c=G2_lookback
wh_psql -q -c "ALTER SERVER fpl OPTIONS (SET lookback '1 minute')"
cur=$(wh_val "SELECT cursor_value FROM dbsync.status WHERE server = 'fpl' AND table_name = 'late'")
src_psql -q -c "INSERT INTO $SRC_SCHEMA.late VALUES (1003, 'late by 30 s', '$cur'::timestamptz - interval '30 s');
                UPDATE $SRC_SCHEMA.late SET val = 'updated late by 20 s', updated_at = '$cur'::timestamptz - interval '20 s' WHERE id = 1002"
sync_call late
diag "stored cursor $cur; run: $SYNC_NOTICE"
same "$c: rows committed after the sync with updated_at within lookback below the cursor arrive" late

# ======================================================================== H
# ties on the cursor across batch boundaries
SRV=fpt
c=H_ties
TIE_ROWS=$((BATCH * 6))
src_psql -q <<SQL >/dev/null
CREATE TABLE $SRC_SCHEMA.ties (id bigint PRIMARY KEY, val text, updated_at timestamptz NOT NULL);
-- three cursor values, each shared by ~2 batches' worth of rows; every group
-- boundary and every batch boundary fall inside a tie
INSERT INTO $SRC_SCHEMA.ties SELECT g, md5(g::text),
    timestamptz '2024-06-01 00:00:00+00' + ((g + $BATCH / 2) / ($BATCH * 2)) * interval '1 s'
  FROM generate_series(1, $TIE_ROWS) g;
SQL
wh_psql -q <<SQL >/dev/null
CREATE SERVER fpt FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql',
    host '127.0.0.1', port '$SRC_PG_PORT', dbname '$SRC_DB', schema '$SRC_SCHEMA',
    tables 'ties', batch_size '$BATCH', lookback '0 seconds');
CREATE USER MAPPING FOR postgres SERVER fpt OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
diag "ties: $(src_val "SELECT string_agg(n || ' rows at ' || to_char(updated_at AT TIME ZONE 'UTC', 'HH24:MI:SS'), ', ' ORDER BY updated_at) FROM (SELECT updated_at, count(*) n FROM $SRC_SCHEMA.ties GROUP BY 1) s")"
# hold the load after its first checkpoint (an ACCESS EXCLUSIVE lock at the source
# blocks the next batch), terminate it there, resume: the resume boundary lies in a tie
lfifo=$T_WORK/ties.fifo
rm -f "$lfifo"; mkfifo "$lfifo"
PGAPPNAME=ties_locker src_psql <"$lfifo" >"$T_WORK/ties_locker.out" 2>&1 &
lpid=$!
exec 8>"$lfifo"
echo "BEGIN; LOCK TABLE $SRC_SCHEMA.ties IN ACCESS SHARE MODE;" >&8   # nothing yet; session ready
start_load H_ties ties
if CKPT_SEEN=$(wait_checkpoint ties "$BATCH" 60); then
    echo "LOCK TABLE $SRC_SCHEMA.ties IN ACCESS EXCLUSIVE MODE;" >&8
    load_blocked() { [[ $(src_admin_psql -At -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE a.application_name = 'dbsync' AND NOT l.granted") -ge 1 ]]; }
    wait_until 10 load_blocked || diag "the load did not block on the lock"
    wh_val "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'H_ties'" >/dev/null
    bg_wait "$LOAD_PID" 20 || bg_kill "$LOAD_PID" H_ties
fi
echo "COMMIT;" >&8
exec 8>&-
wait "$lpid" 2>/dev/null || true
CKPT=$(wh_val "SELECT coalesce(resume_key[1], '0') FROM dbsync.tables WHERE server = 'fpt' AND table_name = 'ties'")
diag "load held and terminated after checkpoint at id $CKPT (the tie at that key continues into the next batch)"
ROWS_SAVE=$ROWS; ROWS=$TIE_ROWS
if ((CKPT > 0)); then
    resume_case $c ties
else
    not_ok "$c: the load was interrupted after a checkpoint (resume_key $CKPT)"
fi
ROWS=$ROWS_SAVE
tmax=$(wh_val "SELECT cursor_value FROM dbsync.status WHERE server = 'fpt' AND table_name = 'ties'")
diag "stored cursor after the load: $tmax"
# new rows tying with the stored cursor, and an update that keeps the tied value
src_psql -q -c "INSERT INTO $SRC_SCHEMA.ties SELECT g, 'tie ' || g, '$tmax' FROM generate_series($((TIE_ROWS + 1)), $((TIE_ROWS + 10))) g;
                UPDATE $SRC_SCHEMA.ties SET val = 'updated within the tie' WHERE id = $TIE_ROWS;"
sync_call ties
diag "run after new tied rows: $SYNC_NOTICE"
same "$c: rows tying with the stored cursor (inserted and updated after the load) arrive (lookback 0)" ties
src_psql -q -c "INSERT INTO $SRC_SCHEMA.ties SELECT g, 'tie again ' || g, '$tmax' FROM generate_series($((TIE_ROWS + 11)), $((TIE_ROWS + 15))) g"
sync_call ties
same "$c: a second round of tied rows arrives" ties
if [[ $SYNC_NOTICE == "incremental, ok, 5 upserted"* ]]; then
    ok "$c: the incremental run wrote only the 5 new rows (tied rows re-read, not rewritten)"
else
    not_ok "$c: the incremental run wrote only the 5 new rows (got: $SYNC_NOTICE)"
fi

# ======================================================================== I
# deletes between runs
c=I_deletes
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
wh_psql -q <<SQL >/dev/null
CREATE SERVER fdh FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema '$SRC_SCHEMA', tables 'del_h,del_f', target_schema 'fdel');
CREATE SERVER fds FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema '$SRC_SCHEMA', tables 'del_s', target_schema 'fdel', deletes 'soft');
CREATE SERVER fdi FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema '$SRC_SCHEMA', tables 'del_i', target_schema 'fdel', deletes 'ignore');
CREATE USER MAPPING FOR postgres SERVER fdh OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE USER MAPPING FOR postgres SERVER fds OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE USER MAPPING FOR postgres SERVER fdi OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
SRV=fdh; sync_call del_h; sync_call del_f
SRV=fds; sync_call del_s
SRV=fdi; sync_call del_i
for t in del_h del_s del_i; do
    src_psql -q -c "DELETE FROM $SRC_SCHEMA.$t WHERE id IN (1, 777, 2000);
                    UPDATE $SRC_SCHEMA.$t SET val = 'upd', updated_at = clock_timestamp() WHERE id = 5"
done
src_psql -q -c "DELETE FROM $SRC_SCHEMA.del_f WHERE id IN (1, 777, 2000); UPDATE $SRC_SCHEMA.del_f SET val = 'upd' WHERE id = 5"

SRV=fdh
r=$(run_row del_h)
if [[ $r == incremental\|ok\|1\|3* ]]; then ok "$c hard: incremental run, 1 upserted, 3 deleted ($r)"
else not_ok "$c hard: incremental run, 1 upserted, 3 deleted (got $r)"; fi
same "$c hard: warehouse equals source" del_h "" "" "$COLS" fdel
r=$(run_row del_f)
if [[ $r == full\|ok\|1\|3* ]]; then ok "$c hard, table without cursor: full run, 1 upserted, 3 deleted ($r)"
else not_ok "$c hard, table without cursor: full run, 1 upserted, 3 deleted (got $r)"; fi
same "$c hard, table without cursor: warehouse equals source" del_f "" "" "id, val" fdel
# a delete balanced by an insert between runs (equal counts before the insert is applied)
src_psql -q -c "DELETE FROM $SRC_SCHEMA.del_h WHERE id = 2; INSERT INTO $SRC_SCHEMA.del_h VALUES (5001, 'new', clock_timestamp())"
r=$(run_row del_h)
diag "delete 1 + insert 1: $r"
same "$c hard, a delete and an insert between runs: warehouse equals source" del_h "" "" "$COLS" fdel
[[ $(st rows_total del_h) == "$(src_val "SELECT count(*) FROM $SRC_SCHEMA.del_h")" ]] &&
    ok "$c hard: rows_total equals the source's count" || not_ok "$c hard: rows_total equals the source's count ($(st rows_total del_h))"
src_psql -q -c "DELETE FROM $SRC_SCHEMA.del_h"
r=$(run_row del_h)
diag "all rows deleted: $r"
same "$c hard, every row deleted at the source: warehouse empty too" del_h "" "" "$COLS" fdel

SRV=fds
r=$(run_row del_s)
if [[ $r == incremental\|ok\|1\|3* ]]; then ok "$c soft: incremental run, 1 upserted, 3 flagged ($r)"
else not_ok "$c soft: incremental run, 1 upserted, 3 flagged (got $r)"; fi
same "$c soft: rows not flagged _dbsync_deleted equal the source" del_s "" "NOT _dbsync_deleted" "$COLS" fdel
flagged=$(wh_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM fdel.del_s WHERE _dbsync_deleted")
[[ $flagged == "1,777,2000" ]] && ok "$c soft: exactly the deleted keys are flagged ($flagged)" ||
    not_ok "$c soft: exactly the deleted keys are flagged (got '$flagged')"
src_psql -q -c "INSERT INTO $SRC_SCHEMA.del_s VALUES (777, 'back again', clock_timestamp())"
r=$(run_row del_s)
same "$c soft: a key re-inserted at the source is live again" del_s "" "NOT _dbsync_deleted" "$COLS" fdel

SRV=fdi
r=$(run_row del_i)
if [[ $r == incremental\|ok\|1\|0* ]]; then ok "$c ignore: incremental run, 1 upserted, 0 deleted ($r)"
else not_ok "$c ignore: incremental run, 1 upserted, 0 deleted (got $r)"; fi
same "$c ignore: the rows still at the source are equal" del_i "" "id NOT IN (1, 777, 2000)" "$COLS" fdel
[[ $(wh_val "SELECT count(*) FROM fdel.del_i WHERE id IN (1, 777, 2000)") == 3 ]] &&
    ok "$c ignore: the deleted rows are kept locally" || not_ok "$c ignore: the deleted rows are kept locally"

# ======================================================================== J
# schema changes between runs
c=J_schema
SRV=fsch
SCOLS="id, val, note, updated_at"
src_psql -q <<SQL >/dev/null
CREATE TABLE $SRC_SCHEMA.sch (id bigint PRIMARY KEY, val varchar(10), note text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO $SRC_SCHEMA.sch SELECT g, 'v' || g, 'note ' || g, now() - interval '1 day' FROM generate_series(1, 1000) g;
CREATE TABLE $SRC_SCHEMA.sch_gone (id int PRIMARY KEY, val text);
INSERT INTO $SRC_SCHEMA.sch_gone SELECT g, 'v' || g FROM generate_series(1, 50) g;
SQL
wh_psql -q <<SQL >/dev/null
CREATE SERVER fsch FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema '$SRC_SCHEMA', tables 'sch%');
CREATE USER MAPPING FOR postgres SERVER fsch OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
wh_val "SELECT count(*) FROM dbsync_run('fsch')" >/dev/null
same "$c: initial" sch "" "" "$SCOLS"

# column added (with values), then a run
src_psql -q -c "ALTER TABLE $SRC_SCHEMA.sch ADD COLUMN extra int DEFAULT 7;
                UPDATE $SRC_SCHEMA.sch SET extra = id * 3, updated_at = clock_timestamp() WHERE id % 100 = 0"
r=$(run_row sch)
diag "after ADD COLUMN: $r"
same "$c: a column added at the source is added locally and backfilled" sch "" "" "id, val, note, extra, updated_at"

# widened types: varchar(10) -> varchar(60), int -> bigint
src_psql -q -c "ALTER TABLE $SRC_SCHEMA.sch ALTER COLUMN val TYPE varchar(60), ALTER COLUMN extra TYPE bigint;
                INSERT INTO $SRC_SCHEMA.sch (id, val, note, extra) VALUES (1001, repeat('w', 60), 'wide', 5000000000)"
r=$(run_row sch)
diag "after widening: $r"
types=$(wh_val "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'fsch.sch'::regclass AND attname IN ('val', 'extra')")
[[ $types == "val character varying(60), extra bigint" ]] && ok "$c: widened column types are altered locally ($types)" ||
    not_ok "$c: widened column types are altered locally (got: $types)"
same "$c: rows with values that need the wider types arrive" sch "" "" "id, val, note, extra, updated_at"

# column dropped at the source: local data kept
src_psql -q -c "ALTER TABLE $SRC_SCHEMA.sch DROP COLUMN note;
                INSERT INTO $SRC_SCHEMA.sch (id, val, extra) VALUES (1002, 'after drop', 1)"
r=$(run_row sch)
diag "after DROP COLUMN: $r"
[[ $r == *\|ok\|* ]] && ok "$c: a run after a column was dropped at the source succeeds" || not_ok "$c: a run after a column was dropped at the source succeeds ($r)"
[[ $(wh_val "SELECT count(note) FROM fsch.sch WHERE id <= 1000") == 1000 ]] &&
    ok "$c: the dropped column's local data is kept" || not_ok "$c: the dropped column's local data is kept"
same "$c: remaining columns equal the source" sch "" "" "id, val, extra, updated_at"

# table dropped at the source: local data kept, status says so
src_psql -q -c "DROP TABLE $SRC_SCHEMA.sch_gone"
r=$(wh_val "SELECT concat_ws('|', table_name, status, message) FROM dbsync_run('fsch') WHERE table_name = 'sch_gone'")
diag "after DROP TABLE: $r"
[[ $(wh_val "SELECT count(*) FROM fsch.sch_gone") == 50 && -n $(st remote_missing_since sch_gone) ]] &&
    ok "$c: a table dropped at the source keeps its local rows and remote_missing_since is set" ||
    not_ok "$c: a table dropped at the source keeps its local rows and remote_missing_since is set (rows $(wh_val "SELECT count(*) FROM fsch.sch_gone"), since '$(st remote_missing_since sch_gone)')"

# new table at the source: synced by the next server run
src_psql -q -c "CREATE TABLE $SRC_SCHEMA.sch_new (id int PRIMARY KEY, val text, updated_at timestamptz DEFAULT clock_timestamp());
                INSERT INTO $SRC_SCHEMA.sch_new SELECT g, 'n' || g FROM generate_series(1, 300) g"
wh_val "SELECT count(*) FROM dbsync_run('fsch')" >/dev/null
same "$c: a new table at the source is synced by the next run" sch_new

print_figures
((T_FAILED == 0))
