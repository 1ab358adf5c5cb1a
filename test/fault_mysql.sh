#!/usr/bin/env bash
# Fault injection against the MariaDB source (the TiDB stand-in), the same way as
# test/fault_pg.sh does for PostgreSQL: inject a fault into a running sync, then
# prove by comparing source and warehouse row by row (a canonical text line per
# row, in key order, timestamps in UTC with microseconds) that the warehouse holds
# exactly the source's rows.
#
#   A  kill -9 of the MariaDB server in the middle of an initial load
#   B  pg_terminate_backend of the syncing backend mid-load (KILL QUERY must stop
#      the remote statement)
#   C  immediate-mode restart of the warehouse mid-load
#   D  source frozen with SIGSTOP, sync stopped with pg_cancel_backend
#   E  source frozen with SIGSTOP, sync stopped by statement_timeout
#   F  source frozen with SIGSTOP, read_timeout '2' ends the sync by itself
#   K  source frozen, fast shutdown of the warehouse (the blocked sync must let it stop)
#   L  source frozen at connect time, connect_timeout bounds the wait
#   G  late commits caught by lookback (no in-flight cap for MySQL-family sources)
#   H  ties on the cursor across batch boundaries (and across a resume)
#   I  deletes between runs (hard, soft, ignore; cursor and full tables)
#   J  schema changes between runs (column added, widened, dropped; table dropped;
#      new table)
# The concurrent-run cases for this driver are in test/concurrency.sh.
set -uo pipefail
source "$(dirname "$0")/lib/fault_common.sh"

MYDB=fault_my
ROWS=${FAULT_ROWS:-500000}
BATCH=${FAULT_BATCH:-20000}
CANCEL_LIMIT=3        # seconds: the contract's 2 s plus scheduling margin
SRV=fm

cleanup() {
    my_server_signal CONT 2>/dev/null || true
    my_server_pid >/dev/null || my_server_start || true
}
trap cleanup EXIT

my_val()  { my_sql -N -e "$1" 2>/dev/null || true; }
# rows InnoDB read so far (server-wide; nothing else uses this MariaDB meanwhile)
my_rows_read() { my_root_sql -N -e "SHOW GLOBAL STATUS LIKE 'Rows_read'" 2>/dev/null | awk '{print $2}'; }
# remote_sessions: statements of dbsync still running at the source on this database
remote_sessions() {
    my_root_sql -N -e "SELECT count(*) FROM information_schema.processlist WHERE user = '$SRC_USER'
        AND command = 'Query' AND info LIKE '%$MYDB%'" 2>/dev/null || echo "?"
}
wait_remote_gone() {
    local t0 n
    t0=$(now)
    for _ in $(seq 1 100); do
        n=$(remote_sessions)
        [[ $n == 0 ]] && break
        sleep 0.1
    done
    if [[ $n == 0 ]]; then
        ok "$1: no dbsync statement left running at the source"
        figure "$1 remote statement gone after" "$(elapsed "$t0" "$(now)") s (measured from after the client returned)"
        [[ -n ${2:-} ]] && FETCH_R1=$(my_rows_read)
    else
        not_ok "$1: no dbsync statement left running at the source ($n still there after 10 s)"
        my_root_sql -N -e "SELECT id, command, time, state, left(info, 100) FROM information_schema.processlist WHERE user = '$SRC_USER'" |
            while read -r l; do diag "$l"; done
    fi
}

