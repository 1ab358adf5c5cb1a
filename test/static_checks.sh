#!/usr/bin/env bash
# Static checks: a warning-free build with -Wall -Wextra, cppcheck on src/,
# and no value spliced into remote or local SQL as a bare '%s' literal.
set -uo pipefail
cd "$DBSYNC_REPO"
n=0
ok()     { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git ls-files -z | xargs -0 -I{} cp --parents {} "$tmp" 2>/dev/null || cp -r . "$tmp"
if out=$(make -C "$tmp" -s 2>&1); then
    if grep -q "warning:" <<<"$out"; then not_ok "build has warnings"; grep "warning:" <<<"$out" | head
    else ok "warning-free build with -Wall -Wextra"; fi
else
    not_ok "build failed"; tail -20 <<<"$out"
fi

if command -v cppcheck >/dev/null; then
    if out=$(make -s cppcheck 2>&1); then ok "cppcheck clean"; else not_ok "cppcheck"; echo "$out" | head -30; fi
else
    not_ok "cppcheck is not installed"
fi

# '%s' inside single quotes in a format string means a value was spliced unescaped
if grep -n "'%s'" src/*.c | grep -v "^\s*\*" ; then not_ok "no bare '%s' literal in SQL"; else ok "no bare '%s' literal in SQL"; fi
exit 0
