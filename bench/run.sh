#!/usr/bin/env bash
# bench/run.sh: dbsync beside its peers, on the same data, in one run.
#
#   bash bench/run.sh                 # as root on Debian 12; 1,000,000 rows (~250 MB)
#   ROWS=200000 bash bench/run.sh     # quick run
#
# Starts its own throwaway servers with the project's harness (scripts/testenv.sh)
# under $DBSYNC_TESTDIR (default /tmp/dbsync-bench) on ports 59432/59433/59306
# (the next free ones when taken), turns fsync on in the warehouse, loads the
# same table shape into a PostgreSQL source and a MariaDB source, measures each
# method RUNS times (default 2) and keeps the best time, then prints one table.
# See bench/README.md for what is measured and how.
#
# Environment:
#   ROWS=N            rows in the big table (default 1000000); SMALL_ROWS (default ROWS/5)
#   RUNS=N            runs per measurement, best time kept (default 2; the first warms caches)
#   SKIP_BUILD=1      do not run `make && make install` in the repository first
#   SKIP_INSTALL=1    do not apt-get install pgloader / postgresql-15-mysql-fdw when missing
#   KEEP=1            leave the servers running at the end (stop: DBSYNC_TESTDIR=... scripts/testenv.sh stop)
#   FDW_FETCH_SIZE=N  postgres_fdw fetch_size (default: the FDW's own default, 100)
#   BIG_ROWS=N        also load a table of N rows (e.g. 10000000) with dbsync, for memory at scale
#   TABLES_N=N        tables of the many-tables nothing-new run (default 200)
#   DBSYNC_TESTDIR, WH_PORT, SRC_PG_PORT, SRC_MY_PORT, WH_DB: where the servers live
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

ROWS=${ROWS:-1000000}
SMALL_ROWS=${SMALL_ROWS:-$((ROWS / 5))}
RUNS=${RUNS:-2}
BIG_ROWS=${BIG_ROWS:-0}
TABLES_N=${TABLES_N:-200}
export DBSYNC_TESTDIR=${DBSYNC_TESTDIR:-/tmp/dbsync-bench}
export WH_DB=${WH_DB:-dbsync_bench}
WANT_WH_PORT=${WH_PORT:-59432}
WANT_SRC_PG_PORT=${SRC_PG_PORT:-59433}
WANT_SRC_MY_PORT=${SRC_MY_PORT:-59306}
unset WH_PORT SRC_PG_PORT SRC_MY_PORT

[[ $ROWS =~ ^[0-9]+$ && $ROWS -ge 1000 ]] || { echo "ROWS must be a number >= 1000" >&2; exit 1; }
[[ $SMALL_ROWS =~ ^[0-9]+$ && $SMALL_ROWS -ge 100 ]] || { echo "SMALL_ROWS must be >= 100" >&2; exit 1; }
[[ $RUNS =~ ^[1-9]$ ]] || { echo "RUNS must be 1..9" >&2; exit 1; }
[[ $BIG_ROWS =~ ^[0-9]+$ ]] || { echo "BIG_ROWS must be a number" >&2; exit 1; }
[[ $TABLES_N =~ ^[0-9]+$ && $TABLES_N -ge 1 ]] || { echo "TABLES_N must be >= 1" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "run bench/run.sh as root (it starts servers as postgres and mysql)" >&2; exit 1; }

# Stop what an earlier (aborted or KEEP=1) benchmark left under our base dir,
# reading its env.sh, before choosing ports.
if [[ -f $DBSYNC_TESTDIR/env.sh ]]; then
    bash "$ROOT/scripts/testenv.sh" stop || true
fi
export DBSYNC_NO_ENV_FILE=1
# shellcheck source=../scripts/lib.sh
source "$ROOT/scripts/lib.sh"

BENCH_DIR=$DBSYNC_TESTDIR/bench      # logs, generated SQL, results (the table and its chart are also kept in bench/results/)
LOGDIR=$BENCH_DIR/logs
RESULTS=$BENCH_DIR/results.txt
BENCH_T0=$SECONDS
rm -rf "$BENCH_DIR"
mkdir -p "$LOGDIR"
chmod 755 "$DBSYNC_TESTDIR" "$BENCH_DIR" "$LOGDIR"
CLK_TCK=$(getconf CLK_TCK)
ONE_PCT=$((ROWS / 100))

note() { printf '[bench %4ds] %s\n' $((SECONDS - BENCH_T0)) "$*" >&2; }

# ---------------------------------------------------------------- ports
# The brief's ports, or the next free ones (other sessions may hold them).
CHOSEN_PORTS=" "
pick_port() {
    local p=$1 i
    for ((i = 0; i < 200; i++, p++)); do
        [[ $CHOSEN_PORTS == *" $p "* ]] && continue
        port_in_use "$p" && continue
        CHOSEN_PORTS+="$p "
        echo "$p"
        return 0
    done
    die "no free port near $1"
}
WH_PORT=$(pick_port "$WANT_WH_PORT")
CHOSEN_PORTS+="$WH_PORT "
SRC_PG_PORT=$(pick_port "$WANT_SRC_PG_PORT")
CHOSEN_PORTS+="$SRC_PG_PORT "
SRC_MY_PORT=$(pick_port "$WANT_SRC_MY_PORT")
export WH_PORT SRC_PG_PORT SRC_MY_PORT
for v in WH_PORT SRC_PG_PORT SRC_MY_PORT; do
    want=WANT_$v
    [[ ${!v} == "${!want}" ]] || warn "port ${!want} is taken; $v=${!v}"
done

# ---------------------------------------------------------------- packages
# apt-get install PKG if Debian has it and it is missing; false if it cannot be had.
APT_UPDATED=0
ensure_pkg() {
    local pkg=$1 cand
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' && return 0
    [[ ${SKIP_INSTALL:-0} == 1 ]] && return 1
    cand=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [[ -z $cand || $cand == "(none)" ]] && ((!APT_UPDATED)); then
        apt-get update -q >>"$LOGDIR/apt.log" 2>&1 || true
        APT_UPDATED=1
        cand=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    fi
    [[ -n $cand && $cand != "(none)" ]] || return 1
    note "apt-get install $pkg ($cand)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >>"$LOGDIR/apt.log" 2>&1
}

HAVE_PGLOADER=1 HAVE_MYSQL_FDW=1
PGLOADER_WHY="" MYSQL_FDW_WHY=""
if ! ensure_pkg pgloader; then
    HAVE_PGLOADER=0
    PGLOADER_WHY="not run: Debian package pgloader not installed and not installable ($(apt-cache policy pgloader 2>/dev/null | awk '/Candidate:/ {print "candidate " $2}'))"
fi
if ! ensure_pkg postgresql-15-mysql-fdw; then
    HAVE_MYSQL_FDW=0
    MYSQL_FDW_WHY="not run: Debian has no installable postgresql-15-mysql-fdw ($(apt-cache policy postgresql-15-mysql-fdw 2>/dev/null | awk '/Candidate:/ {print "candidate " $2}'))"
fi
HAVE_GNUPLOT=1
ensure_pkg gnuplot-nox || HAVE_GNUPLOT=0
[[ -f $("$PG_CONFIG" --sharedir)/extension/postgres_fdw.control ]] ||
    ensure_pkg postgresql-contrib || die "postgres_fdw is missing (postgresql-contrib)"

# ---------------------------------------------------------------- build
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    for attempt in 1 2 3; do
        if (cd "$ROOT" && make && make install) >"$LOGDIR/build.log" 2>&1; then
            break
        fi
        ((attempt < 3)) || { log_tail "$LOGDIR/build.log"; die "make && make install failed"; }
        warn "build failed (another session may be mid-edit); retrying in 60 s (log: $LOGDIR/build.log)"
        sleep 60
    done
    note "dbsync built and installed"