# ---------------------------------------------------------------- comparison
# COLS: plain column names; updated_at is printed in UTC with microseconds
COLS="id val updated_at"
my_expr() {
    local c e=()
    for c in $1; do
        if [[ $c == updated_at ]]; then e+=("coalesce(date_format($c, '%Y-%m-%d %H:%i:%s.%f'), '\\\\N')")
        else e+=("coalesce($c, '\\\\N')"); fi
    done
    local IFS=,; echo "concat_ws('|', ${e[*]})"
}
pg_expr() {
    local c e=()
    for c in $1; do
        if [[ $c == updated_at ]]; then e+=("coalesce(to_char($c AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '\\N')")
        else e+=("coalesce($c::text, '\\N')"); fi
    done
    local IFS=,; echo "concat_ws('|', ${e[*]})"
}
src_dump() {  # TABLE [WHERE] [COLS]
    my_sql -N -e "SET time_zone = '+00:00'; SELECT $(my_expr "${3:-$COLS}") FROM $MYDB.$1 ${2:+WHERE $2} ORDER BY id"
}
wh_dump() {   # TABLE [WHERE] [COLS] [SCHEMA]
    wh_psql -At -c "SELECT $(pg_expr "${3:-$COLS}") FROM ${4:-$SRV}.$1 ${2:+WHERE $2} ORDER BY id"
}
same() {      # NAME TABLE [SRC_WHERE] [WH_WHERE] [COLS] [LOCAL_SCHEMA]
    local q1 q2
    printf -v q1 'src_dump %q %q %q' "$2" "${3:-}" "${5:-$COLS}"
    printf -v q2 'wh_dump %q %q %q %q' "$2" "${4:-}" "${5:-$COLS}" "${6:-$SRV}"
    compare "$1" "$q1" "$q2"
}

# ---------------------------------------------------------------- setup
if ! my_root_sql -e "DROP DATABASE IF EXISTS $MYDB; CREATE DATABASE $MYDB CHARACTER SET utf8mb4;
        GRANT ALL ON $MYDB.* TO '$SRC_USER'@'127.0.0.1', '$SRC_USER'@'localhost';" >/dev/null; then
    echo "not ok 1 - MariaDB source setup"; exit 1
fi
# updated_at is indexed so that the load's max(updated_at) reads one row, and the
# rows a load reads are its batches (Rows_read measures them)
my_sql -e "CREATE TABLE $MYDB.template (id bigint PRIMARY KEY, val varchar(40),
               updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6), KEY (updated_at));
           INSERT INTO $MYDB.template SELECT seq, md5(seq), timestamp'2024-01-01 00:00:00' + interval seq * 1000 microsecond
             FROM seq_1_to_$ROWS;" || { echo "not ok 1 - MariaDB source setup"; exit 1; }
for t in big_kill big_term big_crash big_cancel big_timeout big_readto big_shut; do
    my_sql -e "CREATE TABLE $MYDB.$t LIKE $MYDB.template; INSERT INTO $MYDB.$t SELECT * FROM $MYDB.template;"
done

use_wh_db fault_mysql
wh_psql -q <<SQL >/dev/null || { echo "not ok 1 - warehouse setup"; exit 1; }
CREATE SERVER fm FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql',
    host '127.0.0.1', port '$SRC_MY_PORT', dbname '$MYDB', batch_size '$BATCH', tables 'big%');
CREATE USER MAPPING FOR postgres SERVER fm OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
probe=$(wh_val "SELECT count(*) FROM dbsync_discover('fm')")
if [[ $probe =~ ^[0-9]+$ ]] && ((probe > 0)); then
    diag "MySQL driver: dbsync_discover('fm') sees $probe tables ($(wh_val "SELECT max(source_flavor) FROM dbsync_discover('fm')"))"
else
    not_ok "the MySQL driver can discover the MariaDB source: $(wh_psql -At -c "SELECT count(*) FROM dbsync_discover('fm')" 2>&1 | head -c 400)"
    diag "every MariaDB fault case below depends on it; they run anyway and fail where the driver fails"
fi
diag "source: $ROWS rows per table, batch_size $BATCH, MariaDB on port $SRC_MY_PORT"

