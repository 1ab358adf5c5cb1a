#!/usr/bin/env bash
# Background auto-sync (sync_interval) and pg_cron scheduling, against the
# PostgreSQL source.  Needs the warehouse started with dbsync and pg_cron
# preloaded and dbsync.database = $WH_DB (scripts/testenv.sh does that).
set -euo pipefail
source "$DBSYNC_REPO/scripts/lib.sh"

n=0
ok()     { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; }
check()  { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }

count_local() { wh_psql -Atc "SELECT count(*) FROM bgw.items" 2>/dev/null || echo -1; }
count_src()   { src_psql -Atc "SELECT count(*) FROM bgw.items"; }
local_is()    { [ "$(count_local)" = "$1" ]; }
in_step()     { [ "$(count_local)" = "$(count_src)" ]; }

src_psql <<'SQL'
DROP SCHEMA IF EXISTS bgw CASCADE;
CREATE SCHEMA bgw;
CREATE TABLE bgw.items (id int PRIMARY KEY, val text, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO bgw.items SELECT g, 'v' || g, now() FROM generate_series(1, 2500) g;
SQL

# the syncs run as the server's owner, a non-superuser with a password mapping
wh_psql <<SQL
CREATE EXTENSION IF NOT EXISTS dbsync;
DROP SCHEMA IF EXISTS bgw CASCADE;
DROP SERVER IF EXISTS bgw CASCADE;
DROP ROLE IF EXISTS bgw_owner;
CREATE ROLE bgw_owner LOGIN;
GRANT CREATE ON DATABASE "$WH_DB" TO bgw_owner;
GRANT USAGE ON FOREIGN DATA WRAPPER dbsync TO bgw_owner;
SET ROLE bgw_owner;
CREATE SERVER bgw FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql',
    host '127.0.0.1', port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'bgw',
    batch_size '1000', sync_interval '1 second');
CREATE USER MAPPING FOR bgw_owner SERVER bgw OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
RESET ROLE;
SQL

# 1. the launcher picks the server up and a worker loads it (3 checkpoints)
if wait_until 40 local_is 2500; then ok "worker made the initial load"; else
    not_ok "worker made the initial load (local rows: $(count_local))"; log_tail "$WH_LOG" 30; fi
check "table created owned by the server owner" \
    '[ "$(wh_psql -Atc "SELECT tableowner FROM pg_tables WHERE schemaname = '"'"'bgw'"'"' AND tablename = '"'"'items'"'"'")" = bgw_owner ]'
check "status says ok, cursor set" \
    '[ "$(wh_psql -Atc "SELECT last_status || (cursor_value IS NOT NULL)::text FROM dbsync.status WHERE server = '"'"'bgw'"'"'")" = oktrue ]'

# 2. changes at the source arrive without anyone calling dbsync_run()
src_psql -c "UPDATE bgw.items SET val = 'changed', updated_at = now() WHERE id <= 10;
             DELETE FROM bgw.items WHERE id > 2490;
             INSERT INTO bgw.items VALUES (5000, 'new', now());"
digest_src() { src_psql -Atc "SELECT md5(string_agg(id || ':' || val, ',' ORDER BY id)) FROM bgw.items"; }
digest_wh()  { wh_psql -Atc "SELECT md5(string_agg(id || ':' || val, ',' ORDER BY id)) FROM bgw.items"; }
same_digest() { [ "$(digest_wh)" = "$(digest_src)" ]; }
if wait_until 20 same_digest; then ok "worker applied updates, inserts and deletes"; else
    not_ok "worker applied updates, inserts and deletes"; fi

# 3. without sync_interval nothing syncs by itself
wh_psql -c "ALTER SERVER bgw OPTIONS (DROP sync_interval)"
sleep 2
src_psql -c "INSERT INTO bgw.items VALUES (6000, 'after', now())"
sleep 4
check "no auto-sync once sync_interval is dropped" '[ "$(count_local)" = "$(( $(count_src) - 1 ))" ]'

# 4. pg_cron runs CALL dbsync_sync() (pg_cron 1.4: minute granularity)
if wh_psql -Atc "SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'" | grep -q 1 ||
   wh_psql -c "CREATE EXTENSION pg_cron" 2>/dev/null; then
    wh_psql -c "SELECT cron.schedule('dbsync-bgw', '* * * * *', \$\$CALL dbsync_sync('bgw')\$\$)" >/dev/null
    if wait_until 75 in_step; then ok "pg_cron job synced the server"; else
        not_ok "pg_cron job synced the server"
        wh_psql -c "SELECT status, return_message FROM cron.job_run_details ORDER BY runid DESC LIMIT 3" >&2 || true
    fi
    check "pg_cron run recorded as succeeded" \
        '[ "$(wh_psql -Atc "SELECT status FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = '"'"'dbsync-bgw'"'"' ORDER BY runid DESC LIMIT 1")" = succeeded ]'
    wh_psql -c "SELECT cron.unschedule('dbsync-bgw')" >/dev/null
else
    not_ok "pg_cron is not available in the warehouse"
fi

wh_psql -c "DROP SERVER bgw CASCADE; DROP SCHEMA bgw CASCADE;" >/dev/null
exit 0