fi
[[ -f $("$PG_CONFIG" --pkglibdir)/dbsync.so ]] || die "dbsync.so is not installed; run make && make install"

# ---------------------------------------------------------------- servers
cleanup() {
    local rc=$?
    if [[ ${KEEP:-0} == 1 ]]; then
        log "KEEP=1: servers left running; stop them with: DBSYNC_TESTDIR=$DBSYNC_TESTDIR bash scripts/testenv.sh stop"
    else
        bash "$ROOT/scripts/testenv.sh" stop >/dev/null 2>&1 || true
    fi
    ((rc == 0)) || log "benchmark FAILED (rc $rc); logs in $LOGDIR"
}
trap cleanup EXIT

note "starting servers under $DBSYNC_TESTDIR (warehouse $WH_PORT, source PG $SRC_PG_PORT, MariaDB $SRC_MY_PORT)"
bash "$ROOT/scripts/testenv.sh" start >"$LOGDIR/testenv.log" 2>&1 ||
    { log_tail "$LOGDIR/testenv.log"; die "scripts/testenv.sh start failed"; }
unset DBSYNC_NO_ENV_FILE
# shellcheck source=/dev/null
source "$DBSYNC_TESTDIR/env.sh"

# fsync on in the warehouse (the harness turns it off; fsync is reloadable).
wh_psql -Atc "ALTER SYSTEM SET fsync = on" -c "SELECT pg_reload_conf()" >/dev/null
for ((i = 0; i < 50; i++)); do
    [[ $(wh_psql -Atc "SHOW fsync") == on ]] && break
    sleep 0.2
done
[[ $(wh_psql -Atc "SHOW fsync") == on ]] || die "could not turn fsync on in the warehouse"

# ---------------------------------------------------------------- helpers
PSQL_WH=("$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$WH_PORT" -U postgres -d "$WH_DB")
PSQL_SRC=(env "PGPASSWORD=$SRC_PASSWORD" "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1
    -h 127.0.0.1 -p "$SRC_PG_PORT" -U "$SRC_USER" -d "$SRC_DB")
MARIADB_CLI=(env "MYSQL_PWD=$SRC_PASSWORD" mariadb --no-defaults --protocol=TCP -h 127.0.0.1
    -P "$SRC_MY_PORT" -u "$SRC_USER" -D "$SRC_DB")
# One line "VmHWM kB|RssShmem kB|CPU ticks" of the session's own backend.
SELF_SQL="SELECT substring(s FROM 'VmHWM:\\s*(\\d+)') || '|' || substring(s FROM 'RssShmem:\\s*(\\d+)') || '|' || (SELECT split_part(st, ' ', 14)::bigint + split_part(st, ' ', 15)::bigint FROM pg_read_file('/proc/self/stat') st) FROM pg_read_file('/proc/self/status') s"
COLS="id, a, b, c, x, y, label, payload, created_at, updated_at"
UPSERT_SET="a = EXCLUDED.a, b = EXCLUDED.b, c = EXCLUDED.c, x = EXCLUDED.x, y = EXCLUDED.y, label = EXCLUDED.label, payload = EXCLUDED.payload, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at"
SKIP_UNCHANGED="WHERE (t.a, t.b, t.c, t.x, t.y, t.label, t.payload, t.created_at, t.updated_at) IS DISTINCT FROM (EXCLUDED.a, EXCLUDED.b, EXCLUDED.c, EXCLUDED.x, EXCLUDED.y, EXCLUDED.label, EXCLUDED.payload, EXCLUDED.created_at, EXCLUDED.updated_at)"

wh_scalar() { "${PSQL_WH[@]}" -Atc "$1"; }
now_s() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a - b }'; }
last_line_num() { if [[ -f $1 ]]; then grep -Eo '^[0-9]+$' "$1" | tail -n 1 || true; fi; }

# settle TABLE...: VACUUM ANALYZE (so that autovacuum does not run into the next
# measurement and hint bits are set, as in a warehouse whose tables are old), then CHECKPOINT.
settle() {
    local t args=()
    for t in "$@"; do args+=(-c "VACUUM (ANALYZE) $t"); done
    "${PSQL_WH[@]}" "${args[@]}" -c CHECKPOINT
}

# Results of the last single measurement (set by the *_once functions):
#   M_SECS  time   M_WAL  WAL bytes   M_HWM  warehouse backend VmHWM kB
#   M_ANON  sampled peak RssAnon kB of that backend   M_CLIENT  client max RSS kB
#   M_CPU   warehouse backend CPU seconds   M_NOTE  text
#   M_OWN   the per-table duration dbsync_run reports (dbsync runs only)
reset_m() { M_SECS="" M_WAL="" M_HWM="" M_ANON="" M_CLIENT="" M_CPU="" M_NOTE="" M_OWN=""; }