# ---------------------------------------------------------------- load-fault skeleton
start_load() {
    local app=$1 table=$2 pre=${3:-}
    FETCH_R0=$(my_rows_read) FETCH_R1=
    if [[ -n $pre ]]; then bg_start "$app" "$pre" "CALL dbsync_sync('$SRV', '$table')"
    else bg_start "$app" "CALL dbsync_sync('$SRV', '$table')"; fi
    LOAD_PID=$BG_PID
}
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
    figure "$c checkpoint" "sampled before the fault: ${CKPT_SEEN:-?} rows committed + ${COPY_SEEN:-?} rows of the next batch streamed (fault ${FAULT_AT_START:-?}s after start); committed after the fault: $CKPT rows"
}
resume_case() {
    local c=$1 table=$2 expect up t0 mode r2 r3 extra lm lr
    expect=$(my_val "SELECT count(*) FROM $MYDB.$table WHERE id > $CKPT")
    r2=$(my_rows_read)
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
    figure "$c rows re-read by the resume" "${up:-?} = $ROWS total - $CKPT checkpointed; upserted by the resume minus rows after the checkpoint: $(( ${up:-0} - expect ))"
    if [[ -n ${FETCH_R1:-} && -n ${FETCH_R0:-} ]]; then
        r3=$(my_rows_read)
        extra=$((FETCH_R1 - FETCH_R0 - CKPT))
        figure "$c source rows read twice" "the interrupted run read $((FETCH_R1 - FETCH_R0)) rows at the source (Rows_read) = $CKPT committed + $extra of the interrupted batch and the load's max(); the resume read $((r3 - r2)) (rows after the checkpoint: $expect)"
        if (((r3 - r2) <= expect + 100)); then
            ok "$c: the resume read only the rows after the checkpoint at the source ($((r3 - r2)) for $expect)"
        else
            not_ok "$c: the resume read only the rows after the checkpoint at the source (it read $((r3 - r2)), rows after the checkpoint: $expect)"
        fi
        if ((extra >= 0 && extra <= BATCH + 10)); then
            ok "$c: work repeated at the source is at most one batch ($extra <= $BATCH rows)"
        else
            not_ok "$c: work repeated at the source is at most one batch ($extra rows, batch_size $BATCH)"
        fi
    fi
    [[ ${3:-} == no_compare ]] || same "$c: warehouse equals source after the resume" "$table"
}

# ======================================================================== A
c=A_kill9_source
start_load $c big_kill
if mid_load $c big_kill $((3 * BATCH)); then
    t0=$(now)
    my_server_signal KILL
    if bg_wait "$LOAD_PID" 30; then
        figure "$c time to detect" "$(elapsed "$t0" "$BG_END") s from kill -9 of mariadbd to the end of the CALL"
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
    my_server_stop KILL
    my_server_start || { not_ok "$c: MariaDB restarts"; exit 1; }
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_kill "id <= $CKPT"
    resume_case $c big_kill
else
    bg_kill "$LOAD_PID" $c
fi

# ======================================================================== B
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
    my_sql -e "UPDATE $MYDB.big_term SET val = 'changed', updated_at = now(6)
                 WHERE id IN (10, $((CKPT - 1)), $CKPT, $((CKPT + 1)), $((ROWS - 1)));
               DELETE FROM $MYDB.big_term WHERE id IN (15, $((CKPT + 7)));
               INSERT INTO $MYDB.big_term VALUES ($((ROWS + 1)), 'new', now(6));"
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
c=D_frozen_source_cancel
start_load $c big_cancel
if mid_load $c big_cancel $((2 * BATCH)); then
    my_server_signal STOP
    sleep 1
    bpid=$(backend_pid $c)
    diag "backend $bpid waits on: $(wh_val "SELECT wait_event_type || ':' || wait_event FROM pg_stat_activity WHERE pid = '${bpid:-0}'")"
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
    committed_state $c big_cancel
    my_server_signal CONT
    wait_remote_gone $c big_cancel
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_cancel "id <= $CKPT"
    resume_case $c big_cancel
else
    bg_kill "$LOAD_PID" $c
fi
my_server_signal CONT 2>/dev/null

