# shellcheck shell=bash
# shellcheck disable=SC2034  # BG_*, CKPT_SEEN, SYNC_NOTICE ... are read by the sourcing scripts
# Helpers shared by the fault-injection tests (test/fault_pg.sh, test/fault_mysql.sh,
# test/concurrency.sh).  Sourced, not run: it lives below test/lib/ so that the
# runner does not take it for a test.
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

# wait_checkpoint TABLE MIN_ROWS SECONDS: until a committed checkpoint of an
# unfinished initial load covers at least MIN_ROWS rows; prints rows_total.
wait_checkpoint() {
    local table=$1 min=$2 secs=$3 deadline v
    deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        v=$(wh_val "SELECT rows_total FROM dbsync.status WHERE server = '$SRV' AND table_name = '$table' AND initial_load_pending")
        if [[ -n $v ]] && ((v >= min)); then
            echo "$v"
            return 0
        fi
        sleep 0.01
    done
    return 1
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

# wait_ckpt_fast APP TABLE MIN_ROWS SECONDS: like wait_checkpoint, through the
# poller; also samples the rows the backend of APP has streamed into its
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