# wh_measure KEY PRE SQL [POST]: one fresh warehouse session; PRE runs untimed,
# SQL is timed (clock_timestamp around it) with its WAL (insert LSN difference),
# the backend's CPU time, VmHWM and sampled RssAnon; POST runs after (untimed).
# Lines starting with "RUN " or "CHECK " that POST echoes land in M_RUN / M_CHECK.
# shellcheck disable=SC2028  # the echoed backslashes are psql meta-commands, meant literally
wh_measure() {
    local key=$1 pre=$2 sql=$3 post=${4:-} log anon line kv i
    i=$((${#RUNLOG[@]} + 1))
    log=$LOGDIR/$key.$i
    RUNLOG+=("$log")
    anon=$log.anon
    reset_m
    M_RUN="" M_CHECK=""
    {
        echo "SELECT pg_backend_pid() AS bench_pid \\gset"
        echo "\\setenv BENCH_PID :bench_pid"
        echo "\\! bash '$HERE/memsample.sh' \"\$BENCH_PID\" '$anon' </dev/null >/dev/null 2>&1 &"
        printf '%s\n' "$pre"
        echo "SELECT pg_current_wal_insert_lsn() AS bench_lsn0, clock_timestamp() AS bench_t0, (SELECT split_part(st, ' ', 14)::bigint + split_part(st, ' ', 15)::bigint FROM pg_read_file('/proc/self/stat') st) AS bench_ticks0 \\gset"
        printf '%s\n' "$sql"
        echo "SELECT extract(epoch FROM clock_timestamp() - :'bench_t0'::timestamptz) AS bench_secs, pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'bench_lsn0')::bigint AS bench_wal, (SELECT split_part(st, ' ', 14)::bigint + split_part(st, ' ', 15)::bigint FROM pg_read_file('/proc/self/stat') st) - :bench_ticks0 AS bench_ticks \\gset"
        echo "SELECT substring(s FROM 'VmHWM:\\s*(\\d+)') AS bench_hwm FROM pg_read_file('/proc/self/status') s \\gset"
        echo "\\echo BENCH secs=:bench_secs wal=:bench_wal hwm=:bench_hwm ticks=:bench_ticks"
        printf '%s\n' "$post"
    } >"$log.sql"
    if ! "${PSQL_WH[@]}" -f "$log.sql" >"$log.out" 2>&1; then
        log_tail "$log.out"
        die "$key failed (see $log.out)"
    fi
    line=$(grep '^BENCH ' "$log.out" | tail -n 1)
    for kv in $line; do
        case $kv in
            secs=*) M_SECS=${kv#secs=} ;;
            wal=*) M_WAL=${kv#wal=} ;;
            hwm=*) M_HWM=${kv#hwm=} ;;
            ticks=*) M_CPU=$(awk -v t="${kv#ticks=}" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }') ;;
        esac
    done
    M_RUN=$(grep '^RUN ' "$log.out" | tail -n 1 | cut -c5- || true)
    M_CHECK=$(grep '^CHECK ' "$log.out" | tail -n 1 | cut -c7- || true)
    # the backend exits after psql; the sampler then writes its peak
    wait_until 10 test -s "$anon" || warn "$key: no memory sample"
    M_ANON=$(last_line_num "$anon")
    [[ -n $M_SECS ]] || die "$key: no timing in $log.out"
}

# dbsync_measure KEY SERVER PRE [EXPECT_MODE] [EXPECT_UPSERTED]: time SELECT * FROM dbsync_run(SERVER)
# (one table per server here); check its status, mode and row count.
dbsync_measure() {
    local key=$1 srv=$2 pre=$3 mode=${4:-} ups=${5:-}
    wh_measure "$key" "$pre" \
        "SELECT mode AS r_mode, status AS r_status, rows_upserted AS r_up, rows_deleted AS r_del, round(extract(epoch FROM duration)::numeric, 4) AS r_dur, coalesce(message, '') AS r_msg FROM dbsync_run('$srv') \\gset" \
        "\\echo RUN mode=:r_mode status=:r_status upserted=:r_up deleted=:r_del duration=:r_dur message=:r_msg"
    [[ $M_RUN == *"status=ok "* ]] || die "$key: dbsync_run('$srv') did not succeed: $M_RUN"
    [[ -z $mode || $M_RUN == *"mode=$mode "* ]] || die "$key: expected mode $mode: $M_RUN"
    [[ -z $ups || $M_RUN == *"upserted=$ups "* ]] || die "$key: expected $ups rows upserted: $M_RUN"
    M_OWN=$(sed -E 's/.*duration=([0-9.]+).*/\1/' <<<"$M_RUN")
    M_NOTE=$(sed -E 's/.*mode=([a-z]+).*upserted=([0-9]+).*/mode \1, \2 upserted/' <<<"$M_RUN")
}

# count TABLE EXPECTED: the loaded row count must be right.
expect_count() {
    local n
    n=$(wh_scalar "SELECT count(*) FROM $1")
    [[ $n == "$2" ]] || die "$1 holds $n rows, expected $2"
}

# Best-of accounting: acc KEY after each single measurement.
declare -A B_SECS B_WAL B_HWM B_ANON B_CLIENT B_CPU B_NOTE B_OWN B_ALL B_LABEL B_ROWS B_REF B_DESIGN B_SECTION
ORDER=()
RUNLOG=()
define() { # define KEY SECTION ROWS REF DESIGN LABEL
    B_SECTION[$1]=$2 B_ROWS[$1]=$3 B_REF[$1]=$4 B_DESIGN[$1]=$5 B_LABEL[$1]=$6
    ORDER+=("$1")
}
maxof() { if [[ -z $1 ]]; then echo "$2"; elif [[ -z $2 ]]; then echo "$1"; elif ((${1%.*} >= ${2%.*})); then echo "$1"; else echo "$2"; fi; }
acc() {
    local k=$1
    B_ALL[$k]="${B_ALL[$k]:+${B_ALL[$k]} }$(printf '%.3f' "$M_SECS")"
    if [[ -z ${B_SECS[$k]:-} ]] || awk -v a="$M_SECS" -v b="${B_SECS[$k]}" 'BEGIN { exit !(a < b) }'; then
        B_SECS[$k]=$M_SECS B_WAL[$k]=$M_WAL B_CPU[$k]=$M_CPU B_NOTE[$k]=$M_NOTE B_OWN[$k]=$M_OWN
    fi
    # memory: the largest over the runs
    B_HWM[$k]=$(maxof "${B_HWM[$k]:-}" "$M_HWM")
    B_ANON[$k]=$(maxof "${B_ANON[$k]:-}" "$M_ANON")
    B_CLIENT[$k]=$(maxof "${B_CLIENT[$k]:-}" "$M_CLIENT")
    note "$k run: $(printf '%.3f' "$M_SECS") s${M_OWN:+ (own per-table duration $M_OWN s)}${M_NOTE:+  ($M_NOTE)}"
}
skip() { B_NOTE[$1]=$2; }
best() { local k=$1 fn=$2 r; shift 2; for ((r = 1; r <= RUNS; r++)); do "$fn" "$@" || return 1; acc "$k"; done; }

# ---------------------------------------------------------------- data
# gen_rows_sql TABLE N: the INSERT of the benchmark's N rows into TABLE
gen_rows_sql() {
    cat <<EOF
INSERT INTO $1
SELECT g, g % 1000, (g * 7) % 100000, g % 17, g / 3.0, (g % 1000) * 0.25,
       'label-' || (g % 100), repeat(md5(g::text), 5),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, $2) g;
EOF
}
note "generating $ROWS rows at the PostgreSQL source"
"${PSQL_SRC[@]}" >"$LOGDIR/src_pg_setup.log" 2>&1 <<EOF
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
CREATE TABLE bench.t (
    id bigint PRIMARY KEY, a int, b int, c int, x double precision, y double precision,
    label text, payload text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
$(gen_rows_sql bench.t "$ROWS")
CREATE INDEX t_updated_at ON bench.t (updated_at);
CREATE TABLE bench.t_small (LIKE bench.t INCLUDING ALL);
INSERT INTO bench.t_small SELECT * FROM bench.t WHERE id <= $SMALL_ROWS;
VACUUM ANALYZE bench.t;
VACUUM ANALYZE bench.t_small;
-- many small tables: the nothing-new run of a schedule over many tables
DROP SCHEMA IF EXISTS many CASCADE;
CREATE SCHEMA many;
DO \$\$ BEGIN FOR i IN 1..$TABLES_N LOOP
  EXECUTE format('CREATE TABLE many.t%s (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL)', i);
  EXECUTE format('INSERT INTO many.t%s SELECT g, md5(g::text), timestamptz ''2024-01-01'' + g * interval ''1 minute'' FROM generate_series(1, 100) g', i);
END LOOP; END \$\$;
EOF
if ((BIG_ROWS > 0)); then
    note "generating $BIG_ROWS rows at the PostgreSQL source (BIG_ROWS)"
    "${PSQL_SRC[@]}" >>"$LOGDIR/src_pg_setup.log" 2>&1 <<EOF
CREATE TABLE bench.t_big (LIKE bench.t INCLUDING ALL);
$(gen_rows_sql bench.t_big "$BIG_ROWS")
VACUUM ANALYZE bench.t_big;
EOF
fi
SRC_SIZE=$("${PSQL_SRC[@]}" -Atc "SELECT pg_size_pretty(pg_relation_size('bench.t')) || ' heap, ' || pg_size_pretty(pg_total_relation_size('bench.t')) || ' with indexes'")

note "generating $ROWS rows at the MariaDB source"
"${MARIADB_CLI[@]}" --batch >"$LOGDIR/src_my_setup.log" 2>&1 <<EOF
DROP TABLE IF EXISTS t;
CREATE TABLE t (
    id BIGINT PRIMARY KEY, a INT, b INT, c INT, x DOUBLE, y DOUBLE,
    label VARCHAR(32), payload TEXT, created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL,
    KEY t_updated_at (updated_at)) ENGINE=InnoDB;
INSERT INTO t
SELECT seq, seq % 1000, (seq * 7) % 100000, seq % 17, seq / 3.0, (seq % 1000) * 0.25,
       CONCAT('label-', seq % 100), REPEAT(MD5(seq), 5),
       TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND,
       TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND
FROM seq_1_to_$ROWS;
ANALYZE TABLE t;
EOF
MY_SIZE=$("${MARIADB_CLI[@]}" --batch --skip-column-names -e "SELECT CONCAT(ROUND(data_length / 1048576), ' MB data, ', ROUND((data_length + index_length) / 1048576), ' MB with indexes') FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 't'")

note "setting up the warehouse"
FETCH_OPT=""
[[ -n ${FDW_FETCH_SIZE:-} ]] && FETCH_OPT=", fetch_size '$FDW_FETCH_SIZE'"
"${PSQL_WH[@]}" >"$LOGDIR/wh_setup.log" 2>&1 <<EOF
SET client_min_messages = warning;
CREATE EXTENSION dbsync;
CREATE EXTENSION postgres_fdw;
CREATE SERVER s FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'bench', tables 't', batch_size '100000');
CREATE USER MAPPING FOR CURRENT_USER SERVER s OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER s_small FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'bench', tables 't_small');
CREATE USER MAPPING FOR CURRENT_USER SERVER s_small OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER s_many FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'many');
CREATE USER MAPPING FOR CURRENT_USER SERVER s_many OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER s_big FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'bench', tables 't_big');
CREATE USER MAPPING FOR CURRENT_USER SERVER s_big OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER m FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname '$SRC_DB', tables 't');
CREATE USER MAPPING FOR CURRENT_USER SERVER m OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');

