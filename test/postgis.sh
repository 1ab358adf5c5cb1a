#!/usr/bin/env bash
# Extension types (issue 8): PostGIS installed in the warehouse in schema "gis", not
# on the search path.
#   1  a PostgreSQL source's geometry(Point,4326) and geography columns keep their
#      types (the remote "public.geometry" is found in the extension's schema)
#   2  a MariaDB spatial table with a bad row under on_row_error 'skip': the good rows
#      arrive as PostGIS geometries, the bad ones are skipped and sampled
#   3  an SRID beyond PostGIS's 999999 is never changed silently
set -uo pipefail
source "$(dirname "$0")/lib/fault_common.sh"

if [[ ! -f $("$PG_CONFIG" --sharedir)/extension/postgis.control ]]; then
    echo "ok 1 - # SKIP PostGIS (postgresql-15-postgis-3) is not installed"
    exit 0
fi
use_wh_db postgis
wh_psql -q -c "CREATE SCHEMA gis; CREATE EXTENSION postgis SCHEMA gis" >/dev/null ||
    { not_ok "PostGIS in schema gis"; exit 1; }

src_admin_psql -q >/dev/null <<SQL || { not_ok "PostgreSQL source setup"; exit 1; }
CREATE EXTENSION IF NOT EXISTS postgis;
DROP SCHEMA IF EXISTS gsrc CASCADE;
CREATE SCHEMA gsrc AUTHORIZATION $SRC_USER;
SQL
src_psql -q >/dev/null <<'SQL' || { not_ok "PostgreSQL source table"; exit 1; }
CREATE TABLE gsrc.places (id int PRIMARY KEY, geom public.geometry(Point, 4326),
    geog public.geography(Point, 4326), updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO gsrc.places VALUES
    (1, public.ST_SetSRID(public.ST_MakePoint(13.4, 52.5), 4326), 'SRID=4326;POINT(13.4 52.5)'),
    (2, public.ST_SetSRID(public.ST_MakePoint(-74.0, 40.7), 4326), 'SRID=4326;POINT(-74 40.7)'),
    (3, NULL, NULL);
SQL
my_root_sql -e "DROP DATABASE IF EXISTS gis_my; CREATE DATABASE gis_my CHARACTER SET utf8mb4;
    GRANT ALL ON gis_my.* TO '$SRC_USER'@'127.0.0.1', '$SRC_USER'@'localhost';" >/dev/null &&
my_sql -e "CREATE TABLE gis_my.sp (id int PRIMARY KEY, g geometry, emb text);
    INSERT INTO gis_my.sp VALUES (1, ST_GeomFromText('POINT(1 2)', 4326), '[1,2]'),
        (2, ST_GeomFromText('POINT(3 4)', 4326), '[1,x]'),
        (3, ST_GeomFromText('POINT(5 6)', 1000000), '[3,4]'),
        (4, ST_GeomFromText('LINESTRING(0 0,1 1)'), '[5,6]');
    CREATE TABLE gis_my.sp_big_srid (id int PRIMARY KEY, g geometry);
    INSERT INTO gis_my.sp_big_srid VALUES (1, ST_GeomFromText('POINT(5 6)', 4294967295));" >/dev/null ||
    { not_ok "MariaDB source setup"; exit 1; }

wh_psql -q >/dev/null <<SQL
CREATE SERVER gpg FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'gsrc');
CREATE USER MAPPING FOR postgres SERVER gpg OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER gmy FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname 'gis_my', tables 'sp', vector_columns 'sp.emb', on_row_error 'skip');
CREATE USER MAPPING FOR postgres SERVER gmy OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER gmy2 FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname 'gis_my', tables 'sp_big_srid', target_schema 'gmy2');
CREATE USER MAPPING FOR postgres SERVER gmy2 OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
coltype() { wh_val "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '$1'::regclass AND attname = '$2'"; }

# ---------------------------------------------------------------- 1: PG source
wh_psql -q -c "SELECT count(*) FROM dbsync_run('gpg')" >/dev/null
check "1 geometry(Point,4326) kept (from schema gis)" [ "$(coltype gpg.places geom)" = "gis.geometry(Point,4326)" ]
check "1 geography(Point,4326) kept" [ "$(coltype gpg.places geog)" = "gis.geography(Point,4326)" ]
want=$(src_psql -At -c "SELECT string_agg(id || ':' || coalesce(public.ST_AsEWKT(geom), '-') || ':' || coalesce(public.ST_AsEWKT(geog::public.geometry), '-'), ',' ORDER BY id) FROM gsrc.places")
got=$(wh_val "SELECT string_agg(id || ':' || coalesce(gis.ST_AsEWKT(geom), '-') || ':' || coalesce(gis.ST_AsEWKT(geog::gis.geometry), '-'), ',' ORDER BY id) FROM gpg.places")
check "1 values identical ($got)" [ "$got" = "$want" ]

# ---------------------------------------------------------------- 2: MariaDB, bad rows skipped
wh_psql -At -c "SELECT status || ': ' || coalesce(message, '') FROM dbsync_run('gmy')" >"$T_WORK/gmy.out" 2>&1
check "2 the table is ok with rows skipped ($(head -c 200 "$T_WORK/gmy.out"))" grep -q "^ok: 2 source row(s) could not be converted" "$T_WORK/gmy.out"
check "2 column is a PostGIS geometry" [ "$(coltype gmy.sp g)" = "gis.geometry" ]
check "2 the good rows arrived as geometries" \
    [ "$(wh_val "SELECT string_agg(id || ':' || gis.ST_AsEWKT(g), ',' ORDER BY id) FROM gmy.sp")" = "1:SRID=4326;POINT(1 2),4:LINESTRING(0 0,1 1)" ]
check "2 the first bad row is sampled by its key" \
    [ "$(wh_val "SELECT last_row_error_sample->'key'->>'id' FROM dbsync.status WHERE server = 'gmy'")" = 2 ]

# ---------------------------------------------------------------- 3: SRID beyond 999999
wh_psql -At -c "SELECT status || ': ' || coalesce(message, '') FROM dbsync_run('gmy2')" >"$T_WORK/gmy2.out" 2>&1
said_why() { grep -q "^error: invalid spatial value" "$T_WORK/gmy2.out" && grep -q "SRIDs up to 999999" "$T_WORK/gmy2.out"; }
check "3 an SRID of 4294967295 fails the table, saying why ($(head -c 150 "$T_WORK/gmy2.out" | tr '\n' ' '))" said_why
no_rows() {
    [ "$(wh_val "SELECT to_regclass('gmy2.sp_big_srid') IS NULL")" = t ] ||
        [ "$(wh_val "SELECT count(*) FROM gmy2.sp_big_srid")" = 0 ]
}
check "3 no row with a changed SRID" no_rows

echo "1..$T_N"
exit $((T_FAILED > 0))
