# shellcheck shell=bash
# TAP helpers of the test/ scripts that check SQL results (sourced, not run).
#   ok NAME / not_ok NAME     print "ok N - NAME" / "not ok N - NAME" (failures counted in $failed)
#   check NAME CMD...         ok when CMD succeeds
#   diag TEXT                 "# ..." lines
#   q SQL                     the warehouse's unaligned answer
#   is SQL EXPECTED           SQL's answer is EXPECTED (else says what it was)
#   skip_unless_logical_source  skip the test (exit 0) unless the source PG has wal_level = logical
n=0
failed=0
ok()     { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
check()  { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }
diag()   { local l; while IFS= read -r l; do echo "# $l"; done <<<"$*"; }
q()      { wh_psql -Atc "$1"; }
is()     { local got; got=$(q "$1"); [ "$got" = "$2" ] || { diag "expected '$2', got '$got' from: $1"; return 1; }; }
skip_unless_logical_source() {
    if [[ $(src_admin_psql -Atc "SHOW wal_level") != logical ]]; then
        echo "ok 1 - # SKIP the source PostgreSQL does not run with wal_level = logical"
        exit 0
    fi
}