# ======================================================================== E
c=E_frozen_source_statement_timeout
TIMEOUT_S=3   # long enough for the first checkpoint on a busy machine; the source freezes right after it
start_load $c big_timeout "SET statement_timeout = '${TIMEOUT_S}s'"
if mid_load $c big_timeout "$BATCH"; then
    my_server_signal STOP
    tf=$(elapsed "$BG_START" "$(now)")
    if bg_wait "$LOAD_PID" 20; then
        total_s=$(elapsed "$BG_START" "$BG_END")
        over=$(awk -v a="$total_s" -v t="$TIMEOUT_S" 'BEGIN { printf "%.3f", a - t }')
        figure "$c time to give up" "CALL ended ${total_s}s after it started: ${over}s past the ${TIMEOUT_S}s statement_timeout (source frozen at ${tf}s)"
        lt "$tf" "$TIMEOUT_S" || not_ok "$c: setup: the source froze before the timeout (froze at ${tf}s)"
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
    my_server_signal CONT
    wait_remote_gone $c big_timeout
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_timeout "id <= $CKPT"
    resume_case $c big_timeout
else
    bg_kill "$LOAD_PID" $c
fi
my_server_signal CONT 2>/dev/null

# ======================================================================== F
c=F_frozen_source_read_timeout
READ_TIMEOUT=2
wh_psql -q -c "ALTER SERVER fm OPTIONS (ADD read_timeout '$READ_TIMEOUT')"
start_load $c big_readto
if mid_load $c big_readto $((2 * BATCH)); then
    my_server_signal STOP
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
    my_server_signal CONT
    wait_remote_gone $c big_readto
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_readto "id <= $CKPT"
    wh_psql -q -c "ALTER SERVER fm OPTIONS (DROP read_timeout)"
    resume_case $c big_readto
else
    bg_kill "$LOAD_PID" $c
fi
my_server_signal CONT 2>/dev/null

# ======================================================================== K
# frozen source + fast shutdown of the warehouse: the blocked backend must exit
# promptly (contract: shutdown interrupts a sync waiting on the network)
c=K_frozen_source_shutdown
start_load $c big_shut
if mid_load $c big_shut $((2 * BATCH)); then
    my_server_signal STOP
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
    my_server_signal CONT 2>/dev/null
    pg_server_start "$WH_DATADIR" "$WH_LOG" || { not_ok "$c: warehouse restarts"; exit 1; }
    wait_remote_gone $c big_shut
    committed_state $c big_shut
    same "$c: warehouse holds exactly the source's rows up to the checkpoint" big_shut "id <= $CKPT"
    resume_case $c big_shut
else
    bg_kill "$LOAD_PID" $c
fi
my_server_signal CONT 2>/dev/null

# ======================================================================== L
# frozen source at connect time: connect_timeout '2' bounds the wait
c=L_frozen_source_connect_timeout
wh_psql -q -c "ALTER SERVER $SRV OPTIONS (ADD connect_timeout '2')"
before=$(wh_val "SELECT count(*) FROM $SRV.big_kill")
my_server_signal STOP
t0=$(now)
r=$(timeout 30 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$WH_PORT" -U postgres -d "$WH_DB" \
        -c "SELECT concat_ws('|', status, message) FROM dbsync_run('$SRV', 'big_kill')" 2>&1)
dt=$(elapsed "$t0" "$(now)")
my_server_signal CONT 2>/dev/null
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
# late commits: MySQL-family sources have no in-flight cap; lookback covers them
SRV=fml
my_sql -e "CREATE TABLE $MYDB.late (id int PRIMARY KEY, val varchar(60), updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6));
           INSERT INTO $MYDB.late SELECT seq, concat('v', seq), now(6) - interval 1 hour + interval seq second FROM seq_1_to_100;"
wh_psql -q <<SQL >/dev/null
CREATE SERVER fml FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname '$MYDB', tables 'late', lookback '1 minute');
CREATE USER MAPPING FOR postgres SERVER fml OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
sync_call late
same "G_late: initial load" late

