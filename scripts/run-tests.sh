#!/usr/bin/env bash
# The body of `make test`: build + install dbsync, start the throwaway servers
# (scripts/testenv.sh), run the pg_regress suites (sql/*.sql against expected/*.out)
# and then every executable test/*.sh and test/*.py, and end with the line
#     N passed, M failed
# Exit status: non-zero when M > 0 or when no test ran at all.
#
# Environment:
#   TESTS="a b"     run only these tests (regress basenames and/or test/ script names,
#                   with or without extension)
#   SKIP_BUILD=1    do not run make / make install
#   TEST_TIMEOUT=N  seconds per test/ script (default 600)
#   KEEP_SERVERS=1  leave the servers running afterwards (stop: scripts/testenv.sh stop)
# Test scripts run as root from the repo root with env.sh exported (WH_PORT, SRC_PG_PORT,
# SRC_MY_PORT, ...; see scripts/lib.sh) plus DBSYNC_REPO. A script is one test, unless
# it prints TAP lines (`ok N - name`, `not ok N - name`, `# SKIP` allowed): then each
# line counts; a non-zero exit always adds a failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# shellcheck source=scripts/lib.sh
DBSYNC_NO_ENV_FILE=1 source scripts/lib.sh
PG_REGRESS=$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress
export DBSYNC_REPO=$REPO PG_CONFIG

passed=0 failed=0 skipped=0
failures=()

pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); failures+=("$1"); }

stop_servers() {
    [[ ${KEEP_SERVERS:-} == 1 ]] || bash "$REPO/scripts/testenv.sh" stop >/dev/null 2>&1 || true
}

finish() {
    stop_servers
    section summary
    if ((${#failures[@]})); then
        log "failed:"
        printf '  %s\n' "${failures[@]}" >&2
    fi
    if ((skipped)); then
        echo "$passed passed, $failed failed, $skipped skipped"
    else
        echo "$passed passed, $failed failed"
    fi
    if ((failed == 0 && passed > 0)); then exit 0; fi
    exit 1
}

# wanted NAME...: true when no TESTS filter is set or one of NAMEs is in it.
matched=" "
wanted() {
    [[ -z ${TESTS:-} ]] && return 0
    local n t
    for n in "$@"; do
        for t in $TESTS; do
            if [[ $t == "$n" ]]; then matched+="$t "; return 0; fi
        done
    done
    return 1
}

# Names in TESTS that matched no test are failures (typos must not pass silently).
check_unmatched() {
    local t
    for t in ${TESTS:-}; do
        [[ $matched == *" $t "* ]] || fail "TESTS: no test named '$t'"
    done
}

# ---------------------------------------------------------------- build
build() {
    section "build and install"
    make -s PG_CONFIG="$PG_CONFIG" && make -s PG_CONFIG="$PG_CONFIG" install
}

# ---------------------------------------------------------------- pg_regress
# Parse pg_regress's per-test lines (PG 15):
#   "test foo                          ... ok           12 ms"
#   "     foo                          ... FAILED       30 ms"   (in a parallel group)
#   "test foo                          ... failed (ignored) ..."
count_regress() {
    local line name result
    while IFS= read -r line; do
        [[ $line =~ ^(test[[:space:]]+|[[:space:]]+)([^[:space:]]+)[[:space:]]+\.\.\.[[:space:]]+(ok|FAILED|failed) ]] || continue
        name=${BASH_REMATCH[2]} result=${BASH_REMATCH[3]}
        case $result in
            ok) pass ;;
            FAILED) fail "regress: $name" ;;
            failed) skipped=$((skipped + 1)) ;;   # "failed (ignored)"
        esac
    done <"$1"
}

