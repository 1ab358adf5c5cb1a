# shellcheck shell=bash
# shellcheck disable=SC2034  # BG_*, CKPT_SEEN, SYNC_NOTICE ... are read by the sourcing scripts
# Helpers shared by the fault-injection tests (test/fault_pg.sh, test/fault_mysql.sh,
# test/concurrency.sh), and the fault cases themselves: fault_pg.sh and
# fault_mysql.sh define how to reach and hurt their source (see "driver
# interface" below) and then run the same cases.  Sourced, not run: it lives
# below test/lib/ so that the runner does not take it for a test.
#
# Each fault test works in a database of its own on the warehouse ($WH_DB is
# replaced by it) and in a schema / database of its own at the source, so it
# neither depends on nor disturbs what pg_regress or other scripts leave behind.
#
# TAP: ok/not_ok print "ok N - name" / "not ok N - name"; `# ...` lines carry
# diagnostics and the measured figures (figure KEY VALUE also collects them for
# the summary printed at the end).

# shellcheck source=scripts/lib.sh
source "${DBSYNC_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib.sh"

T_N=0
T_FAILED=0
T_FIGURES=()
T_WORK=${T_WORK:-$DBSYNC_TESTDIR/tests/work.$(basename "$0" .sh)}
mkdir -p "$T_WORK"
# rows of the big source tables (ids 1..ROWS) and the batch_size of their servers
ROWS=${FAULT_ROWS:-500000}
BATCH=${FAULT_BATCH:-20000}

ok()     { T_N=$((T_N + 1)); echo "ok $T_N - $1"; }
not_ok() { T_N=$((T_N + 1)); T_FAILED=$((T_FAILED + 1)); echo "not ok $T_N - $1"; }
diag()   { local l; while IFS= read -r l; do echo "# $l"; done <<<"$*"; }
# check NAME CMD...: ok when CMD succeeds.
check()  { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }
# figure KEY TEXT: one measured figure, printed now and again in the summary.
figure() { echo "# FIGURE $1: $2"; T_FIGURES+=("$1: $2"); }

print_figures() {
    local f
    echo "# ---- measured figures ($(basename "$0")) ----"
    for f in "${T_FIGURES[@]}"; do echo "#   $f"; done
}

# Seconds (fractional) since the epoch, and differences of them.
now()     { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# lt A B: A < B numerically.
lt()      { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

# ---------------------------------------------------------------- warehouse
# use_wh_db NAME: a fresh warehouse database with the extension; wh_psql uses it.
use_wh_db() {
    WH_DB=$1
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$WH_PORT" -U postgres -d postgres \
        -c "DROP DATABASE IF EXISTS \"$WH_DB\" WITH (FORCE)" -c "CREATE DATABASE \"$WH_DB\"" >/dev/null
    wh_psql -c "CREATE EXTENSION dbsync" >/dev/null
}

# wh_val SQL: one value from the warehouse ('' on error).
wh_val() { wh_psql -At -c "$1" 2>/dev/null || true; }

# st FIELD TABLE [SERVER]: a column of dbsync.status for one table.
st() {
    wh_val "SELECT $1 FROM dbsync.status WHERE server = '${3:-$SRV}' AND table_name = '$2'"
}

# bg_start NAME SQL...: run psql against the warehouse in the background, with
# application_name NAME; stdout/stderr in $T_WORK/NAME.{out,err}; pid in BG_PID.
bg_start() {
    local name=$1; shift
    local args=() s
    for s in "$@"; do args+=(-c "$s"); done
    PGAPPNAME=$name wh_psql "${args[@]}" >"$T_WORK/$name.out" 2>"$T_WORK/$name.err" &
    BG_PID=$!
    BG_START=$(now)
}

# bg_wait PID SECONDS: wait for a background client; 0 when it ended in time
# (its exit code in BG_RC, the time it ended in BG_END), 1 on timeout.
bg_wait() {
    local pid=$1 secs=$2 deadline
    deadline=$(awk -v t="$(now)" -v s="$secs" 'BEGIN { printf "%.3f", t + s }')
    while kill -0 "$pid" 2>/dev/null; do
        if ! lt "$(now)" "$deadline"; then
            return 1
        fi
        sleep 0.02
    done
    BG_END=$(now)
    BG_RC=0
    wait "$pid" 2>/dev/null || BG_RC=$?
    return 0
}

# bg_kill PID APPNAME: give up on a hung client: stop it and its backend.
bg_kill() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    wh_psql -d postgres -At -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$2'" \
        >/dev/null 2>&1 || true
}

# backend_pid APPNAME: pid of the warehouse backend of a background client.
backend_pid() {
    wh_val "SELECT pid FROM pg_stat_activity WHERE application_name = '$1' AND datname = current_database() LIMIT 1"
}

# A persistent warehouse connection for tight polling (a psql start costs ~0.1 s
# here, several batches of a load).  poll_open / poll_q SQL / poll_close.
poll_open() {
    poll_close
    coproc WHPOLL { PGAPPNAME=poller "$PG_BINDIR/psql" -X -q -At -h 127.0.0.1 -p "$WH_PORT" \
        -U postgres -d "$WH_DB" 2>&1; }
}
poll_q() {
    local line out=
    [[ -n ${WHPOLL_PID:-} ]] || poll_open
    printf '%s;\n\\echo __END__\n' "$1" >&"${WHPOLL[1]}" || return 1
    while IFS= read -r -t 10 line <&"${WHPOLL[0]}"; do
        [[ $line == __END__ ]] && break
        out+=$line$'\n'
    done
    printf '%s' "${out%$'\n'}"
}
poll_close() {
    if [[ -n ${WHPOLL_PID:-} ]]; then
        local pid=$WHPOLL_PID fd
        for fd in "${WHPOLL[@]}"; do eval "exec $fd>&-" 2>/dev/null || true; done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    unset WHPOLL_PID
}

# wait_ckpt_fast APP TABLE MIN_ROWS SECONDS: until a committed checkpoint of an
# unfinished initial load covers at least MIN_ROWS rows (polled through the
# poller); also samples the rows the backend of APP has streamed into its
# current COPY.  Sets CKPT_SEEN and COPY_SEEN.
wait_ckpt_fast() {
    local app=$1 table=$2 min=$3 secs=$4 deadline v
    deadline=$((SECONDS + secs))
    poll_open
    while ((SECONDS < deadline)); do
        v=$(poll_q "SELECT s.rows_total || '|' || coalesce((SELECT p.tuples_processed FROM pg_stat_progress_copy p
                    JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '$app')::text, '')
                    FROM dbsync.status s WHERE s.server = '$SRV' AND s.table_name = '$table' AND s.initial_load_pending")
        if [[ $v =~ ^([0-9]+)\|([0-9]*)$ ]] && ((BASH_REMATCH[1] >= min)); then
            CKPT_SEEN=${BASH_REMATCH[1]} COPY_SEEN=${BASH_REMATCH[2]}
            return 0
        fi
        sleep 0.005
    done
    return 1
}