# G1: a transaction open during a sync (its row stamped before the newest committed
# row) commits after the sync: lookback '1 minute' reads it
c=G1_inflight_lookback
fifo=$T_WORK/late.fifo
rm -f "$fifo"; mkfifo "$fifo"
my_sql -N --unbuffered <"$fifo" >"$T_WORK/late_writer.out" 2>&1 &
wpid=$!
exec 7>"$fifo"
echo "BEGIN; INSERT INTO $MYDB.late VALUES (1001, 'in flight during the sync', now(6)); SELECT 'inserted';" >&7
wait_until 10 grep -q inserted "$T_WORK/late_writer.out" || diag "the late writer did not insert"
sleep 0.05
my_sql -e "INSERT INTO $MYDB.late VALUES (1002, 'committed before the sync', now(6))"
sync_call late
diag "run while the transaction is open: $SYNC_NOTICE; cursor $(st cursor_value late)"
echo "COMMIT;" >&7
exec 7>&-
wait "$wpid" 2>/dev/null || true
sync_call late
diag "after the late commit: $SYNC_NOTICE"
same "$c: the row of the transaction in flight during the sync arrives (lookback 1 minute)" late

# G2: a row committed after a sync with updated_at 30 s below the stored cursor
c=G2_lookback
cur=$(wh_val "SELECT to_char(cursor_value::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM dbsync.status WHERE server = 'fml' AND table_name = 'late'")
my_sql -e "SET time_zone = '+00:00';
           INSERT INTO $MYDB.late VALUES (1003, 'late by 30 s', timestamp'$cur' - interval 30 second);
           UPDATE $MYDB.late SET val = 'updated late by 20 s', updated_at = timestamp'$cur' - interval 20 second WHERE id = 1002;"
sync_call late
diag "stored cursor $cur; run: $SYNC_NOTICE"
same "$c: rows committed after the sync with updated_at within lookback below the cursor arrive" late

# ======================================================================== H
SRV=fmt
c=H_ties
TIE_ROWS=$((BATCH * 6))
my_sql -e "CREATE TABLE $MYDB.ties (id bigint PRIMARY KEY, val varchar(60), updated_at timestamp(6) NOT NULL, KEY (updated_at));
           SET time_zone = '+00:00';
           INSERT INTO $MYDB.ties SELECT seq, md5(seq),
               timestamp'2024-06-01 00:00:00' + interval ((seq + $BATCH DIV 2) DIV ($BATCH * 2)) second
             FROM seq_1_to_$TIE_ROWS;"
wh_psql -q <<SQL >/dev/null
CREATE SERVER fmt FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname '$MYDB', tables 'ties', batch_size '$BATCH', lookback '0 seconds');
CREATE USER MAPPING FOR postgres SERVER fmt OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
diag "ties: $(my_val "SET time_zone = '+00:00'; SELECT group_concat(concat(n, ' rows at ', time(u)) ORDER BY u SEPARATOR ', ') FROM (SELECT updated_at u, count(*) n FROM $MYDB.ties GROUP BY 1) s")"
# hold the load after its first checkpoint (LOCK TABLES ... WRITE at the source
# blocks the next batch), terminate it there, resume: the boundary lies in a tie
lfifo=$T_WORK/ties.fifo
rm -f "$lfifo"; mkfifo "$lfifo"
my_sql -N --unbuffered <"$lfifo" >"$T_WORK/ties_locker.out" 2>&1 &
lpid=$!
exec 8>"$lfifo"
start_load H_ties ties
if wait_ckpt_fast H_ties ties "$BATCH" 60; then
    echo "LOCK TABLES $MYDB.ties WRITE; SELECT 'locked';" >&8
    wait_until 10 grep -q locked "$T_WORK/ties_locker.out" || diag "the lock was not taken"
    load_blocked() { [[ $(my_root_sql -N -e "SELECT count(*) FROM information_schema.processlist WHERE user = '$SRC_USER' AND state LIKE '%metadata lock%'") -ge 1 ]]; }
    wait_until 10 load_blocked || diag "the load did not block on the lock"
    wh_val "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'H_ties'" >/dev/null
    bg_wait "$LOAD_PID" 20 || bg_kill "$LOAD_PID" H_ties
