#!/usr/bin/env bash
# Runs of any length stay flat (issue 8):
#   1  CALL dbsync_sync over 1,500 one-row tables: every table synced (the procedure
#      commits after every table, so locks do not pile up)
#   2  SELECT dbsync_run() over the same 1,500 tables in one transaction: the
#      statement completes, every table is ok or says which limit it hit (a table
#      running out of lock space never stops the others)
#   3  backend memory of a 300-checkpoint CALL is no more than that of a
#      30-checkpoint one plus 5 MB (per-step memory is freed at every commit)
set -uo pipefail
source "$(dirname "$0")/lib/fault_common.sh"

NTABLES=${LONG_RUN_TABLES:-1500}
use_wh_db long_run

src_psql -q >/dev/null <<SQL || { not_ok "source setup"; exit 1; }
DROP SCHEMA IF EXISTS lr CASCADE;
CREATE SCHEMA lr;
DO \$\$ BEGIN
  FOR i IN 1..$NTABLES LOOP
    EXECUTE format('CREATE TABLE lr.t%s (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT now())', i);
    EXECUTE format('INSERT INTO lr.t%s VALUES (%s, ''row %s'')', i, i, i);
  END LOOP;
END \$\$;
DROP SCHEMA IF EXISTS lrmem CASCADE;
CREATE SCHEMA lrmem;
CREATE TABLE lrmem.big (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
INSERT INTO lrmem.big SELECT g, md5(g::text), '2024-01-01' FROM generate_series(1, 30000) g;
SQL
wh_psql -q >/dev/null <<SQL
CREATE SERVER lr FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'lr');
CREATE USER MAPPING FOR postgres SERVER lr OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL

# ---------------------------------------------------------------- 1: CALL
t0=$(now)
wh_psql -q -c "SET client_min_messages = warning" -c "CALL dbsync_sync('lr')" >"$T_WORK/call.out" 2>&1
rc=$?
figure call_tables "$NTABLES tables by CALL dbsync_sync in $(elapsed "$t0" "$(now)") s"
check "1 CALL dbsync_sync over $NTABLES tables completed" [ $rc = 0 ]
check "1 every table ok" [ "$(wh_val "SELECT count(*) FROM dbsync.status WHERE server = 'lr' AND last_status = 'ok'")" = "$NTABLES" ]
check "1 every row arrived" [ "$(wh_val "SELECT count(*) FROM pg_tables WHERE schemaname = 'lr'")" = "$NTABLES" ]

# ---------------------------------------------------------------- 2: one transaction
src_psql -q -c "UPDATE lr.t1 SET v = 'changed', updated_at = now()" >/dev/null
t0=$(now)
wh_psql -At -c "SELECT status, count(*), min(message) FROM dbsync_run('lr') GROUP BY 1 ORDER BY 1" \
    >"$T_WORK/run.out" 2>&1
rc=$?
figure run_tables "$NTABLES tables by one dbsync_run() in $(elapsed "$t0" "$(now)") s: $(tr '\n' ' ' <"$T_WORK/run.out" | cut -c1-200)"
check "2 dbsync_run() over $NTABLES tables completed as a statement" [ $rc = 0 ]
bad=$(awk -F'|' '$1 != "ok" && $3 !~ /max_locks_per_transaction/' "$T_WORK/run.out")
check "2 every table is ok or names the lock limit it hit" [ -z "$bad" ]
check "2 the change arrived (table 1 ok)" \
    [ "$(wh_val "SELECT v FROM lr.t1")/$(wh_val "SELECT last_status FROM dbsync.status WHERE server = 'lr' AND table_name = 't1'")" = changed/ok ]

# a first run creates every table in the one transaction (about 12 locks each)
wh_psql -q >/dev/null <<SQL
CREATE SERVER lr2 FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'lr', target_schema 'lr2');
CREATE USER MAPPING FOR postgres SERVER lr2 OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
wh_psql -At -c "SELECT status, count(*), min(message) FROM dbsync_run('lr2') GROUP BY 1 ORDER BY 1" \
    >"$T_WORK/run2.out" 2>&1
rc=$?
figure first_run "first dbsync_run() over $NTABLES tables: $(tr '\n' ' ' <"$T_WORK/run2.out" | cut -c1-300)"
check "2 a first dbsync_run() over $NTABLES tables completed as a statement" [ $rc = 0 ]
bad=$(awk -F'|' '$1 != "ok" && $3 !~ /max_locks_per_transaction/' "$T_WORK/run2.out")
check "2 every table is ok or names the lock limit it hit" [ -z "$bad" ]
wh_psql -q -c "SET client_min_messages = warning" -c "CALL dbsync_sync('lr2')" >/dev/null 2>&1
check "2 CALL dbsync_sync then completes what that run could not" \
    [ "$(wh_val "SELECT count(*) FROM dbsync.status WHERE server = 'lr2' AND last_status = 'ok'")" = "$NTABLES" ]

# ---------------------------------------------------------------- 3: memory per checkpoint
# peak private memory (RssAnon, kB) of the backend running CALL dbsync_sync
peak_rss() {   # SERVER BATCH
    local srv=$1 pid peak=0 v
    wh_psql -q >/dev/null <<SQL
CREATE SERVER $srv FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'lrmem', target_schema '$srv', batch_size '$2');
CREATE USER MAPPING FOR postgres SERVER $srv OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
    bg_start "mem_$srv" "SELECT pg_sleep(1)" "SET client_min_messages = warning" "CALL dbsync_sync('$srv')"
    wait_until 10 eval "[ -n \"\$(wh_val \"SELECT pid FROM pg_stat_activity WHERE application_name = 'mem_$srv'\")\" ]"
    pid=$(wh_val "SELECT pid FROM pg_stat_activity WHERE application_name = 'mem_$srv'")
    while [[ -n $pid ]] && kill -0 "$BG_PID" 2>/dev/null; do
        v=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        [[ -n $v ]] && ((v > peak)) && peak=$v
        sleep 0.05
    done
    wait "$BG_PID"
    echo "$peak"
}
m30=$(peak_rss mem30 1000)
m300=$(peak_rss mem300 100)
figure memory "peak backend private memory: 30 checkpoints ${m30} kB, 300 checkpoints ${m300} kB"
check "3 both loads complete" [ "$(wh_val "SELECT count(*) FROM mem30.big")/$(wh_val "SELECT count(*) FROM mem300.big")" = 30000/30000 ]
flat() { [ "$m30" -gt 0 ] && [ "$m300" -le $((m30 + 5120)) ]; }
check "3 300 checkpoints use no more than 30 plus 5 MB (${m30} kB / ${m300} kB)" flat

print_figures
echo "1..$T_N"
exit $((T_FAILED > 0))
