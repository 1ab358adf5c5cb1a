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
# shellcheck disable=SC2034  # the driver interface (SRC_NS, ...) is read by lib/fault_common.sh
set -uo pipefail
# shellcheck source=test/lib/fault_common.sh
source "$(dirname "$0")/lib/fault_common.sh"

MYDB=fault_my
SRV=fm

# ---------------------------------------------------------------- driver interface
# (see "driver interface" in lib/fault_common.sh)
SRC_NS=$MYDB
SRC_NOW="now(6)"
SRC_SERVER_OPTIONS="source_type 'mysql', host '127.0.0.1', port '$SRC_MY_PORT', dbname '$MYDB'"
SRC_PROC=mariadbd
SRC_LABEL=MariaDB
REMOTE_WHAT=statement
# the read counter: Rows_read, server-wide (nothing else uses this MariaDB
# meanwhile); it also counts the load's max(updated_at) and the like
SRC_READS_HOW=" (Rows_read)"
SRC_READS_PLUS=" and the load's max()"
RESUME_READ_SLACK=100
REPEAT_READ_SLACK=10

src_exec()     { my_sql -e "$1"; }
src_exec_utc() { my_sql -e "SET time_zone = '+00:00'; $1"; }
src_val()      { my_sql -N -e "$1" 2>/dev/null || true; }
src_session()  { my_sql -N --unbuffered; }

# ---------------------------------------------------------------- source server control
src_freeze()         { my_server_signal STOP; }
src_thaw()           { my_server_signal CONT 2>/dev/null; }
src_kill9()          { my_server_signal KILL; }
src_restart_killed() { my_server_stop KILL; my_server_start; }
cleanup() {
    src_thaw || true
    my_server_pid >/dev/null || my_server_start || true
}
trap cleanup EXIT

# src_rows_read [TABLE]: rows InnoDB read so far (server-wide)
src_rows_read() { my_root_sql -N -e "SHOW GLOBAL STATUS LIKE 'Rows_read'" 2>/dev/null | awk '{print $2}'; }
# remote_sessions: statements of dbsync still running at the source on this database
remote_sessions() {
    my_root_sql -N -e "SELECT count(*) FROM information_schema.processlist WHERE user = '$SRC_USER'
        AND command = 'Query' AND info LIKE '%$MYDB%'" 2>/dev/null || echo "?"
}
remote_sessions_list() {
    my_root_sql -N -e "SELECT id, command, time, state, left(info, 100) FROM information_schema.processlist WHERE user = '$SRC_USER'"
}