fi
poll_close
echo "UNLOCK TABLES;" >&8
exec 8>&-
wait "$lpid" 2>/dev/null || true
CKPT=$(wh_val "SELECT coalesce(resume_key[1], '0') FROM dbsync.tables WHERE server = 'fmt' AND table_name = 'ties'")
diag "load held and terminated after checkpoint at id $CKPT"
ROWS_SAVE=$ROWS; ROWS=$TIE_ROWS; FETCH_R1=
if ((CKPT > 0)); then
    resume_case $c ties
else
    not_ok "$c: the load was interrupted after a checkpoint (resume_key $CKPT)"
    sync_call ties
fi
ROWS=$ROWS_SAVE
tmax=$(wh_val "SELECT to_char(cursor_value::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM dbsync.status WHERE server = 'fmt' AND table_name = 'ties'")
diag "stored cursor after the load: $tmax (UTC)"
my_sql -e "SET time_zone = '+00:00';
           INSERT INTO $MYDB.ties SELECT seq, concat('tie ', seq), timestamp'$tmax' FROM seq_$((TIE_ROWS + 1))_to_$((TIE_ROWS + 10));
           UPDATE $MYDB.ties SET val = 'updated within the tie' WHERE id = $TIE_ROWS;"
sync_call ties
diag "run after new tied rows: $SYNC_NOTICE"
same "$c: rows tying with the stored cursor (inserted and updated after the load) arrive (lookback 0)" ties
my_sql -e "SET time_zone = '+00:00';
           INSERT INTO $MYDB.ties SELECT seq, concat('tie again ', seq), timestamp'$tmax' FROM seq_$((TIE_ROWS + 11))_to_$((TIE_ROWS + 15));"
sync_call ties
same "$c: a second round of tied rows arrives" ties
if [[ $SYNC_NOTICE == "incremental, ok, 5 upserted"* ]]; then
    ok "$c: the incremental run wrote only the 5 new rows (tied rows re-read, not rewritten)"
else
    not_ok "$c: the incremental run wrote only the 5 new rows (got: $SYNC_NOTICE)"
fi

# ======================================================================== I
c=I_deletes
my_sql -e "CREATE TABLE $MYDB.del_h (id bigint PRIMARY KEY, val varchar(40), updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6));
           INSERT INTO $MYDB.del_h SELECT seq, concat('v', seq), now(6) - interval 1 day FROM seq_1_to_2000;
           CREATE TABLE $MYDB.del_s LIKE $MYDB.del_h; INSERT INTO $MYDB.del_s SELECT * FROM $MYDB.del_h;
           CREATE TABLE $MYDB.del_i LIKE $MYDB.del_h; INSERT INTO $MYDB.del_i SELECT * FROM $MYDB.del_h;
           CREATE TABLE $MYDB.del_f (id bigint PRIMARY KEY, val varchar(40));
           INSERT INTO $MYDB.del_f SELECT seq, concat('v', seq) FROM seq_1_to_2000;"
wh_psql -q <<SQL >/dev/null
CREATE SERVER fmdh FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname '$MYDB', tables 'del_h,del_f', target_schema 'fmdel');
CREATE SERVER fmds FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname '$MYDB', tables 'del_s', target_schema 'fmdel', deletes 'soft');
CREATE SERVER fmdi FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname '$MYDB', tables 'del_i', target_schema 'fmdel', deletes 'ignore');
CREATE USER MAPPING FOR postgres SERVER fmdh OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE USER MAPPING FOR postgres SERVER fmds OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE USER MAPPING FOR postgres SERVER fmdi OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
SRV=fmdh; sync_call del_h; sync_call del_f
SRV=fmds; sync_call del_s
SRV=fmdi; sync_call del_i
for t in del_h del_s del_i; do
    my_sql -e "DELETE FROM $MYDB.$t WHERE id IN (1, 777, 2000); UPDATE $MYDB.$t SET val = 'upd', updated_at = now(6) WHERE id = 5"
