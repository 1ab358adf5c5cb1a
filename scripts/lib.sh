# shellcheck shell=bash
# shellcheck disable=SC2034  # paths are used by the scripts that source this file
# Shared helpers for dbsync's test, CI and demo scripts.  Source it:
#
#     source "$(dirname "$0")/../scripts/lib.sh"
#
# Layout of a test environment (base dir $DBSYNC_TESTDIR, default /tmp/dbsync-test):
#     env.sh              ports and paths of the running servers (written by testenv.sh)
#     pg/wh/              warehouse PostgreSQL 15 data dir      (log: pg/wh.log)
#     pg/srcpg/           source PostgreSQL (YugabyteDB stand-in) (log: pg/srcpg.log)
#     pg/sock/            unix sockets of both PostgreSQL instances
#     mysql/data/         MariaDB (TiDB stand-in) data dir; mysql/mysqld.{pid,sock,err}
#     regress/            pg_regress output (results/, regression.diffs)
#     tests/              one log per test/ script
#
# Functions (all take extra arguments that are passed on to the client):
#     log/warn/die/section          messages on stderr
#     as_pg CMD...                  run CMD as the postgres OS user
#     wh_psql [ARGS]                psql to the warehouse ($WH_DB) as postgres over 127.0.0.1
#     src_psql [ARGS]               psql to srcdb on the source PG as src_user (password)
#     src_admin_psql [ARGS]         psql to srcdb on the source PG as postgres (superuser)
#     my_sql [ARGS]                 mariadb client to srcdb as src_user over 127.0.0.1
#     my_root_sql [ARGS]            mariadb client as root over the unix socket
#     pg_server_start DATADIR LOG   start a PostgreSQL instance (clean environment)
#     pg_server_stop DATADIR [MODE] stop it (fast, falls back to immediate); MODE=immediate
#     pg_server_pid DATADIR         pid of that instance's postmaster
#     my_server_start / my_server_stop [SIGNAL]   start / stop the MariaDB instance
#     my_server_pid                 pid of mariadbd (fails when it does not run)
#     my_server_signal SIG          e.g. STOP / CONT to freeze and thaw the source
#     wait_until SECONDS CMD...     retry CMD every 0.2 s until it succeeds or time is up
#     port_in_use PORT              true if something accepts TCP on 127.0.0.1:PORT
#
# The fault tests use the start/stop functions to kill and restart a source
# (e.g. `my_server_stop KILL; my_server_start`, `pg_server_stop "$SRC_PG_DATADIR" immediate`).

# ---------------------------------------------------------------- settings
: "${DBSYNC_TESTDIR:=/tmp/dbsync-test}"
# A running environment's env.sh is the truth about its ports and paths.
# testenv.sh sets DBSYNC_NO_ENV_FILE=1 while it (re)creates the environment.
if [[ -z ${DBSYNC_NO_ENV_FILE:-} && -f $DBSYNC_TESTDIR/env.sh ]]; then
    # shellcheck source=/dev/null
    source "$DBSYNC_TESTDIR/env.sh"
fi

: "${PG_BINDIR:=/usr/lib/postgresql/15/bin}"
: "${PG_CONFIG:=$PG_BINDIR/pg_config}"
: "${WH_PORT:=55432}"
: "${SRC_PG_PORT:=55433}"
: "${SRC_MY_PORT:=55306}"
: "${WH_DB:=dbsync_regress}"
: "${SRC_DB:=srcdb}"
: "${SRC_USER:=src_user}"
: "${SRC_PASSWORD:=src_pw}"

PG_SOCKDIR=$DBSYNC_TESTDIR/pg/sock
WH_DATADIR=$DBSYNC_TESTDIR/pg/wh
WH_LOG=$DBSYNC_TESTDIR/pg/wh.log
SRC_PG_DATADIR=$DBSYNC_TESTDIR/pg/srcpg
SRC_PG_LOG=$DBSYNC_TESTDIR/pg/srcpg.log
SRC_MY_DIR=$DBSYNC_TESTDIR/mysql
SRC_MY_DATADIR=$SRC_MY_DIR/data
SRC_MY_SOCKET=$SRC_MY_DIR/mysqld.sock
SRC_MY_PIDFILE=$SRC_MY_DIR/mysqld.pid
SRC_MY_LOG=$SRC_MY_DIR/mysqld.err

# ---------------------------------------------------------------- messages
log()     { printf '%s\n' "$*" >&2; }
warn()    { printf 'WARNING: %s\n' "$*" >&2; }
die()     { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
section() { printf '\n==== %s ====\n' "$*" >&2; }

# Print the last lines of a log file, for error reports.
log_tail() {
    local file=$1 n=${2:-40}
    if [[ -f $file ]]; then
        log "---- last $n lines of $file ----"
        tail -n "$n" "$file" >&2
        log "----"
    else
        log "(no log file $file)"
    fi
}

# ---------------------------------------------------------------- utilities
# Run a command as the postgres OS user (PostgreSQL refuses to run as root).
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    elif [[ $(id -un) == postgres ]]; then
        "$@"
    else
        die "must run as root (or as postgres): $*"
    fi
}