# ---------------------------------------------------------------- comparison
# COLS: plain column names; updated_at is printed in UTC with microseconds
# row_expr COLS TS NULL CAST: SQL for a row's line: COLS joined by '|', NULL as the
# SQL literal NULL, updated_at through TS (@ stands for the column), others with CAST.
row_expr() {
    local c e=()
    for c in $1; do
        if [[ $c == updated_at ]]; then e+=("coalesce(${2//@/$c}, $3)")
        else e+=("coalesce($c$4, $3)"); fi
    done
    local IFS=,; echo "concat_ws('|', ${e[*]})"
}
src_dump() {  # TABLE [WHERE] [COLS]
    my_sql -N -e "SET time_zone = '+00:00'; SELECT $(row_expr "${3:-$COLS}" "date_format(@, '%Y-%m-%d %H:%i:%s.%f')" "'\\\\N'" "")
                  FROM $MYDB.$1 ${2:+WHERE $2} ORDER BY id"
}
wh_dump() {   # TABLE [WHERE] [COLS] [SCHEMA]
    wh_psql -At -c "SELECT $(row_expr "${3:-$COLS}" "to_char(@ AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')" "'\\N'" ::text)
                    FROM ${4:-$SRV}.$1 ${2:+WHERE $2} ORDER BY id"
}

# ---------------------------------------------------------------- source tables of G, H, I, J
src_create_late() {
    my_sql -e "CREATE TABLE $MYDB.late (id int PRIMARY KEY, val varchar(60), updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6));
               INSERT INTO $MYDB.late SELECT seq, concat('v', seq), now(6) - interval 1 hour + interval seq second FROM seq_1_to_100;"
}
src_create_ties() {  # ROWS
    my_sql -e "CREATE TABLE $MYDB.ties (id bigint PRIMARY KEY, val varchar(60), updated_at timestamp(6) NOT NULL, KEY (updated_at));
               SET time_zone = '+00:00';
               INSERT INTO $MYDB.ties SELECT seq, md5(seq),
                   timestamp'2024-06-01 00:00:00' + interval ((seq + $BATCH DIV 2) DIV ($BATCH * 2)) second
                 FROM seq_1_to_$1;"
}
src_ties_summary() {
    src_val "SET time_zone = '+00:00'; SELECT group_concat(concat(n, ' rows at ', time(u)) ORDER BY u SEPARATOR ', ') FROM (SELECT updated_at u, count(*) n FROM $MYDB.ties GROUP BY 1) s"
}
src_create_deletes_tables() {
    my_sql -e "CREATE TABLE $MYDB.del_h (id bigint PRIMARY KEY, val varchar(40), updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6));
               INSERT INTO $MYDB.del_h SELECT seq, concat('v', seq), now(6) - interval 1 day FROM seq_1_to_2000;
               CREATE TABLE $MYDB.del_s LIKE $MYDB.del_h; INSERT INTO $MYDB.del_s SELECT * FROM $MYDB.del_h;
               CREATE TABLE $MYDB.del_i LIKE $MYDB.del_h; INSERT INTO $MYDB.del_i SELECT * FROM $MYDB.del_h;
               CREATE TABLE $MYDB.del_f (id bigint PRIMARY KEY, val varchar(40));
               INSERT INTO $MYDB.del_f SELECT seq, concat('v', seq) FROM seq_1_to_2000;"
}
src_create_schema_tables() {
    my_sql -e "CREATE TABLE $MYDB.sch (id bigint PRIMARY KEY, val varchar(10), note text, updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6));
               INSERT INTO $MYDB.sch SELECT seq, concat('v', seq), concat('note ', seq), now(6) - interval 1 day FROM seq_1_to_1000;
               CREATE TABLE $MYDB.sch_gone (id int PRIMARY KEY, val varchar(20));
               INSERT INTO $MYDB.sch_gone SELECT seq, concat('v', seq) FROM seq_1_to_50;"
}
src_widen_sch() { my_sql -e "ALTER TABLE $MYDB.sch MODIFY val varchar(60), MODIFY extra bigint;"; }
src_create_sch_new() {
    my_sql -e "CREATE TABLE $MYDB.sch_new (id int PRIMARY KEY, val varchar(20), updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6));
               INSERT INTO $MYDB.sch_new (id, val) SELECT seq, concat('n', seq) FROM seq_1_to_300;"
}

# ---------------------------------------------------------------- G1: lookback
# MySQL-family sources have no in-flight cap: the writer (fd 7) stamps its row
# before the newest committed row, lookback '1 minute' must catch it.
late_writer_begin() {
    echo "BEGIN; INSERT INTO $MYDB.late VALUES (1001, 'in flight during the sync', now(6)); SELECT 'inserted';" >&7
    wait_until 10 grep -q inserted "$T_WORK/late_writer.out" || diag "the late writer did not insert"
}
late_open_checks() { diag "run while the transaction is open: $SYNC_NOTICE; cursor $(st cursor_value late)"; }

# ---------------------------------------------------------------- H: holding the load
# LOCK TABLES ... WRITE on fd 8 blocks the load's next batch on a metadata lock.
ties_lock_prepare() { :; }
ties_lock() {
    echo "LOCK TABLES $MYDB.ties WRITE; SELECT 'locked';" >&8
    wait_until 10 grep -q locked "$T_WORK/ties_locker.out" || diag "the lock was not taken"
}
ties_load_blocked() {
    [[ $(my_root_sql -N -e "SELECT count(*) FROM information_schema.processlist WHERE user = '$SRC_USER' AND state LIKE '%metadata lock%'") -ge 1 ]]
}
ties_unlock() { echo "UNLOCK TABLES;" >&8; }

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
for t in $FAULT_TABLES; do
    src_exec "CREATE TABLE $MYDB.$t LIKE $MYDB.template; INSERT INTO $MYDB.$t SELECT * FROM $MYDB.template;"
done

use_wh_db fault_mysql
src_server $SRV "batch_size '$BATCH', tables 'big%'" || { echo "not ok 1 - warehouse setup"; exit 1; }
probe=$(wh_val "SELECT count(*) FROM dbsync_discover('$SRV')")
if [[ $probe =~ ^[0-9]+$ ]] && ((probe > 0)); then
    diag "MySQL driver: dbsync_discover('$SRV') sees $probe tables ($(wh_val "SELECT max(source_flavor) FROM dbsync_discover('$SRV')"))"
else
    not_ok "the MySQL driver can discover the MariaDB source: $(wh_psql -At -c "SELECT count(*) FROM dbsync_discover('$SRV')" 2>&1 | head -c 400)"
    diag "every MariaDB fault case below depends on it; they run anyway and fail where the driver fails"
fi
diag "source: $ROWS rows per table, batch_size $BATCH, MariaDB on port $SRC_MY_PORT"

# ---------------------------------------------------------------- the cases
run_load_faults                                    # A B C D E F K L
case_late_commits fml '1 minute' G1_inflight_lookback "lookback 1 minute"   # G
case_ties fmt                                      # H
case_deletes fmd fmdel                             # I
case_schema_changes fmsch                          # J

print_figures
((T_FAILED == 0))