run_regress() {
    local tests=() f name
    for f in sql/*.sql; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .sql)
        wanted "$name" "$name.sql" && tests+=("$name")
    done
    section "pg_regress (${#tests[@]} tests)"
    ((${#tests[@]})) || { log "no regress tests to run in sql/"; return 0; }

    # pg_regress runs as postgres, who may not read the repo: it gets a copy of
    # sql/, expected/ and data/ (tests reach data/ through \getenv abs_srcdir PG_ABS_SRCDIR).
    local out=$DBSYNC_TESTDIR/regress
    local input=$out/input
    rm -rf "$out"
    mkdir -p "$input/expected"
    for f in sql expected data; do
        if [[ -d $f ]]; then cp -r "$f" "$input/"; fi
    done
    # pg_regress aborts the whole run on a missing expected file; an empty one makes
    # that test fail normally and still leaves its output in results/.
    for name in "${tests[@]}"; do
        if ! compgen -G "$input/expected/$name.out" >/dev/null &&
            ! compgen -G "$input/expected/${name}_[0-9].out" >/dev/null; then
            log "regress test $name has no expected/$name.out"
            : >"$input/expected/$name.out"
        fi
    done
    chown -R postgres:postgres "$out"

    # pg_regress drops and recreates the database; pg_cron and dbsync's launcher may be
    # connected to it, so drop it forcibly first.
    wh_psql -d postgres -c "DROP DATABASE IF EXISTS \"$WH_DB\" WITH (FORCE)"

    local rc=0
    (cd "$out" && as_pg "$PG_REGRESS" --inputdir="$input" --outputdir="$out" \
        --bindir="$PG_BINDIR" --host=127.0.0.1 --port="$WH_PORT" --user=postgres \
        --dbname="$WH_DB" "${tests[@]}") 2>&1 | tee "$out/pg_regress.log" || rc=$?
    local before=$failed
    count_regress "$out/pg_regress.log"
    if ((rc != 0 && failed == before)); then
        fail "pg_regress (exit $rc, see $out/pg_regress.log)"
    fi
    if [[ -s $out/regression.diffs ]]; then
        log "---- $out/regression.diffs (first 300 lines) ----"
        head -n 300 "$out/regression.diffs" >&2
        log "---- actual outputs: $out/results/NAME.out (copy to expected/ to accept)"
    fi
}

# ---------------------------------------------------------------- test/ scripts
# A script that killed or froze a server must not break the ones after it.
heal_servers() {
    my_server_signal CONT 2>/dev/null || true
    pg_server_running "$WH_DATADIR" || { warn "warehouse was down; restarting"; pg_server_start "$WH_DATADIR" "$WH_LOG"; }
    pg_server_running "$SRC_PG_DATADIR" || { warn "source PG was down; restarting"; pg_server_start "$SRC_PG_DATADIR" "$SRC_PG_LOG"; }
    my_server_pid >/dev/null || { warn "MariaDB was down; restarting"; my_server_start; }
}

# count_script NAME LOG RC: TAP lines if any, else the exit code.
count_script() {
    local name=$1 logf=$2 rc=$3 line n_tap=0 before=$failed
    while IFS= read -r line; do
        if [[ $line =~ ^not\ ok ]]; then
            n_tap=$((n_tap + 1))
            if [[ $line =~ \#[[:space:]]*TODO ]]; then skipped=$((skipped + 1)); else fail "$name: $line"; fi
        elif [[ $line =~ ^ok([[:space:]]|$) ]]; then
            n_tap=$((n_tap + 1))
            if [[ $line =~ \#[[:space:]]*SKIP ]]; then skipped=$((skipped + 1)); else pass; fi
        fi
    done <"$logf"
    if ((rc != 0)); then
        if ((failed == before)); then
            if ((rc == 124 || rc == 137)); then fail "$name (timed out)"; else fail "$name (exit $rc)"; fi
        fi
    elif ((n_tap == 0)); then
        pass
    fi
}

run_scripts() {
    local f name rc logdir=$DBSYNC_TESTDIR/tests scripts=()
    for f in test/*.sh test/*.py; do
        [[ -f $f ]] || continue
        name=$(basename "$f")
        wanted "$name" "${name%.*}" || continue
        if [[ -x $f ]]; then scripts+=("$f"); else log "skipping $f: not executable (chmod +x to make it a test)"; fi
    done
    section "test scripts (${#scripts[@]})"
    mkdir -p "$logdir"
    # Sorted by name across both extensions.
    mapfile -t scripts < <(printf '%s\n' "${scripts[@]}" | LC_ALL=C sort)
    for f in "${scripts[@]}"; do
        [[ -n $f ]] || continue
        name=$(basename "$f")
        log "---- $f"
        rc=0
        timeout -k 10 "${TEST_TIMEOUT:-600}" "./$f" </dev/null 2>&1 | tee "$logdir/$name.log" || rc=${PIPESTATUS[0]}
        count_script "$f" "$logdir/$name.log" "$rc"
        log "---- $f: exit $rc"
        heal_servers || fail "$f left a server that does not restart"
    done
}

# ---------------------------------------------------------------- main
bash scripts/deps.sh || { fail "scripts/deps.sh"; finish; }

if [[ ${SKIP_BUILD:-} != 1 ]]; then
    build || { fail "build (make / make install)"; finish; }
fi

section "test servers"
trap stop_servers EXIT
bash scripts/testenv.sh start || { fail "testenv start"; finish; }
# shellcheck source=/dev/null
source "$DBSYNC_TESTDIR/env.sh"

run_regress
run_scripts
check_unmatched
finish