CREATE SERVER pgfdw FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB'$FETCH_OPT);
CREATE USER MAPPING FOR CURRENT_USER SERVER pgfdw OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SCHEMA fdw;
IMPORT FOREIGN SCHEMA bench LIMIT TO (t) FROM SERVER pgfdw INTO fdw;

-- peers' targets: the source's columns, the same primary key, nothing else
CREATE SCHEMA peer;
CREATE TABLE peer.t_pipe (id bigint PRIMARY KEY, a int, b int, c int, x double precision,
    y double precision, label text, payload text, created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL);
CREATE TABLE peer.t_fdw (LIKE peer.t_pipe INCLUDING ALL);
CREATE SCHEMA mypeer;
CREATE TABLE mypeer.t_pipe (id bigint PRIMARY KEY, a int, b int, c int, x double precision,
    y double precision, label varchar(32), payload text, created_at timestamp(6),
    updated_at timestamp(6));
CREATE TABLE mypeer.t_fdw (LIKE mypeer.t_pipe INCLUDING ALL);
EOF
if ((HAVE_MYSQL_FDW)); then
    "${PSQL_WH[@]}" >>"$LOGDIR/wh_setup.log" 2>&1 <<EOF || { HAVE_MYSQL_FDW=0; MYSQL_FDW_WHY="not run: mysql_fdw setup failed (see $LOGDIR/wh_setup.log)"; }
CREATE EXTENSION mysql_fdw;
CREATE SERVER myfdw FOREIGN DATA WRAPPER mysql_fdw OPTIONS (host '127.0.0.1', port '$SRC_MY_PORT');
CREATE USER MAPPING FOR CURRENT_USER SERVER myfdw OPTIONS (username '$SRC_USER', password '$SRC_PASSWORD');
CREATE SCHEMA myfdw;
IMPORT FOREIGN SCHEMA $SRC_DB LIMIT TO (t) FROM SERVER myfdw INTO myfdw;
EOF
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- measurements
# keys: define KEY SECTION ROWS REF(dbsync key to compare with) DESIGN(s) LABEL
define pg_pipe        pg_load  "$ROWS" dbs_pg_init  4.2  'psql COPY TO STDOUT | psql COPY FROM STDIN'
define fdw_insert     pg_load  "$ROWS" dbs_pg_init  5.3  'postgres_fdw INSERT .. SELECT'
define dbs_pg_init    pg_load  "$ROWS" ''           ''   "dbsync_run('s'), empty target"
define dbs_pg_call    pg_load  "$ROWS" dbs_pg_init  ''   "CALL dbsync_sync('s'), batch_size 100000"
define fdw_up_all     pg_same  "$ROWS" dbs_pg_same  9.6  'postgres_fdw INSERT .. ON CONFLICT DO UPDATE'
define fdw_up_skip    pg_same  "$ROWS" dbs_pg_same  6.1  'postgres_fdw .. DO UPDATE WHERE IS DISTINCT FROM'
define dbs_pg_same    pg_same  "$ROWS" ''           ''   "dbsync_resync + dbsync_run (compare)"
define fdw_incr       pg_incr  "$ONE_PCT" dbs_pg_incr 0.26 'postgres_fdw upsert WHERE updated_at >= X'
define dbs_pg_incr    pg_incr  "$ONE_PCT" ''        ''   "dbsync_run('s') incremental, defaults"
define dbs_pg_incr_ign pg_incr "$ONE_PCT" ''        ''   "dbsync_run('s') incremental, deletes 'ignore'"
define dbs_pg_incr_chk pg_incr "$ONE_PCT" ''        ''   "  ... delete check forced (interval '0')"
define fdw_nothing    pg_none  0       dbs_pg_none_hard ''  'postgres_fdw upsert WHERE updated_at >= X'
define dbs_pg_none_hard pg_none 0      ''           ''   "dbsync_run, defaults"
define dbs_pg_none_warm pg_none 0      ''           ''   "dbsync_run, defaults, 2nd call in session"
define dbs_pg_none_ign  pg_none 0      ''           ''   "dbsync_run, deletes 'ignore'"
define dbs_pg_none_chk  pg_none 0      ''           ''   "dbsync_run, delete check forced (interval '0')"
define dbs_pg_none_many pg_none 0      ''           ''   "dbsync_run over $TABLES_N tables, time per table"
define dbs_pg_small   pg_mem   "$SMALL_ROWS" ''     ''   "dbsync_run initial load, $SMALL_ROWS rows"
define dbs_pg_big     pg_mem   "$BIG_ROWS" ''       ''   "dbsync_run initial load, $BIG_ROWS rows (BIG_ROWS)"
define my_pipe        my_load  "$ROWS" dbs_my_init  3.8  'mariadb --batch --quick | psql COPY FROM STDIN'
define pgloader       my_load  "$ROWS" dbs_my_init  8.9  'pgloader (defaults: create table, index after)'
define mysql_fdw      my_load  "$ROWS" dbs_my_init  6.6-7.9 'mysql_fdw INSERT .. SELECT'
define dbs_my_init    my_load  "$ROWS" ''           ''   "dbsync_run('m'), empty target"
define dbs_my_none_hard my_none 0      ''           ''   "dbsync_run('m'), defaults"
define dbs_my_none_warm my_none 0      ''           ''   "dbsync_run('m'), defaults, 2nd call in session"
define dbs_my_none_ign  my_none 0      ''           ''   "dbsync_run('m'), deletes 'ignore'"

# ---- 1. psql pipe
pg_pipe_once() {
    local lsn0 t0 t1 self
    reset_m
    "${PSQL_WH[@]}" -c "TRUNCATE peer.t_pipe" -c CHECKPOINT
    lsn0=$(wh_scalar "SELECT pg_current_wal_insert_lsn()")
    t0=$(now_s)
    /usr/bin/time -f '%M' -o "$LOGDIR/pg_pipe.src.rss" "${PSQL_SRC[@]}" -c "COPY bench.t TO STDOUT" |
        /usr/bin/time -f '%M' -o "$LOGDIR/pg_pipe.dst.rss" "${PSQL_WH[@]}" -At \
            -c "COPY peer.t_pipe FROM STDIN" -c "$SELF_SQL" >"$LOGDIR/pg_pipe.out"
    t1=$(now_s)
    M_SECS=$(fsub "$t1" "$t0")
    M_WAL=$(wh_scalar "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn0')::bigint")
    self=$(tail -n 1 "$LOGDIR/pg_pipe.out")
    M_HWM=$(cut -d'|' -f1 <<<"$self")
    M_CPU=$(awk -v t="$(cut -d'|' -f3 <<<"$self")" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }')
    M_CLIENT=$(($(last_line_num "$LOGDIR/pg_pipe.src.rss") + $(last_line_num "$LOGDIR/pg_pipe.dst.rss")))
    M_NOTE="client = both psql processes; wh CPU = COPY FROM backend only"
    expect_count peer.t_pipe "$ROWS"
}
note "1. psql pipe"
best pg_pipe pg_pipe_once