# notice_of NAME TABLE: the dbsync NOTICE of a CALL for one table, e.g.
# "resume, ok, 120000 upserted, 0 deleted".
notice_of() {
    grep -o "dbsync: $SRV\.$2: .*" "$T_WORK/$1.err" | tail -n 1 | sed "s/^dbsync: $SRV\.$2: //"
}
# upserted_of NOTICE: the "N upserted" figure of a notice.
upserted_of() { sed -n 's/.* \([0-9]*\) upserted.*/\1/p' <<<"$1"; }

# sync TABLE: CALL dbsync_sync for one table in the foreground; the notice in SYNC_NOTICE.
sync_call() {
    local table=$1 name=fg_sync
    PGAPPNAME=$name wh_psql -c "CALL dbsync_sync('$SRV', '$table')" >"$T_WORK/$name.out" 2>"$T_WORK/$name.err" || {
        diag "CALL dbsync_sync('$SRV', '$table') failed: $(cat "$T_WORK/$name.err")"
        SYNC_NOTICE=
        return 1
    }
    SYNC_NOTICE=$(notice_of $name "$table")
}

# run_row TABLE: SELECT dbsync_run(srv, table) -> "mode|status|upserted|deleted|message"
run_row() {
    wh_val "SELECT concat_ws('|', coalesce(mode, '-'), status, rows_upserted, rows_deleted, message) FROM dbsync_run('$SRV', '$1')"
}

# ---------------------------------------------------------------- comparison
# compare NAME SRC_CMD WH_CMD: both commands print one canonical line per row in
# key order; ok when the streams are identical (row by row).  Sets CMP_ROWS.
compare() {
    local name=$1 src_cmd=$2 wh_cmd=$3 a b
    a=$T_WORK/cmp.src b=$T_WORK/cmp.wh
    if ! eval "$src_cmd" >"$a" 2>"$a.err"; then
        not_ok "$name (could not read the source: $(head -c 300 "$a.err"))"
        return 1
    fi
    if ! eval "$wh_cmd" >"$b" 2>"$b.err"; then
        not_ok "$name (could not read the warehouse: $(head -c 300 "$b.err"))"
        return 1
    fi
    CMP_ROWS=$(wc -l <"$a")
    if cmp -s "$a" "$b"; then
        ok "$name ($CMP_ROWS rows identical, md5 $(md5sum <"$a" | cut -c1-12))"
        rm -f "$a" "$b"
        return 0
    fi
    not_ok "$name"
    diag "source $(wc -l <"$a") rows, warehouse $(wc -l <"$b") rows; first differences (< source, > warehouse):"
    diag "$(diff "$a" "$b" | head -n 20)"
    cp "$a" "$T_WORK/$name.src.txt" 2>/dev/null || true
    cp "$b" "$T_WORK/$name.wh.txt" 2>/dev/null || true
    return 1
}

# ---------------------------------------------------------------- logs
# wh_log_mark / wh_log_since: the warehouse log written since the mark.
wh_log_mark()  { WH_LOG_MARK=$(stat -c %s "$WH_LOG" 2>/dev/null || echo 0); }
wh_log_since() { tail -c "+$((WH_LOG_MARK + 1))" "$WH_LOG" 2>/dev/null; }

# same NAME TABLE [SRC_WHERE] [WH_WHERE] [COLS] [LOCAL_SCHEMA]: compare TABLE at the
# source (src_dump) and in the warehouse (wh_dump; schema LOCAL_SCHEMA, default
# $SRV).  COLS: column names separated by spaces, default $COLS.
same() {
    local q1 q2
    printf -v q1 'src_dump %q %q %q' "$2" "${3:-}" "${5:-$COLS}"
    printf -v q2 'wh_dump %q %q %q %q' "$2" "${4:-}" "${5:-$COLS}" "${6:-$SRV}"
    compare "$1" "$q1" "$q2"
}

