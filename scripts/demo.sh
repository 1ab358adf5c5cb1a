#!/usr/bin/env bash
# The body of `make demo`: dbsync keeping a PostgreSQL warehouse in sync with an IoT
# database on YugabyteDB (a PostgreSQL stand-in here) and a healthcare database on TiDB
# (a MariaDB stand-in), on throwaway servers under /tmp/dbsync-demo:
#   warehouse 127.0.0.1:56432 (db warehouse), source PG :56433, MariaDB :56306.
# Round 1 loads demo/iot.sql and demo/healthcare.sql and syncs; round 2 applies
# demo/changes_*.sql (updates, inserts, a delete, a new column) and syncs again.
#
# Environment: KEEP=1 leaves the servers running afterwards for you to look around
# (the demo prints how to connect; `make demo-stop` stops them; they trust local
# connections, so not on a shared machine); SKIP_BUILD=1 skips make install;
# DEMO_DIR, DEMO_WH_PORT, DEMO_SRC_PG_PORT, DEMO_SRC_MY_PORT move it elsewhere (the
# test environment's WH_PORT etc. are deliberately not used).
# Exit status: non-zero when the IoT part fails. A failing healthcare (TiDB) part is
# shown with its error from dbsync.status but does not fail the demo.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export DBSYNC_TESTDIR=${DEMO_DIR:-/tmp/dbsync-demo}
export WH_PORT=${DEMO_WH_PORT:-56432} SRC_PG_PORT=${DEMO_SRC_PG_PORT:-56433}
export SRC_MY_PORT=${DEMO_SRC_MY_PORT:-56306} WH_DB=warehouse
# shellcheck source=scripts/lib.sh
DBSYNC_NO_ENV_FILE=1 source scripts/lib.sh
export PGTZ=UTC   # every psql session below shows times in UTC

IOT_TABLES=(devices sensor_readings alerts maintenance_log)
HEALTH_TABLES=(caretakers patients patient_metadata usual_spots)
iot_ok=1 health_ok=1

# Show a query and its result; failures are reported, never fatal.
show() {
    wh_psql -e "$@" || { warn "the statement above failed"; return 1; }
}

# ---------------------------------------------------------------- steps
setup_servers() {
    section "dbsync in the warehouse"
    show <<SQL || { iot_ok=0; return 1; }
CREATE EXTENSION dbsync;
CREATE SERVER iot FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'yugabytedb', host '127.0.0.1', port '$SRC_PG_PORT',
    dbname '$SRC_DB', schema 'public');
CREATE USER MAPPING FOR CURRENT_USER SERVER iot
    OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
    show <<SQL || health_ok=0
CREATE SERVER health FOREIGN DATA WRAPPER dbsync OPTIONS (
    source_type 'tidb', host '127.0.0.1', port '$SRC_MY_PORT', dbname '$SRC_DB',
    vector_columns 'patients.embedding');
CREATE USER MAPPING FOR CURRENT_USER SERVER health
    OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
    section "what a run would sync (preview)"
    show -c "SELECT * FROM dbsync_discover('iot')" || true
}

# sync_round N: one dbsync_run(), or one per server when the whole call errors.
sync_round() {
    section "round $1: sync"
    if ! show -c 'SELECT * FROM dbsync_run()'; then
        warn "dbsync_run() raised an error; running the servers one at a time"
        show -c "SELECT * FROM dbsync_run('iot')" || iot_ok=0
        if ((health_ok)); then show -c "SELECT * FROM dbsync_run('health')" || health_ok=0; fi
    fi
    show -c 'SELECT server, table_name, cursor_column, cursor_value, last_status, rows_total
               FROM dbsync.status ORDER BY 1, 2' || iot_ok=0
    if [[ $(wh_psql -Atc "SELECT count(*) FROM dbsync.status WHERE last_status = 'error'" 2>/dev/null) != 0 ]]; then
        show -c "SELECT server, table_name, last_error, last_error_at, last_row_error_sample
                   FROM dbsync.status WHERE last_status = 'error' ORDER BY 1, 2" || true
    fi
    check_iot
    check_health
}