# ---- 2. postgres_fdw INSERT .. SELECT
fdw_insert_once() {
    wh_measure fdw_insert "TRUNCATE peer.t_fdw; CHECKPOINT;" "INSERT INTO peer.t_fdw SELECT $COLS FROM fdw.t;"
    expect_count peer.t_fdw "$ROWS"
}
note "2. postgres_fdw INSERT .. SELECT"
best fdw_insert fdw_insert_once
settle peer.t_fdw

# ---- 3. postgres_fdw re-sync of unchanged data
fdw_up_all_once() {
    wh_measure fdw_up_all "CHECKPOINT;" \
        "INSERT INTO peer.t_fdw AS t SELECT $COLS FROM fdw.t ON CONFLICT (id) DO UPDATE SET $UPSERT_SET;"
}
fdw_up_skip_once() {
    wh_measure fdw_up_skip "CHECKPOINT;" \
        "INSERT INTO peer.t_fdw AS t SELECT $COLS FROM fdw.t ON CONFLICT (id) DO UPDATE SET $UPSERT_SET $SKIP_UNCHANGED;"
}
note "3. postgres_fdw unchanged re-sync"
for ((r = 1; r <= RUNS; r++)); do
    fdw_up_all_once; acc fdw_up_all
    settle peer.t_fdw
done
for ((r = 1; r <= RUNS; r++)); do
    fdw_up_skip_once; acc fdw_up_skip
done
settle peer.t_fdw

# ---- 5. dbsync initial load, CALL dbsync_sync, unchanged re-sync
RESET_S='SELECT dbsync_resync('"'s'"'); DO $$ BEGIN IF to_regclass('"'s.t'"') IS NOT NULL THEN TRUNCATE s.t; END IF; END $$; CHECKPOINT;'
dbs_pg_init_once() {
    dbsync_measure dbs_pg_init s "$RESET_S" initial "$ROWS"
    expect_count s.t "$ROWS"
}
note "5a. dbsync initial load (PostgreSQL source)"
best dbs_pg_init dbs_pg_init_once
settle s.t

dbs_pg_call_once() {
    wh_measure dbs_pg_call "$RESET_S" "CALL dbsync_sync('s');" \
        "SELECT 'CHECK status=' || last_status || ' mode=' || last_mode || ' rows_total=' || rows_total AS c FROM dbsync.status WHERE server = 's' \\gset
\\echo :c"
    [[ $M_CHECK == "status=ok mode=initial rows_total=$ROWS" ]] || die "CALL dbsync_sync: $M_CHECK"
    expect_count s.t "$ROWS"
}
note "5b. CALL dbsync_sync (commits per batch)"
best dbs_pg_call dbs_pg_call_once
settle s.t
B_NOTE[dbs_pg_call]="$(awk -v a="${B_SECS[dbs_pg_call]}" -v b="${B_SECS[dbs_pg_init]}" 'BEGIN { printf "%.2f", a / b }') x the dbsync_run time; ${B_NOTE[dbs_pg_call]:-}"

dbs_pg_same_once() {
    dbsync_measure dbs_pg_same s "SELECT dbsync_resync('s'); CHECKPOINT;" initial 0
}
note "5c. dbsync unchanged re-sync"
best dbs_pg_same dbs_pg_same_once

# ---- 4 + 5d. 1% incremental: the same source change for both, RUNS rounds
src_update_round() { # each round: other rows, updated_at above every earlier value
    local k=$1
    "${PSQL_SRC[@]}" -c "UPDATE bench.t SET a = a + 1, x = x + 0.5,
        payload = md5(id::text || ' round $k') || substr(payload, 33),
        updated_at = timestamptz '2024-03-01 00:00:00+00' + $k * interval '1 day' + (id / 100) * interval '1 second'
        WHERE id % 100 = $k" >/dev/null
}
fdw_incr_once() {
    wh_measure "$1" "SELECT max(updated_at) AS x_cursor FROM peer.t_fdw \\gset
CHECKPOINT;" \
        "INSERT INTO peer.t_fdw AS t SELECT $COLS FROM fdw.t WHERE updated_at >= :'x_cursor' ON CONFLICT (id) DO UPDATE SET $UPSERT_SET $SKIP_UNCHANGED;"
}
note "4/5d. 1% incremental ($ONE_PCT rows updated at the source per round)"
for ((r = 1; r <= RUNS; r++)); do
    src_update_round "$r"
    fdw_incr_once fdw_incr; M_NOTE="stored cursor X kept by the job"; acc fdw_incr
    dbsync_measure dbs_pg_incr s "CHECKPOINT;" incremental; acc dbs_pg_incr
done
# the same without delete detection (postgres_fdw above detects no deletes either);
# postgres_fdw runs too, unmeasured, so that its table stays current
wh_scalar "ALTER SERVER s OPTIONS (ADD deletes 'ignore')" >/dev/null
for ((r = 1; r <= RUNS; r++)); do
    src_update_round $((RUNS + r))
    fdw_incr_once fdw_incr_catchup
    dbsync_measure dbs_pg_incr_ign s "CHECKPOINT;" incremental; acc dbs_pg_incr_ign
done
wh_scalar "ALTER SERVER s OPTIONS (DROP deletes)" >/dev/null
# defaults, but the exact delete check on every run (what the default does
# every 10 minutes for a table of 100,000 rows or more)
wh_scalar "ALTER SERVER s OPTIONS (ADD delete_check_interval '0')" >/dev/null
for ((r = 1; r <= RUNS; r++)); do
    src_update_round $((2 * RUNS + r))
    fdw_incr_once fdw_incr_catchup
    dbsync_measure dbs_pg_incr_chk s "CHECKPOINT;" incremental; acc dbs_pg_incr_chk
done
wh_scalar "ALTER SERVER s OPTIONS (DROP delete_check_interval)" >/dev/null

# ---- 5e. nothing new
note "5e. nothing-new runs"
for ((r = 1; r <= RUNS; r++)); do
    fdw_incr_once fdw_nothing; M_NOTE="re-reads the row(s) tied on X"; acc fdw_nothing
done
for ((r = 1; r <= RUNS; r++)); do
    dbsync_measure dbs_pg_none_hard s "" incremental 0; acc dbs_pg_none_hard
done
# the same in a session that has already run dbsync once (what is left without
# the first-call costs of a new session: caches, plans, the source connection)
for ((r = 1; r <= RUNS; r++)); do
    dbsync_measure dbs_pg_none_warm s "SELECT count(*) FROM dbsync_run('s');" incremental 0; acc dbs_pg_none_warm
done
wh_scalar "ALTER SERVER s OPTIONS (ADD deletes 'ignore')" >/dev/null
for ((r = 1; r <= RUNS; r++)); do
    dbsync_measure dbs_pg_none_ign s "" incremental 0; acc dbs_pg_none_ign