# ======================================================================== fault cases
# The cases of test/fault_pg.sh and test/fault_mysql.sh (their headers list them).
#
# ---------------------------------------------------------------- driver interface
# What a fault script defines before it runs the cases:
#   SRV                  the main server (tables $FAULT_TABLES, ROWS rows each, ids
#                        1..ROWS; batch_size BATCH)
#   SRC_NS               the schema (PostgreSQL) / database (MariaDB) of the source tables
#   SRC_NOW              SQL for the current time at the source (a timestamp value)
#   SRC_SERVER_OPTIONS   the CREATE SERVER options that reach the source (src_server)
# and where the defaults below do not fit:
#   COLS                 the columns `same` compares by default (space separated)
#   SRC_PROC SRC_LABEL   how figures name the process kill -9 kills / TAP names the server
#   REMOTE_WHAT          what a dbsync session runs at the source ("query", "statement")
#   SRC_READS_HOW SRC_READS_PLUS   the read counter's name and what else it counts
#                        (wording of the "source rows read twice" figure)
#   RESUME_READ_SLACK    rows the resume may read at the source beyond the rows after
#                        the checkpoint; REPEAT_READ_SLACK: beyond one batch, the rows
#                        the interrupted run may have read past its checkpoint
# functions:
#   src_exec SQL         run statements at the source; src_exec_utc SQL: in UTC
#   src_val SQL          one value from the source ('' on error)
#   src_session NAME     an interactive source client reading SQL from stdin
#   src_dump TABLE [WHERE] [COLS] / wh_dump TABLE [WHERE] [COLS] [SCHEMA]
#                        one canonical line per row, in key order (for `same`)
#   src_rows_read TABLE  the source's counter of rows read (for TABLE or server-wide)
#   src_reads_settle     wait until that counter is complete (default: at once)
#   remote_sessions      number of dbsync statements running at the source for this
#                        test ("?" on error); remote_sessions_list: them, one a line
#   src_freeze / src_thaw        SIGSTOP / SIGCONT the source server
#   src_kill9 / src_restart_killed   kill -9 the source server / wait until it is
#                        gone and start it again (false when it does not start)
#   src_create_late, src_create_ties ROWS, src_create_deletes_tables,
#   src_create_schema_tables, src_widen_sch, src_create_sch_new
#                        the source tables of cases G, H, I, J (see there)
#   src_ties_summary     "N rows at HH:MI:SS, ..." of the table ties
#   late_writer_begin, late_open_checks CASE   the driver's part of case G1
#   ties_lock_prepare, ties_lock, ties_load_blocked, ties_unlock
#                        the session on fd 8 that holds the load of case H

FAULT_TABLES="big_kill big_term big_crash big_cancel big_timeout big_readto big_shut"
SHUTDOWN_LIMIT=3      # seconds: the contract's 2 s plus pg_ctl's polling and the checkpoint
CANCEL_LIMIT=0.5      # seconds: "well under a second" (the remote cancel is sent without waiting for it)

# defaults of the driver interface
COLS="id val updated_at"
SRC_PROC="the source"
SRC_LABEL=source
REMOTE_WHAT=query
SRC_READS_HOW=
SRC_READS_PLUS=
RESUME_READ_SLACK=0
REPEAT_READ_SLACK=0
src_reads_settle() { :; }

# src_server NAME OPTIONS: a dbsync server NAME for the source with the extra
# OPTIONS (e.g. "tables 'late', lookback '0 seconds'") and its user mapping.
src_server() {
    wh_psql -q <<SQL >/dev/null
CREATE SERVER $1 FOREIGN DATA WRAPPER dbsync OPTIONS ($SRC_SERVER_OPTIONS, delete_check_interval '0', $2);
CREATE USER MAPPING FOR postgres SERVER $1 OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
}

# session_open NAME FD: an interactive source session (src_session NAME) reading
# the fifo $T_WORK/NAME.fifo, held open for writing on file descriptor FD (7 or 8);
# its output in $T_WORK/NAME.out, its pid in SESSION_PID.
session_open() {
    local fifo=$T_WORK/$1.fifo
    rm -f "$fifo"; mkfifo "$fifo"
    src_session "$1" <"$fifo" >"$T_WORK/$1.out" 2>&1 &
    SESSION_PID=$!
    eval "exec $2>\"\$fifo\""
}
# session_close FD PID: close the session's input; it ends.
session_close() {
    eval "exec $1>&-"
    wait "$2" 2>/dev/null || true
}

# cursor_utc TABLE: the stored cursor of TABLE as a UTC timestamp literal.
cursor_utc() {
    wh_val "SELECT to_char(cursor_value::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
            FROM dbsync.status WHERE server = '$SRV' AND table_name = '$1'"
}

# ---------------------------------------------------------------- after a fault
# wait_remote_gone CASE [TABLE]: the source's dbsync session ends; figure of how
# long it took; then reads the source's read counter (FETCH_R1).
wait_remote_gone() {
    local t0 n l
    t0=$(now)
    for _ in $(seq 1 100); do
        n=$(remote_sessions)
        [[ $n == 0 ]] && break
        sleep 0.1
    done
    if [[ $n == 0 ]]; then
        ok "$1: no dbsync $REMOTE_WHAT left running at the source"
        figure "$1 remote $REMOTE_WHAT gone after" "$(elapsed "$t0" "$(now)") s (measured from after the client returned)"
        [[ -n ${2:-} ]] && FETCH_R1=$(src_rows_read "$2")
    else
        not_ok "$1: no dbsync $REMOTE_WHAT left running at the source ($n still there after 10 s)"
        remote_sessions_list | while read -r l; do diag "$l"; done
    fi
}

# load_ends CASE SECONDS WHAT: wait for the load's client; if it is still running
# after SECONDS: not ok "CASE: WHAT", stop it, false.
load_ends() {
    bg_wait "$LOAD_PID" "$2" && return 0
    not_ok "$1: $3"
    bg_kill "$LOAD_PID" "$1"
    return 1
}

# error_recorded CASE TABLE ERR_GLOB NAME: the CALL's notice says "error" for
# TABLE, and dbsync.status has last_status error and a last_error matching ERR_GLOB.
error_recorded() {
    local c=$1 table=$2 glob=$3 name=$4 n err
    n=$(notice_of "$c" "$table")
    err=$(st last_error "$table")
    # shellcheck disable=SC2053  # ERR_GLOB is a pattern
    if [[ $n == *", error, "* && $(st last_status "$table") == error && $err == $glob ]]; then
        ok "$c: $name"
    else
        not_ok "$c: $name"
        diag "notice: $n; psql rc $BG_RC; stderr: $(head -c 600 "$T_WORK/$c.err")"
    fi
    diag "last_error: $err"
}