done
my_sql -e "DELETE FROM $MYDB.del_f WHERE id IN (1, 777, 2000); UPDATE $MYDB.del_f SET val = 'upd' WHERE id = 5"

SRV=fmdh
r=$(run_row del_h)
if [[ $r == incremental\|ok\|1\|3* ]]; then ok "$c hard: incremental run, 1 upserted, 3 deleted ($r)"
else not_ok "$c hard: incremental run, 1 upserted, 3 deleted (got $r)"; fi
same "$c hard: warehouse equals source" del_h "" "" "$COLS" fmdel
r=$(run_row del_f)
if [[ $r == full\|ok\|1\|3* ]]; then ok "$c hard, table without cursor: full run, 1 upserted, 3 deleted ($r)"
else not_ok "$c hard, table without cursor: full run, 1 upserted, 3 deleted (got $r)"; fi
same "$c hard, table without cursor: warehouse equals source" del_f "" "" "id val" fmdel
my_sql -e "DELETE FROM $MYDB.del_h WHERE id = 2; INSERT INTO $MYDB.del_h VALUES (5001, 'new', now(6))"
r=$(run_row del_h)
diag "delete 1 + insert 1: $r"
same "$c hard, a delete and an insert between runs: warehouse equals source" del_h "" "" "$COLS" fmdel
[[ $(st rows_total del_h) == "$(my_val "SELECT count(*) FROM $MYDB.del_h")" ]] &&
    ok "$c hard: rows_total equals the source's count" || not_ok "$c hard: rows_total equals the source's count ($(st rows_total del_h))"
my_sql -e "DELETE FROM $MYDB.del_h"
r=$(run_row del_h)
diag "all rows deleted: $r"
same "$c hard, every row deleted at the source: warehouse empty too" del_h "" "" "$COLS" fmdel

SRV=fmds
r=$(run_row del_s)
if [[ $r == incremental\|ok\|1\|3* ]]; then ok "$c soft: incremental run, 1 upserted, 3 flagged ($r)"
else not_ok "$c soft: incremental run, 1 upserted, 3 flagged (got $r)"; fi
same "$c soft: rows not flagged _dbsync_deleted equal the source" del_s "" "NOT _dbsync_deleted" "$COLS" fmdel
flagged=$(wh_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM fmdel.del_s WHERE _dbsync_deleted")
[[ $flagged == "1,777,2000" ]] && ok "$c soft: exactly the deleted keys are flagged ($flagged)" ||
    not_ok "$c soft: exactly the deleted keys are flagged (got '$flagged')"
my_sql -e "INSERT INTO $MYDB.del_s VALUES (777, 'back again', now(6))"
r=$(run_row del_s)
same "$c soft: a key re-inserted at the source is live again" del_s "" "NOT _dbsync_deleted" "$COLS" fmdel

SRV=fmdi
r=$(run_row del_i)
if [[ $r == incremental\|ok\|1\|0* ]]; then ok "$c ignore: incremental run, 1 upserted, 0 deleted ($r)"
else not_ok "$c ignore: incremental run, 1 upserted, 0 deleted (got $r)"; fi
same "$c ignore: the rows still at the source are equal" del_i "" "id NOT IN (1, 777, 2000)" "$COLS" fmdel
[[ $(wh_val "SELECT count(*) FROM fmdel.del_i WHERE id IN (1, 777, 2000)") == 3 ]] &&
    ok "$c ignore: the deleted rows are kept locally" || not_ok "$c ignore: the deleted rows are kept locally"

# ======================================================================== J
c=J_schema
SRV=fmsch
my_sql -e "CREATE TABLE $MYDB.sch (id bigint PRIMARY KEY, val varchar(10), note text, updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6));
           INSERT INTO $MYDB.sch SELECT seq, concat('v', seq), concat('note ', seq), now(6) - interval 1 day FROM seq_1_to_1000;
           CREATE TABLE $MYDB.sch_gone (id int PRIMARY KEY, val varchar(20));
           INSERT INTO $MYDB.sch_gone SELECT seq, concat('v', seq) FROM seq_1_to_50;"
wh_psql -q <<SQL >/dev/null
CREATE SERVER fmsch FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname '$MYDB', tables 'sch%');
CREATE USER MAPPING FOR postgres SERVER fmsch OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
wh_val "SELECT count(*) FROM dbsync_run('fmsch')" >/dev/null
same "$c: initial" sch "" "" "id val note updated_at"