done
wh_scalar "ALTER SERVER s OPTIONS (DROP deletes)" >/dev/null
wh_scalar "ALTER SERVER s OPTIONS (ADD delete_check_interval '0')" >/dev/null
for ((r = 1; r <= RUNS; r++)); do
    dbsync_measure dbs_pg_none_chk s "" incremental 0; acc dbs_pg_none_chk
done
wh_scalar "ALTER SERVER s OPTIONS (DROP delete_check_interval)" >/dev/null
# a schedule over many tables: one fresh session, one run, time per table
wh_scalar "SELECT count(*) FROM dbsync_run('s_many')" >/dev/null
dbs_many_once() {
    wh_measure dbs_pg_none_many "" \
        "SELECT count(*) FILTER (WHERE status = 'ok' AND mode = 'incremental' AND rows_upserted = 0) AS r_ok, round(avg(extract(epoch FROM duration))::numeric, 4) AS r_dur FROM dbsync_run('s_many') \\gset" \
        "\\echo RUN ok=:r_ok duration=:r_dur"
    [[ $M_RUN == "ok=$TABLES_N "* ]] || die "dbsync_run('s_many'): $M_RUN"
    M_SECS=$(awk -v s="$M_SECS" -v n="$TABLES_N" 'BEGIN { printf "%.4f", s / n }')
    M_OWN=$(sed -E 's/.*duration=([0-9.]+).*/\1/' <<<"$M_RUN")
    M_NOTE="$TABLES_N tables of 100 rows, nothing new; time and own s per table"
}
for ((r = 1; r <= RUNS; r++)); do
    dbs_many_once; acc dbs_pg_none_many
done
LOOKBACK_ROWS=$("${PSQL_SRC[@]}" -Atc "SELECT count(*) FROM bench.t WHERE updated_at >= (SELECT max(updated_at) - interval '1 minute' FROM bench.t)")

# ---- 6. memory with a smaller table
RESET_SMALL='SELECT dbsync_resync('"'s_small'"'); DO $$ BEGIN IF to_regclass('"'s_small.t_small'"') IS NOT NULL THEN TRUNCATE s_small.t_small; END IF; END $$; CHECKPOINT;'
note "6. dbsync initial load of $SMALL_ROWS rows (memory)"
for ((r = 1; r <= RUNS; r++)); do
    dbsync_measure dbs_pg_small s_small "$RESET_SMALL" initial "$SMALL_ROWS"; acc dbs_pg_small
done
if ((BIG_ROWS > 0)); then
    # once: at 10M rows a load takes minutes, and memory is what is asked
    note "6b. dbsync initial load of $BIG_ROWS rows (memory at scale)"
    dbsync_measure dbs_pg_big s_big "CHECKPOINT;" initial "$BIG_ROWS"; acc dbs_pg_big
    expect_count s_big.t_big "$BIG_ROWS"
    wh_scalar "DROP TABLE s_big.t_big" >/dev/null
else
    skip dbs_pg_big "not run: set BIG_ROWS=10000000 for memory at 10M rows"
fi

# ---- 7. mariadb pipe
my_pipe_once() {
    local lsn0 t0 t1 self
    reset_m
    "${PSQL_WH[@]}" -c "TRUNCATE mypeer.t_pipe" -c CHECKPOINT
    lsn0=$(wh_scalar "SELECT pg_current_wal_insert_lsn()")
    t0=$(now_s)
    # --batch escapes tab, newline, backslash and NUL as \t \n \\ \0 (COPY text reads
    # the first three alike; \0 would be rejected) and prints NULL as NULL, hence
    # NULL 'NULL' (a text value 'NULL' would become NULL: this data has none).
    # --quick streams rows (mysql_use_result) instead of buffering the whole result.
    /usr/bin/time -f '%M' -o "$LOGDIR/my_pipe.src.rss" "${MARIADB_CLI[@]}" --batch --quick --skip-column-names \
        -e "SELECT $COLS FROM t" |
        /usr/bin/time -f '%M' -o "$LOGDIR/my_pipe.dst.rss" "${PSQL_WH[@]}" -At \
            -c "COPY mypeer.t_pipe FROM STDIN WITH (NULL 'NULL')" -c "$SELF_SQL" >"$LOGDIR/my_pipe.out"
    t1=$(now_s)
    M_SECS=$(fsub "$t1" "$t0")
    M_WAL=$(wh_scalar "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn0')::bigint")
    self=$(tail -n 1 "$LOGDIR/my_pipe.out")
    M_HWM=$(cut -d'|' -f1 <<<"$self")
    M_CPU=$(awk -v t="$(cut -d'|' -f3 <<<"$self")" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }')
    M_CLIENT=$(($(last_line_num "$LOGDIR/my_pipe.src.rss") + $(last_line_num "$LOGDIR/my_pipe.dst.rss")))
    M_NOTE="client = mariadb + psql; wh CPU = COPY FROM backend only"
    expect_count mypeer.t_pipe "$ROWS"
}
note "7. mariadb pipe"
best my_pipe my_pipe_once

# ---- 8. dbsync from MariaDB
RESET_M='SELECT dbsync_resync('"'m'"'); DO $$ BEGIN IF to_regclass('"'m.t'"') IS NOT NULL THEN TRUNCATE m.t; END IF; END $$; CHECKPOINT;'
dbs_my_init_once() {
    dbsync_measure dbs_my_init m "$RESET_M" initial "$ROWS"
    expect_count m.t "$ROWS"
}
note "8. dbsync initial load and nothing-new (MariaDB source)"
best dbs_my_init dbs_my_init_once
settle m.t
for ((r = 1; r <= RUNS; r++)); do
    dbsync_measure dbs_my_none_hard m "" incremental 0; acc dbs_my_none_hard
done
for ((r = 1; r <= RUNS; r++)); do
    dbsync_measure dbs_my_none_warm m "SELECT count(*) FROM dbsync_run('m');" incremental 0; acc dbs_my_none_warm
done
wh_scalar "ALTER SERVER m OPTIONS (ADD deletes 'ignore')" >/dev/null
for ((r = 1; r <= RUNS; r++)); do
    dbsync_measure dbs_my_none_ign m "" incremental 0; acc dbs_my_none_ign
done
wh_scalar "ALTER SERVER m OPTIONS (DROP deletes)" >/dev/null

# ---- 9. pgloader, mysql_fdw
cat >"$BENCH_DIR/pgloader.load" <<EOF
LOAD DATABASE
    FROM mysql://$SRC_USER:$SRC_PASSWORD@127.0.0.1:$SRC_MY_PORT/$SRC_DB
    INTO postgresql://postgres@127.0.0.1:$WH_PORT/$WH_DB
    WITH include drop, create tables, create indexes, reset sequences
    INCLUDING ONLY TABLE NAMES MATCHING 't'
    ALTER SCHEMA '$SRC_DB' RENAME TO 'pgl';
EOF
pgloader_once() {
    local lsn0 t0 t1
    reset_m
    "${PSQL_WH[@]}" -c "DROP SCHEMA IF EXISTS pgl CASCADE" -c CHECKPOINT 2>/dev/null
    lsn0=$(wh_scalar "SELECT pg_current_wal_insert_lsn()")
    t0=$(now_s)
    (cd "$BENCH_DIR" && /usr/bin/time -f '%M' -o "$LOGDIR/pgloader.rss" \
        pgloader --no-ssl-cert-verification "$BENCH_DIR/pgloader.load") >"$LOGDIR/pgloader.out" 2>&1 ||
        { log_tail "$LOGDIR/pgloader.out"; return 1; }
    t1=$(now_s)
    M_SECS=$(fsub "$t1" "$t0")
    M_WAL=$(wh_scalar "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn0')::bigint")
    M_CLIENT=$(last_line_num "$LOGDIR/pgloader.rss")
    M_NOTE="client = pgloader (SBCL) max RSS; WAL includes its index build"
    expect_count pgl.t "$ROWS"
}
if ((HAVE_PGLOADER)); then
    note "9a. pgloader"
    # a peer that fails (pgloader's SBCL heap runs out on large tables) is reported, not fatal
    best pgloader pgloader_once ||
        skip pgloader "FAILED: $(grep -m1 -oE 'Heap exhausted[^.]*' "$LOGDIR/pgloader.out" || echo 'see pgloader.out')"