# run_expect NAME TABLE GLOB: run TABLE (run_row, the row in R); ok when R matches GLOB.
run_expect() {
    R=$(run_row "$2")
    # shellcheck disable=SC2053  # GLOB is a pattern
    if [[ $R == $3 ]]; then ok "$1 ($R)"; else not_ok "$1 (got $R)"; fi
}

# call_failed_with CASE MESSAGE: the CALL failed with MESSAGE.
call_failed_with() {
    if grep -q "$2" "$T_WORK/$1.err" && ((BG_RC != 0)); then
        ok "$1: the CALL fails with '$2'"
    else
        not_ok "$1: the CALL fails with '$2'"
        diag "psql rc $BG_RC: $(head -c 600 "$T_WORK/$1.err")"
    fi
}

# start_load CASE TABLE [PRE_SQL]: CALL dbsync_sync in the background.
start_load() {
    local app=$1 table=$2 pre=${3:-}
    FETCH_R0=$(src_rows_read "$table") FETCH_R1=
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

# load_fault CASE TABLE MIN_ROWS FAULT [PRE_SQL]: start a load of TABLE; once a
# checkpoint of MIN_ROWS rows is committed, FAULT CASE TABLE injects the fault and
# checks what follows; a load that never gets there is stopped.
load_fault() {
    local c=$1 table=$2 min=$3 fault=$4
    start_load "$c" "$table" "${5:-}"
    if mid_load "$c" "$table" "$min"; then
        "$fault" "$c" "$table"
    else
        bg_kill "$LOAD_PID" "$c"
    fi
}
# frozen_load_fault ...: load_fault with a FAULT that freezes the source; thawed after.
frozen_load_fault() {
    load_fault "$@"
    src_thaw
}

# committed_state CASE TABLE: after the fault, the warehouse holds exactly the last
# checkpoint: count = rows_total = resume_key (ids are 1..N), 0 < it <= ROWS, a
# multiple of BATCH.  Sets CKPT.
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

# same_to_checkpoint CASE TABLE: the warehouse holds the source's rows up to CKPT.
same_to_checkpoint() {
    same "$1: warehouse holds exactly the source's rows up to the checkpoint" "$2" "id <= $CKPT"
}

# check_after_restart CASE TABLE: after a fault that restarted the warehouse: the
# source's session ends, the committed state is the last checkpoint, and the next
# run resumes from it.
check_after_restart() {
    wait_remote_gone "$1" "$2"
    committed_state "$1" "$2"
    same_to_checkpoint "$1" "$2"
    resume_case "$1" "$2"
}

# thaw_and_check CASE TABLE: after a fault on a frozen source: the committed state
# (checked while the source is still frozen), then thaw it, its session ends, and
# the warehouse holds the source's rows up to the checkpoint.
thaw_and_check() {
    committed_state "$1" "$2"
    src_thaw
    wait_remote_gone "$1" "$2"
    same_to_checkpoint "$1" "$2"
}

# resume_case CASE TABLE [no_compare]: the next run resumes after the checkpoint,
# re-reads only the rows after it, and the warehouse then equals the source.
resume_case() {
    local c=$1 table=$2 expect up t0 mode r2 r3 extra lm lr
    expect=$(src_val "SELECT count(*) FROM $SRC_NS.$table WHERE id > $CKPT")
    r2=$(src_rows_read "$table")
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
    # what the source read: the interrupted run beyond its checkpoint, and the resume
    if [[ -n ${FETCH_R1:-} && -n ${FETCH_R0:-} ]]; then
        src_reads_settle
        r3=$(src_rows_read "$table")
        extra=$((FETCH_R1 - FETCH_R0 - CKPT))
        figure "$c source rows read twice" "the interrupted run read $((FETCH_R1 - FETCH_R0)) rows at the source$SRC_READS_HOW = $CKPT committed + $extra of the interrupted batch$SRC_READS_PLUS; the resume read $((r3 - r2)) (rows after the checkpoint: $expect)"
        if (((r3 - r2) <= expect + RESUME_READ_SLACK)); then
            ok "$c: the resume read only the rows after the checkpoint at the source ($((r3 - r2)) for $expect)"
        else
            not_ok "$c: the resume read only the rows after the checkpoint at the source (it read $((r3 - r2)), rows after the checkpoint: $expect)"
        fi
        if ((extra >= 0 && extra <= BATCH + REPEAT_READ_SLACK)); then
            ok "$c: work repeated at the source is at most one batch ($extra <= $BATCH rows)"
        else
            not_ok "$c: work repeated at the source is at most one batch ($extra rows, batch_size $BATCH)"
        fi
    fi
    [[ ${3:-} == no_compare ]] || same "$c: warehouse equals source after the resume" "$table"
}

# run_load_faults: the cases that inject a fault into a load of $SRV's big_* tables
# (or into a run, L), in order: A B C D E F K L.
run_load_faults() {
    case_kill9_source
    case_terminate_backend
    case_warehouse_restart
    case_frozen_cancel
    case_frozen_statement_timeout
    case_frozen_read_timeout
    case_frozen_shutdown
    case_frozen_connect_timeout
}

# ---------------------------------------------------------------- A
# kill -9 of the whole source server mid-load
case_kill9_source() { load_fault A_kill9_source big_kill $((3 * BATCH)) fault_kill9_source; }
fault_kill9_source() {
    local c=$1 table=$2 t0
    t0=$(now)
    src_kill9
    if load_ends "$c" 30 "the run ends after the source died (still running after 30 s)"; then
        figure "$c time to detect" "$(elapsed "$t0" "$BG_END") s from kill -9 of $SRC_PROC to the end of the CALL"
        error_recorded "$c" "$table" '?*' "the run reports an error for the table and records it in dbsync.status"
    fi
    committed_state "$c" "$table"
    src_restart_killed || { not_ok "$c: $SRC_LABEL restarts"; exit 1; }
    same_to_checkpoint "$c" "$table"
    resume_case "$c" "$table"
}

# ---------------------------------------------------------------- B
# pg_terminate_backend of the syncing backend mid-load; then the source changes
# while the load is interrupted (rows updated and deleted on both sides of the
# checkpoint, a row inserted)
case_terminate_backend() { load_fault B_terminate_backend big_term $((3 * BATCH)) fault_terminate_backend; }
fault_terminate_backend() {
    local c=$1 table=$2 t0
    # through the poller's open connection: a new psql costs several batches here
    t0=$(now)
    poll_q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$c'" >/dev/null
    if load_ends "$c" 30 "the backend ends after pg_terminate_backend (still running after 30 s)"; then
        figure "$c time to detect" "$(elapsed "$t0" "$BG_END") s from pg_terminate_backend to the end of the client"
        if grep -q "terminating connection due to administrator command" "$T_WORK/$c.err"; then
            ok "$c: the backend was terminated mid-load"
        else
            not_ok "$c: the backend was terminated mid-load"
            diag "psql rc $BG_RC: $(head -c 600 "$T_WORK/$c.err")"
        fi
    fi
    wait_remote_gone "$c" "$table"
    committed_state "$c" "$table"
    same_to_checkpoint "$c" "$table"
    # changes while the load is interrupted
    src_exec "UPDATE $SRC_NS.$table SET val = 'changed', updated_at = $SRC_NOW
                WHERE id IN (10, $((CKPT - 1)), $CKPT, $((CKPT + 1)), $((ROWS - 1)));
              DELETE FROM $SRC_NS.$table WHERE id IN (15, $((CKPT + 7)));
              INSERT INTO $SRC_NS.$table VALUES ($((ROWS + 1)), 'new', $SRC_NOW);"
    # rows changed below the checkpoint come with the next incremental run
    # (the load's high-water mark was taken when it started)
    resume_case "$c" "$table" no_compare
    if sync_call "$table" && [[ $SYNC_NOTICE == "incremental, ok, "* ]]; then
        ok "$c: the next run is incremental ($SYNC_NOTICE)"
    else
        not_ok "$c: the next run is incremental (got: ${SYNC_NOTICE:-})"
    fi
    same "$c: warehouse equals source after resume + incremental (changes made during the interruption)" "$table"
}

# ---------------------------------------------------------------- C
# immediate-mode restart of the warehouse mid-load
case_warehouse_restart() { load_fault C_warehouse_immediate_restart big_crash $((3 * BATCH)) fault_warehouse_restart; }
fault_warehouse_restart() {
    local c=$1 table=$2 t0 t1
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
    check_after_restart "$c" "$table"
}

# ---------------------------------------------------------------- D
# frozen source (SIGSTOP) + pg_cancel_backend
case_frozen_cancel() { frozen_load_fault D_frozen_source_cancel big_cancel $((2 * BATCH)) fault_frozen_cancel; }
fault_frozen_cancel() {
    local c=$1 table=$2 t0 dt bpid
    src_freeze
    sleep 1    # the backend drains what the kernel buffered, then waits on the socket
    bpid=$(backend_pid "$c")
    diag "backend $bpid waits on: $(wh_val "SELECT wait_event_type || ':' || wait_event FROM pg_stat_activity WHERE pid = '${bpid:-0}'")"
    t0=$(now)
    poll_q "SELECT pg_cancel_backend($bpid)" >/dev/null
    if load_ends "$c" 20 "the cancel ended the sync (still running 20 s after pg_cancel_backend)"; then
        dt=$(elapsed "$t0" "$BG_END")
        figure "$c time to give up" "$dt s from pg_cancel_backend to the end of the CALL (source frozen)"
        if lt "$dt" "$CANCEL_LIMIT"; then ok "$c: the cancel ended the sync within ${CANCEL_LIMIT}s (${dt}s)"
        else not_ok "$c: the cancel ended the sync within ${CANCEL_LIMIT}s (took ${dt}s)"; fi
        call_failed_with "$c" "canceling statement due to user request"
    fi
    # nothing of the interrupted batch is visible (checked while the source is still frozen)
    thaw_and_check "$c" "$table"
    resume_case "$c" "$table"
}

# ---------------------------------------------------------------- E
# frozen source (SIGSTOP) + statement_timeout
TIMEOUT_S=3   # long enough for the first checkpoint on a busy machine; the source freezes right after it
case_frozen_statement_timeout() {
    frozen_load_fault E_frozen_source_statement_timeout big_timeout "$BATCH" fault_frozen_statement_timeout \
        "SET statement_timeout = '${TIMEOUT_S}s'"
}
fault_frozen_statement_timeout() {
    local c=$1 table=$2 tf total_s over
    src_freeze
    tf=$(elapsed "$BG_START" "$(now)")
    if load_ends "$c" 20 "statement_timeout ended the sync (still running 20 s later)"; then
        total_s=$(elapsed "$BG_START" "$BG_END")
        over=$(awk -v a="$total_s" -v t="$TIMEOUT_S" 'BEGIN { printf "%.3f", a - t }')
        figure "$c time to give up" "CALL ended ${total_s}s after it started: ${over}s past the ${TIMEOUT_S}s statement_timeout (source frozen at ${tf}s)"
        lt "$tf" "$TIMEOUT_S" || not_ok "$c: setup: the source froze before the timeout (froze at ${tf}s)"
        if lt "$over" "$CANCEL_LIMIT"; then ok "$c: statement_timeout ended the sync within ${CANCEL_LIMIT}s of the deadline (${over}s)"
        else not_ok "$c: statement_timeout ended the sync within ${CANCEL_LIMIT}s of the deadline (${over}s)"; fi
        call_failed_with "$c" "canceling statement due to statement timeout"
    fi
    thaw_and_check "$c" "$table"
    resume_case "$c" "$table"
}

# ---------------------------------------------------------------- F
# frozen source (SIGSTOP) + read_timeout '2': no cancel, the sync gives up itself
READ_TIMEOUT=2
case_frozen_read_timeout() {
    wh_psql -q -c "ALTER SERVER $SRV OPTIONS (ADD read_timeout '$READ_TIMEOUT')"
    frozen_load_fault F_frozen_source_read_timeout big_readto $((2 * BATCH)) fault_frozen_read_timeout
}
fault_frozen_read_timeout() {
    local c=$1 table=$2 t0 dt limit=$((READ_TIMEOUT + 2))
    src_freeze
    t0=$(now)
    if load_ends "$c" 30 "read_timeout ended the sync (still running 30 s after the freeze)"; then
        dt=$(elapsed "$t0" "$BG_END")
        figure "$c time to give up" "$dt s from SIGSTOP of the source to the end of the CALL (read_timeout ${READ_TIMEOUT}s)"
        if lt "$dt" "$limit"; then ok "$c: read_timeout ended the sync within ${limit}s of the freeze (${dt}s)"
        else not_ok "$c: read_timeout ended the sync within ${limit}s of the freeze (${dt}s)"; fi
        error_recorded "$c" "$table" '*timed out*' "the table's run ends in an error row ('timed out ...') recorded in dbsync.status"
    fi
    thaw_and_check "$c" "$table"
    wh_psql -q -c "ALTER SERVER $SRV OPTIONS (DROP read_timeout)"
    resume_case "$c" "$table"
}

# ---------------------------------------------------------------- K
# frozen source + fast shutdown of the warehouse: the blocked backend must exit
# promptly (contract: shutdown interrupts a sync waiting on the network)
case_frozen_shutdown() { frozen_load_fault K_frozen_source_shutdown big_shut $((2 * BATCH)) fault_frozen_shutdown; }
fault_frozen_shutdown() {
    local c=$1 table=$2 t0 dt rc
    src_freeze
    sleep 1
    t0=$(now)
    (cd / && as_pg "$PG_BINDIR/pg_ctl" -D "$WH_DATADIR" -m fast -w -t 20 stop >/dev/null 2>&1)
    rc=$?
    dt=$(elapsed "$t0" "$(now)")
    figure "$c time to give up" "$dt s for pg_ctl stop -m fast of the warehouse while the sync waited on the frozen source"
    if ((rc == 0)) && lt "$dt" "$SHUTDOWN_LIMIT"; then ok "$c: fast shutdown completed within ${SHUTDOWN_LIMIT}s (${dt}s)"
    else not_ok "$c: fast shutdown completed within ${SHUTDOWN_LIMIT}s (pg_ctl rc $rc, ${dt}s)"; fi
    bg_wait "$LOAD_PID" 10 || kill "$LOAD_PID" 2>/dev/null
    pg_server_running "$WH_DATADIR" && pg_server_stop "$WH_DATADIR" immediate
    src_thaw
    pg_server_start "$WH_DATADIR" "$WH_LOG" || { not_ok "$c: warehouse restarts"; exit 1; }
    check_after_restart "$c" "$table"
}

# ---------------------------------------------------------------- L
# frozen source at connect time: connect_timeout '2' bounds the wait (big_kill,
# loaded by case A, must stay intact)
case_frozen_connect_timeout() {
    local c=L_frozen_source_connect_timeout before t0 r dt
    wh_psql -q -c "ALTER SERVER $SRV OPTIONS (ADD connect_timeout '2')"
    before=$(wh_val "SELECT count(*) FROM $SRV.big_kill")
    src_freeze
    t0=$(now)
    r=$(timeout 30 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$WH_PORT" -U postgres -d "$WH_DB" \
            -c "SELECT concat_ws('|', status, message) FROM dbsync_run('$SRV', 'big_kill')" 2>&1)
    dt=$(elapsed "$t0" "$(now)")
    src_thaw
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
}

# ---------------------------------------------------------------- G
# case_late_commits SERVER LOOKBACK G1_CASE G1_LABEL: late commits, on a new server
# SERVER (table late, lookback LOOKBACK).
#   G1_CASE: a transaction open at the source during a sync (late_writer_begin: its
#      row 1001 is stamped before the newest committed row) commits after the sync;
#      late_open_checks checks the run made while it was open; the next run brings
#      its row (G1_LABEL: what catches it, e.g. "lookback 0").
#   G2: with lookback '1 minute', a row committed after a sync with updated_at 30 s
#      below the stored cursor (and an update to 20 s below it) arrive.
case_late_commits() {
    local c=$3 label=$4 wpid cur
    SRV=$1
    src_create_late
    src_server "$SRV" "tables 'late', lookback '$2'"
    sync_call late
    same "G_late: initial load" late

    session_open late_writer 7
    wpid=$SESSION_PID
    late_writer_begin
    sleep 0.05
    src_exec "INSERT INTO $SRC_NS.late VALUES (1002, 'committed before the sync', $SRC_NOW)"
    sync_call late
    late_open_checks "$c"
    echo "COMMIT;" >&7
    session_close 7 "$wpid"
    sync_call late
    diag "after the late commit: $SYNC_NOTICE"
    same "$c: the row of the transaction in flight during the sync arrives ($label)" late

    c=G2_lookback
    wh_psql -q -c "ALTER SERVER $SRV OPTIONS (SET lookback '1 minute')"
    cur=$(cursor_utc late)
    src_exec_utc "INSERT INTO $SRC_NS.late VALUES (1003, 'late by 30 s', timestamp '$cur' - interval '30' second);
                  UPDATE $SRC_NS.late SET val = 'updated late by 20 s', updated_at = timestamp '$cur' - interval '20' second
                   WHERE id = 1002;"
    sync_call late
    diag "stored cursor $cur (UTC); run: $SYNC_NOTICE"
    same "$c: rows committed after the sync with updated_at within lookback below the cursor arrive" late
}

# ---------------------------------------------------------------- H
# case_ties SERVER: ties on the cursor across batch boundaries, on a new server
# SERVER (table ties, lookback 0).  The load is held after its first checkpoint
# (the session on fd 8 locks the table at the source, which blocks the next
# batch), terminated there and resumed: the resume boundary lies in a tie.  Then
# rows tying with the stored cursor arrive, and are not rewritten when re-read.
case_ties() {
    local c=H_ties tie_rows=$((BATCH * 6)) rows_save=$ROWS lpid tmax
    SRV=$1
    src_create_ties "$tie_rows"
    src_server "$SRV" "tables 'ties', batch_size '$BATCH', lookback '0 seconds'"
    diag "ties: $(src_ties_summary)"
    session_open ties_locker 8
    lpid=$SESSION_PID
    ties_lock_prepare
    start_load $c ties
    if wait_ckpt_fast $c ties "$BATCH" 60; then
        ties_lock
        wait_until 10 ties_load_blocked || diag "the load did not block on the lock"
        wh_val "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$c'" >/dev/null
        bg_wait "$LOAD_PID" 20 || bg_kill "$LOAD_PID" $c
    fi
    poll_close
    ties_unlock
    session_close 8 "$lpid"
    CKPT=$(wh_val "SELECT coalesce(resume_key[1], '0') FROM dbsync.tables WHERE server = '$SRV' AND table_name = 'ties'")
    diag "load held and terminated after checkpoint at id $CKPT (the tie at that key continues into the next batch)"
    ROWS=$tie_rows FETCH_R1=
    if ((CKPT > 0)); then
        resume_case $c ties
    else
        not_ok "$c: the load was interrupted after a checkpoint (resume_key $CKPT)"
        sync_call ties
    fi
    ROWS=$rows_save
    tmax=$(cursor_utc ties)
    diag "stored cursor after the load: $tmax (UTC)"
    # new rows tying with the stored cursor, and an update that keeps the tied value
    src_exec_utc "INSERT INTO $SRC_NS.ties VALUES $(tied_rows $((tie_rows + 1)) $((tie_rows + 10)) 'tie ' "$tmax");
                  UPDATE $SRC_NS.ties SET val = 'updated within the tie' WHERE id = $tie_rows;"
    sync_call ties
    diag "run after new tied rows: $SYNC_NOTICE"
    same "$c: rows tying with the stored cursor (inserted and updated after the load) arrive (lookback 0)" ties
    src_exec_utc "INSERT INTO $SRC_NS.ties VALUES $(tied_rows $((tie_rows + 11)) $((tie_rows + 15)) 'tie again ' "$tmax")"
    sync_call ties
    same "$c: a second round of tied rows arrives" ties
    if [[ $SYNC_NOTICE == "incremental, ok, 5 upserted"* ]]; then
        ok "$c: the incremental run wrote only the 5 new rows (tied rows re-read, not rewritten)"
    else
        not_ok "$c: the incremental run wrote only the 5 new rows (got: $SYNC_NOTICE)"
    fi
}

# tied_rows FROM TO LABEL TS: a VALUES list of rows (id, 'LABEL' id, timestamp TS)
# for ids FROM..TO (TS in UTC: insert with src_exec_utc).
tied_rows() {
    local i v=()
    for ((i = $1; i <= $2; i++)); do v+=("($i, '$3$i', timestamp '$4')"); done
    local IFS=,; echo "${v[*]}"
}

# ---------------------------------------------------------------- I
# case_deletes PREFIX SCHEMA: deletes between runs (hard, soft, ignore; cursor and
# full tables) through the servers PREFIXh (del_h, del_f), PREFIXs (del_s, deletes
# 'soft') and PREFIXi (del_i, deletes 'ignore'), all with target_schema SCHEMA.
# src_create_deletes_tables: del_h, del_s, del_i (id, val, updated_at a day old)
# and del_f (id, val: no cursor), ids 1..2000.
case_deletes() {
    local c=I_deletes p=$1 schema=$2 t r flagged
    src_create_deletes_tables
    src_server "${p}h" "tables 'del_h,del_f', target_schema '$schema'"
    src_server "${p}s" "tables 'del_s', target_schema '$schema', deletes 'soft'"
    src_server "${p}i" "tables 'del_i', target_schema '$schema', deletes 'ignore'"
    SRV=${p}h; sync_call del_h; sync_call del_f
    SRV=${p}s; sync_call del_s
    SRV=${p}i; sync_call del_i
    for t in del_h del_s del_i; do
        src_exec "DELETE FROM $SRC_NS.$t WHERE id IN (1, 777, 2000);
                  UPDATE $SRC_NS.$t SET val = 'upd', updated_at = $SRC_NOW WHERE id = 5"
    done
    src_exec "DELETE FROM $SRC_NS.del_f WHERE id IN (1, 777, 2000); UPDATE $SRC_NS.del_f SET val = 'upd' WHERE id = 5"

    SRV=${p}h
    run_expect "$c hard: incremental run, 1 upserted, 3 deleted" del_h 'incremental|ok|1|3*'
    same "$c hard: warehouse equals source" del_h "" "" "$COLS" "$schema"
    run_expect "$c hard, table without cursor: full run, 1 upserted, 3 deleted" del_f 'full|ok|1|3*'
    same "$c hard, table without cursor: warehouse equals source" del_f "" "" "id val" "$schema"
    # a delete balanced by an insert between runs (equal counts before the insert is applied)
    src_exec "DELETE FROM $SRC_NS.del_h WHERE id = 2; INSERT INTO $SRC_NS.del_h VALUES (5001, 'new', $SRC_NOW)"
    r=$(run_row del_h)
    diag "delete 1 + insert 1: $r"
    same "$c hard, a delete and an insert between runs: warehouse equals source" del_h "" "" "$COLS" "$schema"
    [[ $(st rows_total del_h) == "$(src_val "SELECT count(*) FROM $SRC_NS.del_h")" ]] &&
        ok "$c hard: rows_total equals the source's count" || not_ok "$c hard: rows_total equals the source's count ($(st rows_total del_h))"
    src_exec "DELETE FROM $SRC_NS.del_h"
    r=$(run_row del_h)
    diag "all rows deleted: $r"
    same "$c hard, every row deleted at the source: warehouse empty too" del_h "" "" "$COLS" "$schema"

    SRV=${p}s
    run_expect "$c soft: incremental run, 1 upserted, 3 flagged" del_s 'incremental|ok|1|3*'
    same "$c soft: rows not flagged _dbsync_deleted equal the source" del_s "" "NOT _dbsync_deleted" "$COLS" "$schema"
    flagged=$(wh_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM $schema.del_s WHERE _dbsync_deleted")
    [[ $flagged == "1,777,2000" ]] && ok "$c soft: exactly the deleted keys are flagged ($flagged)" ||
        not_ok "$c soft: exactly the deleted keys are flagged (got '$flagged')"
    src_exec "INSERT INTO $SRC_NS.del_s VALUES (777, 'back again', $SRC_NOW)"
    r=$(run_row del_s)
    same "$c soft: a key re-inserted at the source is live again" del_s "" "NOT _dbsync_deleted" "$COLS" "$schema"

    SRV=${p}i
    run_expect "$c ignore: incremental run, 1 upserted, 0 deleted" del_i 'incremental|ok|1|0*'
    same "$c ignore: the rows still at the source are equal" del_i "" "id NOT IN (1, 777, 2000)" "$COLS" "$schema"
    [[ $(wh_val "SELECT count(*) FROM $schema.del_i WHERE id IN (1, 777, 2000)") == 3 ]] &&
        ok "$c ignore: the deleted rows are kept locally" || not_ok "$c ignore: the deleted rows are kept locally"
}

# ---------------------------------------------------------------- J
# case_schema_changes SERVER: schema changes between runs (column added, widened,
# dropped; table dropped; new table) on a new server SERVER (tables sch%).
# src_create_schema_tables: sch (id, val varchar(10), note, updated_at; ids
# 1..1000) and sch_gone (id, val; ids 1..50); src_widen_sch: val -> varchar(60),
# extra -> bigint; src_create_sch_new: sch_new (id, val, updated_at; ids 1..300).
case_schema_changes() {
    local c=J_schema r types
    SRV=$1
    src_create_schema_tables
    src_server "$SRV" "tables 'sch%'"
    wh_val "SELECT count(*) FROM dbsync_run('$SRV')" >/dev/null
    same "$c: initial" sch "" "" "id val note updated_at"

    # column added (with values), then a run
    src_exec "ALTER TABLE $SRC_NS.sch ADD COLUMN extra int DEFAULT 7;
              UPDATE $SRC_NS.sch SET extra = id * 3, updated_at = $SRC_NOW WHERE id % 100 = 0"
    r=$(run_row sch)
    diag "after ADD COLUMN: $r"
    same "$c: a column added at the source is added locally and backfilled" sch "" "" "id val note extra updated_at"

    # widened types: varchar(10) -> varchar(60), int -> bigint
    src_widen_sch
    src_exec "INSERT INTO $SRC_NS.sch (id, val, note, extra) VALUES (1001, repeat('w', 60), 'wide', 5000000000)"
    r=$(run_row sch)
    diag "after widening: $r"
    types=$(wh_val "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = '$SRV.sch'::regclass AND attname IN ('val', 'extra')")
    [[ $types == "val character varying(60), extra bigint" ]] && ok "$c: widened column types are altered locally ($types)" ||
        not_ok "$c: widened column types are altered locally (got: $types)"
    same "$c: rows with values that need the wider types arrive" sch "" "" "id val note extra updated_at"

    # column dropped at the source: local data kept
    src_exec "ALTER TABLE $SRC_NS.sch DROP COLUMN note;
              INSERT INTO $SRC_NS.sch (id, val, extra) VALUES (1002, 'after drop', 1)"
    r=$(run_row sch)
    diag "after DROP COLUMN: $r"
    [[ $r == *\|ok\|* ]] && ok "$c: a run after a column was dropped at the source succeeds" || not_ok "$c: a run after a column was dropped at the source succeeds ($r)"
    [[ $(wh_val "SELECT count(note) FROM $SRV.sch WHERE id <= 1000") == 1000 ]] &&
        ok "$c: the dropped column's local data is kept" || not_ok "$c: the dropped column's local data is kept"
    same "$c: remaining columns equal the source" sch "" "" "id val extra updated_at"

    # table dropped at the source: local data kept, status says so
    src_exec "DROP TABLE $SRC_NS.sch_gone"
    r=$(wh_val "SELECT concat_ws('|', table_name, status, message) FROM dbsync_run('$SRV') WHERE table_name = 'sch_gone'")
    diag "after DROP TABLE: $r"
    [[ $(wh_val "SELECT count(*) FROM $SRV.sch_gone") == 50 && -n $(st remote_missing_since sch_gone) ]] &&
        ok "$c: a table dropped at the source keeps its local rows and remote_missing_since is set" ||
        not_ok "$c: a table dropped at the source keeps its local rows and remote_missing_since is set (rows $(wh_val "SELECT count(*) FROM $SRV.sch_gone"), since '$(st remote_missing_since sch_gone)')"

    # new table at the source: synced by the next server run
    src_create_sch_new
    wh_val "SELECT count(*) FROM dbsync_run('$SRV')" >/dev/null
    same "$c: a new table at the source is synced by the next run" sch_new
}