my_sql -e "ALTER TABLE $MYDB.sch ADD COLUMN extra int DEFAULT 7;
           UPDATE $MYDB.sch SET extra = id * 3, updated_at = now(6) WHERE id % 100 = 0;"
r=$(run_row sch)
diag "after ADD COLUMN: $r"
same "$c: a column added at the source is added locally and backfilled" sch "" "" "id val note extra updated_at"

my_sql -e "ALTER TABLE $MYDB.sch MODIFY val varchar(60), MODIFY extra bigint;
           INSERT INTO $MYDB.sch (id, val, note, extra) VALUES (1001, repeat('w', 60), 'wide', 5000000000);"
r=$(run_row sch)
diag "after widening: $r"
types=$(wh_val "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'fmsch.sch'::regclass AND attname IN ('val', 'extra')")
[[ $types == "val character varying(60), extra bigint" ]] && ok "$c: widened column types are altered locally ($types)" ||
    not_ok "$c: widened column types are altered locally (got: $types)"
same "$c: rows with values that need the wider types arrive" sch "" "" "id val note extra updated_at"

my_sql -e "ALTER TABLE $MYDB.sch DROP COLUMN note;
           INSERT INTO $MYDB.sch (id, val, extra) VALUES (1002, 'after drop', 1);"
r=$(run_row sch)
diag "after DROP COLUMN: $r"
[[ $r == *\|ok\|* ]] && ok "$c: a run after a column was dropped at the source succeeds" || not_ok "$c: a run after a column was dropped at the source succeeds ($r)"
[[ $(wh_val "SELECT count(note) FROM fmsch.sch WHERE id <= 1000") == 1000 ]] &&
    ok "$c: the dropped column's local data is kept" || not_ok "$c: the dropped column's local data is kept"
same "$c: remaining columns equal the source" sch "" "" "id val extra updated_at"

my_sql -e "DROP TABLE $MYDB.sch_gone"
r=$(wh_val "SELECT concat_ws('|', table_name, status, message) FROM dbsync_run('fmsch') WHERE table_name = 'sch_gone'")
diag "after DROP TABLE: $r"
[[ $(wh_val "SELECT count(*) FROM fmsch.sch_gone") == 50 && -n $(st remote_missing_since sch_gone) ]] &&
    ok "$c: a table dropped at the source keeps its local rows and remote_missing_since is set" ||
    not_ok "$c: a table dropped at the source keeps its local rows and remote_missing_since is set (rows $(wh_val "SELECT count(*) FROM fmsch.sch_gone"), since '$(st remote_missing_since sch_gone)')"

my_sql -e "CREATE TABLE $MYDB.sch_new (id int PRIMARY KEY, val varchar(20), updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6));
           INSERT INTO $MYDB.sch_new (id, val) SELECT seq, concat('n', seq) FROM seq_1_to_300;"
wh_val "SELECT count(*) FROM dbsync_run('fmsch')" >/dev/null
same "$c: a new table at the source is synced by the next run" sch_new

print_figures
((T_FAILED == 0))