else
    skip pgloader "$PGLOADER_WHY"
fi

mysql_fdw_once() {
    wh_measure mysql_fdw "TRUNCATE mypeer.t_fdw; CHECKPOINT;" "INSERT INTO mypeer.t_fdw SELECT $COLS FROM myfdw.t;"
    expect_count mypeer.t_fdw "$ROWS"
}
if ((HAVE_MYSQL_FDW)); then
    note "9b. mysql_fdw"
    best mysql_fdw mysql_fdw_once
else
    skip mysql_fdw "$MYSQL_FDW_WHY"
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
f3() { awk -v v="$1" 'BEGIN { printf "%.3f", v }'; }
mb() { [[ -n $1 ]] && awk -v v="$1" -v d="$2" 'BEGIN { printf "%.1f", v / d }' || echo "-"; }
report() {
    local k sec last="" ratio rps t wal hwm anon cli cpu design
    echo
    echo "dbsync benchmark: $ROWS rows, best of $RUNS runs (the first run of each warms the caches)"
    awk -v l="${LOAD_START%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }' &&
        echo "  NOTE: the 1-minute load average was ${LOAD_START%% *} on $(nproc) cores when the measurements began: other processes competed for CPU; times are noisy"
    echo "  host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM; load average at start $LOAD_START, at end $LOAD_END"
    echo "  warehouse: PostgreSQL $(wh_scalar 'SHOW server_version'), fsync=$(wh_scalar 'SHOW fsync'), synchronous_commit=$(wh_scalar 'SHOW synchronous_commit'), shared_buffers=$(wh_scalar 'SHOW shared_buffers'), max_wal_size=$(wh_scalar 'SHOW max_wal_size'), wal_level=$(wh_scalar 'SHOW wal_level')"
    echo "  PostgreSQL source: bench.t $SRC_SIZE (id bigint PK, 3 int, 2 double, label, 160-char payload, created_at/updated_at timestamptz; index on updated_at)"
    echo "  MariaDB source:    $(mariadbd --version | awk '{print $3}'), srcdb.t $MY_SIZE (same shape, DATETIME(6) cursor columns)"
    echo "  postgres_fdw fetch_size: ${FDW_FETCH_SIZE:-100 (default)}"
    echo
    printf '%-8s %-50s %9s %10s %8s %9s %8s %8s %8s %8s %8s %8s\n' \
        task method 'time s' 'rows/s' 'x dbsync' 'WAL MB' 'wh HWM' 'wh anon' 'client' 'wh CPU' 'own s' 'design'
    printf '%-8s %-50s %9s %10s %8s %9s %8s %8s %8s %8s %8s %8s\n' \
        '' '' '' '' '(peer/' '' 'MB' 'MB' 'MB' 's' '(dbsync)' '(1M) s'
    printf '%-8s %-50s %9s %10s %8s %9s %8s %8s %8s %8s %8s %8s\n' '' '' '' '' 'dbsync)' '' '' '' '' '' '' ''
    for k in "${ORDER[@]}"; do
        sec=${B_SECTION[$k]}
        if [[ $sec != "$last" ]]; then
            case $sec in
                pg_load) echo "-- PostgreSQL source: full load of $ROWS rows into an empty table with the same primary key" ;;
                pg_same) echo "-- PostgreSQL source: re-sync of $ROWS unchanged rows" ;;
                pg_incr) echo "-- PostgreSQL source: 1% incremental ($ONE_PCT rows updated at the source; best of $RUNS rounds)" ;;
                pg_none) echo "-- PostgreSQL source: nothing new (after the incremental rounds; $LOOKBACK_ROWS source rows fall in dbsync's 1 minute lookback and are re-read)" ;;
                pg_mem) echo "-- PostgreSQL source: memory of an initial load, smaller table (compare wh anon with the $ROWS-row load above)" ;;
                my_load) echo "-- MariaDB source: full load of $ROWS rows" ;;
                my_none) echo "-- MariaDB source: nothing new" ;;
            esac
            last=$sec
        fi
        if [[ -z ${B_SECS[$k]:-} ]]; then
            printf '%-8s %-50s %s\n' "$sec" "${B_LABEL[$k]}" "${B_NOTE[$k]:-not run}"
            continue
        fi
        t=${B_SECS[$k]}
        rps="-"
        ((${B_ROWS[$k]} > 0)) && rps=$(awk -v r="${B_ROWS[$k]}" -v t="$t" 'BEGIN { printf "%.0f", r / t }')
        ratio="-"
        if [[ -n ${B_REF[$k]} && -n ${B_SECS[${B_REF[$k]}]:-} ]]; then
            ratio=$(awk -v a="$t" -v b="${B_SECS[${B_REF[$k]}]}" 'BEGIN { printf "%.2f", a / b }')
        elif [[ -z ${B_REF[$k]} ]]; then
            ratio="(ref)"
        fi
        [[ $k == dbs_pg_call ]] && ratio="-"
        wal=$(mb "${B_WAL[$k]}" 1048576)
        hwm=$(mb "${B_HWM[$k]}" 1024)
        anon=$(mb "${B_ANON[$k]}" 1024)
        cli=$(mb "${B_CLIENT[$k]}" 1024)
        cpu=${B_CPU[$k]:--}
        design=${B_DESIGN[$k]:--}
        [[ -n $design ]] || design="-"
        printf '%-8s %-50s %9.3f %10s %8s %9s %8s %8s %8s %8s %8s %8s\n' \
            "$sec" "${B_LABEL[$k]}" "$t" "$rps" "$ratio" "$wal" "$hwm" "$anon" "$cli" "$cpu" "${B_OWN[$k]:--}" "$design"
    done
    echo
    echo "Per-run times (s) and notes:"
    for k in "${ORDER[@]}"; do
        [[ -n ${B_ALL[$k]:-} ]] || continue
        printf '  %-17s %-24s %s\n' "$k" "${B_ALL[$k]}" "${B_NOTE[$k]:-}"
    done
    echo
    echo "Design targets (DESIGN.md, 'Performance the design must reach'):"
    verdict() { # verdict TEXT PASS(0/1) DETAIL
        printf '  %-4s %-62s %s\n' "$([[ $2 == 1 ]] && echo PASS || echo MISS)" "$1" "$3"
    }
    lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }' && echo 1 || echo 0; }
    verdict "full load (PG) at or under the psql COPY pipe" \
        "$(lt "${B_SECS[dbs_pg_init]}" "${B_SECS[pg_pipe]}")" "dbsync $(f3 "${B_SECS[dbs_pg_init]}") s vs pipe $(f3 "${B_SECS[pg_pipe]}") s"
    verdict "full load (MariaDB) at or under the mysql CLI pipe" \
        "$(lt "${B_SECS[dbs_my_init]}" "${B_SECS[my_pipe]}")" "dbsync $(f3 "${B_SECS[dbs_my_init]}") s vs pipe $(f3 "${B_SECS[my_pipe]}") s"
    local half
    half=$(awk -v a="${B_SECS[fdw_up_all]}" 'BEGIN { printf "%.3f", a / 2 }')
    verdict "unchanged re-sync at most half of postgres_fdw ON CONFLICT" \
        "$(lt "${B_SECS[dbs_pg_same]}" "$half")" "dbsync $(f3 "${B_SECS[dbs_pg_same]}") s vs half of $(f3 "${B_SECS[fdw_up_all]}") s = $half s"
    verdict "unchanged re-sync is a compare, not a write (WAL < 1% of fdw's)" \
        "$(lt "${B_WAL[dbs_pg_same]}" "$(awk -v w="${B_WAL[fdw_up_skip]}" 'BEGIN { print w / 100 }')")" \
        "dbsync $(mb "${B_WAL[dbs_pg_same]}" 1024) kB vs fdw skip-unchanged $(mb "${B_WAL[fdw_up_skip]}" 1024) kB"
    local r6
    for k in dbs_pg_incr dbs_pg_incr_ign dbs_pg_incr_chk; do
        r6=$(awk -v a="${B_SECS[$k]}" -v b="${B_SECS[fdw_incr]}" 'BEGIN { printf "%.2f", a / b }')
        verdict "1% incremental at most 0.6x postgres_fdw: ${B_LABEL[$k]# }" "$(lt "$r6" 0.6)" \
            "dbsync $(f3 "${B_SECS[$k]}") s vs fdw $(f3 "${B_SECS[fdw_incr]}") s = ${r6}x"
    done
    for k in dbs_pg_none_hard dbs_pg_none_warm dbs_pg_none_many dbs_my_none_hard dbs_my_none_warm dbs_pg_none_ign dbs_pg_none_chk dbs_my_none_ign; do
        verdict "nothing new at most 30 ms per table: ${B_LABEL[$k]}" "$(lt "${B_SECS[$k]}" 0.03)" \
            "statement $(f3 "${B_SECS[$k]}") s (own per-table duration $(f3 "${B_OWN[$k]}") s)"
    done
    local grow
    grow=$(awk -v a="${B_ANON[dbs_pg_init]}" -v b="${B_ANON[dbs_pg_small]}" 'BEGIN { printf "%.0f", (a - b) / 1024 }')
    verdict "flat memory ($ROWS vs $SMALL_ROWS rows: private memory within 16 MB)" \
        "$( ((grow <= 16)) && echo 1 || echo 0)" \
        "wh anon $(mb "${B_ANON[dbs_pg_init]}" 1024) MB vs $(mb "${B_ANON[dbs_pg_small]}" 1024) MB; VmHWM $(mb "${B_HWM[dbs_pg_init]}" 1024) vs $(mb "${B_HWM[dbs_pg_small]}" 1024) MB"
    if [[ -n ${B_ANON[dbs_pg_big]:-} ]]; then
        grow=$(awk -v a="${B_ANON[dbs_pg_big]}" -v b="${B_ANON[dbs_pg_init]}" 'BEGIN { printf "%.0f", (a - b) / 1024 }')
        verdict "flat memory ($BIG_ROWS vs $ROWS rows: private memory within 16 MB)" \
            "$( ((grow <= 16)) && echo 1 || echo 0)" \
            "wh anon $(mb "${B_ANON[dbs_pg_big]}" 1024) MB vs $(mb "${B_ANON[dbs_pg_init]}" 1024) MB; VmHWM $(mb "${B_HWM[dbs_pg_big]}" 1024) vs $(mb "${B_HWM[dbs_pg_init]}" 1024) MB"
    else
        echo "       (memory at 10M rows: run with BIG_ROWS=10000000)"
    fi
    echo
    echo "Not run: a per-row upsert loop like the original connector examples (DESIGN.md: 142 s for 1M rows) - too slow for this run's budget."
    [[ -n ${B_SECS[pgloader]:-} ]] || echo "Not run: pgloader - ${B_NOTE[pgloader]}"
    [[ -n ${B_SECS[mysql_fdw]:-} ]] || echo "Not run: mysql_fdw - ${B_NOTE[mysql_fdw]}"
    echo
    echo "Columns: time = best of $RUNS (SQL methods: clock_timestamp() around the statement in the warehouse"
    echo "session; pipes and pgloader: wall clock around the whole command). x dbsync = this time / the dbsync"
    echo "time of the same task (>1: dbsync is faster). WAL = warehouse WAL inserted (pg_current_wal_insert_lsn"
    echo "difference). wh HWM = VmHWM of the warehouse backend doing the work (includes shared_buffers pages it"
    echo "touched); wh anon = its peak private memory (RssAnon, sampled every 20 ms); client = max RSS of client"
    echo "processes (/usr/bin/time). wh CPU = user+sys CPU of that warehouse backend. Memory: largest over the runs."
    echo "own s = the per-table duration dbsync_run reports (its statement time minus connecting to the source,"
    echo "discovery and bookkeeping)."
    echo "Logs: $LOGDIR   total benchmark time: $((SECONDS - BENCH_T0)) s"
}
report | tee "$RESULTS"