# The IoT tables must hold exactly the source's rows: every source column, compared
# as text (same PostgreSQL types on both sides; times in UTC).
check_iot() {
    local t cols src wh n_ok
    n_ok=$(wh_psql -Atc "SELECT count(*) FROM dbsync.status
                          WHERE server::text = 'iot' AND last_status = 'ok'" 2>/dev/null || echo 0)
    if [[ $n_ok != "${#IOT_TABLES[@]}" ]]; then
        warn "iot: $n_ok of ${#IOT_TABLES[@]} tables have last_status ok"
        iot_ok=0
    fi
    for t in "${IOT_TABLES[@]}"; do
        cols=$(src_psql -Atc "SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)
                                FROM information_schema.columns
                               WHERE table_schema = 'public' AND table_name = '$t'")
        src=$(src_psql -Atc "SELECT count(*) || ' rows, md5 ' || md5(string_agg(r::text, '|' ORDER BY id))
                               FROM (SELECT $cols FROM public.$t) AS r")
        wh=$(wh_psql -Atc "SELECT count(*) || ' rows, md5 ' || md5(string_agg(r::text, '|' ORDER BY id))
                             FROM (SELECT $cols FROM iot.$t) AS r" 2>&1) || true
        if [[ $src == "$wh" ]]; then
            log "iot.$t: identical to the source ($src)"
        else
            log "iot.$t: DIFFERS from the source: source $src; warehouse $wh"
            iot_ok=0
        fi
    done
}

# Healthcare: row counts only (types differ between MySQL and PostgreSQL).
check_health() {
    local t src wh
    ((health_ok)) || return 0
    for t in "${HEALTH_TABLES[@]}"; do
        src=$(my_sql -N -e "SELECT count(*) FROM $t")
        wh=$(wh_psql -Atc "SELECT count(*) FROM health.$t" 2>/dev/null) || wh="(no table)"
        log "health.$t: source $src rows, warehouse $wh"
        [[ $src == "$wh" ]] || health_ok=0
    done
}

samples() {
    section "sample rows in the warehouse"
    show -c "SELECT id, name, device_type, status, firmware_version, battery_pct, updated_at
               FROM iot.devices WHERE id IN (1, 3, 7, 51) ORDER BY id" || iot_ok=0
    show -c "SELECT device_id, count(*) AS readings, round(avg(value), 2) AS avg_value,
                    max(recorded_at) AS last_reading
               FROM iot.sensor_readings GROUP BY device_id ORDER BY device_id LIMIT 5" || iot_ok=0
    if ((health_ok)); then
        show -c "SELECT id, first_name, last_name, date_of_birth, allergies, weight_kg, embedding
                   FROM health.patients WHERE id <= 3 OR id > 300 ORDER BY id" || health_ok=0
        show -c "SELECT column_name, data_type FROM information_schema.columns
                  WHERE table_schema = 'health' AND table_name = 'patients'
                  ORDER BY ordinal_position" || health_ok=0
    else
        log "(no healthcare samples: the health sync failed, see above)"
    fi
}

# ---------------------------------------------------------------- main
bash scripts/deps.sh
if [[ ${SKIP_BUILD:-} != 1 ]]; then
    section "build and install dbsync"
    make -s PG_CONFIG="$PG_CONFIG"
    make -s PG_CONFIG="$PG_CONFIG" install
fi

section "demo servers"
if [[ ${KEEP:-0} != 1 ]]; then
    trap 'bash "$REPO/scripts/testenv.sh" stop || true' EXIT
fi
bash scripts/testenv.sh start
# shellcheck source=/dev/null
source "$DBSYNC_TESTDIR/env.sh"

section "demo data"
src_psql -f demo/iot.sql
my_sql <demo/healthcare.sql
log "IoT (YugabyteDB stand-in):    $(src_psql -Atc "SELECT string_agg(format('%s %s', t, n), ', ')
      FROM (VALUES ('devices', (SELECT count(*) FROM devices)),
                   ('sensor_readings', (SELECT count(*) FROM sensor_readings)),
                   ('alerts', (SELECT count(*) FROM alerts)),
                   ('maintenance_log', (SELECT count(*) FROM maintenance_log))) AS v (t, n)")"
log "healthcare (TiDB stand-in):   $(my_sql -N -e "SELECT CONCAT('caretakers ', (SELECT count(*) FROM caretakers),
      ', patients ', (SELECT count(*) FROM patients), ', patient_metadata ', (SELECT count(*) FROM patient_metadata),
      ', usual_spots ', (SELECT count(*) FROM usual_spots))")"

setup_servers || true
sync_round 1

section "changes at the sources"
src_psql -e -f demo/changes_iot.sql
sed '/^--/d; /^$/d' demo/changes_health.sql
my_sql <demo/changes_health.sql
sync_round 2
samples

section "result"
if ((health_ok)); then
    log "healthcare (TiDB) sync: ok"
else
    log "healthcare (TiDB) sync: FAILED -- see the health rows of dbsync_run() and dbsync.status above"
fi
if [[ ${KEEP:-0} != 1 ]]; then
    section "the demo servers were stopped"
    cat >&2 <<EOF
To look around afterwards, run the demo as: make demo KEEP=1
(it then prints how to connect; make demo-stop stops the servers). They trust local
connections without a password: keep them only on a machine nobody else uses.
EOF
else
    section "the demo servers keep running"
    cat >&2 <<EOF
Look around in the warehouse:
    source $DBSYNC_TESTDIR/env.sh && psql        # database $WH_DB, as postgres
    SELECT * FROM dbsync.status;                 -- one row per table, with health
    SELECT * FROM dbsync.runs ORDER BY finished_at DESC LIMIT 10;
    SELECT * FROM iot.sensor_readings LIMIT 5;
    SELECT * FROM dbsync_run('iot');             -- sync again
The sources: source PostgreSQL (IoT)  psql -h 127.0.0.1 -p $SRC_PG_PORT -U $SRC_USER $SRC_DB  (password $SRC_PASSWORD)
             MariaDB (healthcare)    mariadb -h 127.0.0.1 -P $SRC_MY_PORT -u $SRC_USER -p$SRC_PASSWORD $SRC_DB
Next steps: README.md, section "After the demo".
They trust local connections without a password: stop them when you are done.
Stop the servers: make demo-stop
EOF
fi
if ((iot_ok)); then
    log "IoT (YugabyteDB) sync: ok"
else
    die "IoT (YugabyteDB) sync: FAILED"
fi