# wait_until SECONDS CMD...: retry CMD (quietly) until it succeeds; false on timeout.
wait_until() {
    local secs=$1; shift
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# proc_alive PID: the process exists and is not a zombie.
proc_alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---------------------------------------------------------------- clients
wh_psql() {
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$WH_PORT" \
        -U postgres -d "$WH_DB" "$@"
}

src_psql() {
    PGPASSWORD=$SRC_PASSWORD "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$SRC_PG_PORT" -U "$SRC_USER" -d "$SRC_DB" "$@"
}

src_admin_psql() {
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SRC_PG_PORT" \
        -U postgres -d "$SRC_DB" "$@"
}

my_sql() {
    MYSQL_PWD=$SRC_PASSWORD mariadb --no-defaults --protocol=TCP -h 127.0.0.1 \
        -P "$SRC_MY_PORT" -u "$SRC_USER" --batch --raw "$SRC_DB" "$@"
}

my_root_sql() {
    mariadb --no-defaults --protocol=SOCKET --socket="$SRC_MY_SOCKET" -u root \
        --batch --raw "$@"
}

# ---------------------------------------------------------------- PostgreSQL servers
# Servers start with an almost empty environment, so that PGHOST, PGPASSWORD etc.
# of the caller never reach libpq inside the backends (dbsync must not use them).
pg_server_start() {
    local datadir=$1 logfile=$2
    # (cd /): pg_ctl complains when the caller's directory is closed to postgres.
    if ! (cd / && as_pg env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
            "$PG_BINDIR/pg_ctl" -D "$datadir" -l "$logfile" -w -t 60 start >/dev/null); then
        log "PostgreSQL in $datadir did not start"
        log_tail "$logfile"
        return 1
    fi
}

pg_server_running() {
    [[ -f $1/PG_VERSION ]] && (cd / && as_pg "$PG_BINDIR/pg_ctl" -D "$1" status >/dev/null 2>&1)
}

# pg_server_stop DATADIR [fast|immediate]: never fails when it is not running.
pg_server_stop() {
    local datadir=$1 mode=${2:-fast}
    pg_server_running "$datadir" || return 0
    (cd / && { as_pg "$PG_BINDIR/pg_ctl" -D "$datadir" -m "$mode" -w -t 30 stop ||
        as_pg "$PG_BINDIR/pg_ctl" -D "$datadir" -m immediate -w -t 30 stop; } >/dev/null 2>&1) ||
        warn "could not stop PostgreSQL in $datadir"
}

pg_server_pid() {
    pg_server_running "$1" && head -n 1 "$1/postmaster.pid"
}

# ---------------------------------------------------------------- MariaDB server
# The pid from the pid file, if that process is alive and really is mariadbd.
my_server_pid() {
    local pid
    [[ -f $SRC_MY_PIDFILE ]] || return 1
    pid=$(<"$SRC_MY_PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == mariadbd ]] && proc_alive "$pid" || return 1
    echo "$pid"
}

my_server_ping() {
    mariadb-admin --no-defaults --protocol=SOCKET --socket="$SRC_MY_SOCKET" -u root ping
}

# Options a TiDB-like MariaDB needs here; time zone deliberately not UTC.
my_server_start() {
    local deadline=$((SECONDS + 60)) from
    from=$(stat -c %s "$SRC_MY_LOG" 2>/dev/null || echo 0)
    rm -f "$SRC_MY_PIDFILE"
    # ( ... & ): not our child, so a killed server leaves no zombie behind;
    # env -i: the caller's MYSQL_PWD, TZ etc. stay out of the server.
    (env -i PATH=/usr/sbin:/usr/bin:/bin setsid mariadbd --no-defaults --user=mysql \
        --datadir="$SRC_MY_DATADIR" --tmpdir="$SRC_MY_DIR/tmp" \
        --port="$SRC_MY_PORT" --bind-address=127.0.0.1 \
        --socket="$SRC_MY_SOCKET" --pid-file="$SRC_MY_PIDFILE" \
        --log-error="$SRC_MY_LOG" \
        --default-time-zone=+05:30 --skip-name-resolve \
        --character-set-server=utf8mb4 --max-connections=200 \
        --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=2 \
        </dev/null >>"$SRC_MY_DIR/mysqld.out" 2>&1 &)
    # Wait until it answers; stop early when this start (log from $from on) aborted.
    until my_server_ping >/dev/null 2>&1; do
        if ((SECONDS >= deadline)) ||
            tail -c "+$((from + 1))" "$SRC_MY_LOG" 2>/dev/null | grep -q '\[ERROR\] Aborting'; then
            log "MariaDB did not start"
            log_tail "$SRC_MY_LOG"
            return 1
        fi
        sleep 0.2
    done
}

my_server_signal() {
    local pid
    pid=$(my_server_pid) || { warn "MariaDB does not run"; return 1; }
    kill "-$1" "$pid"
}

# my_server_stop [SIGNAL]: TERM (default) waits for a clean shutdown; KILL crashes it.
my_server_stop() {
    local sig=${1:-TERM} pid
    pid=$(my_server_pid) || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    if ! wait_until 60 eval '! proc_alive '"$pid"; then
        warn "MariaDB ($pid) ignored SIG$sig; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_until 10 eval '! proc_alive '"$pid" || true
    fi
}