# ---------------------------------------------------------------- chart
# The result table, and a chart of it, kept in the repository (bench/results/):
# one bar per method and task, log scale (the tasks span 10 ms to 10 s).
REPO_RESULTS=$HERE/results
mkdir -p "$REPO_RESULTS"
cp "$RESULTS" "$REPO_RESULTS/results-$ROWS.txt"
secs_or_dash() { if [[ -n $1 && -n ${B_SECS[$1]:-} ]]; then f3 "${B_SECS[$1]}"; else echo -; fi; }
chart_row() { # LABEL DBSYNC FDW PIPE
    printf '%s\t%s\t%s\t%s\n' "$1" "$(secs_or_dash "$2")" "$(secs_or_dash "$3")" "$(secs_or_dash "$4")"
}
{
    chart_row "full load (PostgreSQL)" dbs_pg_init fdw_insert pg_pipe
    chart_row "full load (MariaDB)" dbs_my_init mysql_fdw my_pipe
    chart_row "unchanged re-sync" dbs_pg_same fdw_up_all ''
    chart_row "1% incremental" dbs_pg_incr fdw_incr ''
    chart_row "nothing new" dbs_pg_none_hard fdw_nothing ''
    chart_row "nothing new, 2nd call" dbs_pg_none_warm '' ''
    chart_row "nothing new, per table of $TABLES_N" dbs_pg_none_many '' ''
} >"$BENCH_DIR/chart.tsv"
cp "$BENCH_DIR/chart.tsv" "$REPO_RESULTS/chart-$ROWS.tsv"
if ((HAVE_GNUPLOT)); then
    gnuplot >"$LOGDIR/gnuplot.log" 2>&1 <<EOF || warn "gnuplot failed (see $LOGDIR/gnuplot.log)"
set terminal pngcairo size 1100,560 noenhanced font "DejaVu Sans,10"
set output '$REPO_RESULTS/bench-$ROWS.png'
set title "dbsync beside its peers: $ROWS rows, best of $RUNS, $(nproc) cores, fsync on (lower is better)"
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [0.001:*]
set ylabel "seconds (log scale)"
set xtics rotate by -25 nomirror
set grid ytics
set key top right
plot '$BENCH_DIR/chart.tsv' using 2:xtic(1) title 'dbsync' lc rgb '#2b6cb0', \
     '' using 3 title 'postgres_fdw / mysql_fdw' lc rgb '#dd6b20', \
     '' using 4 title 'COPY pipe (psql / mariadb CLI)' lc rgb '#718096'
EOF
    note "chart: $REPO_RESULTS/bench-$ROWS.png"
else
    warn "gnuplot-nox is not installable: no chart drawn"
fi
note "results kept in $REPO_RESULTS/results-$ROWS.txt"
