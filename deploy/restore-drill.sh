#!/usr/bin/env bash
# Restore drill: restore a backup into a scratch database and check that `collect score`
# gives identical results (same inputs hash, same scores) before and after.
#   deploy/restore-drill.sh BACKUP.dump SOURCE_DSN SCRATCH_DB CAMPAIGN [CAMPAIGN…]
# SOURCE_DSN: libpq URL of the live database; SCRATCH_DB: a database name on the same server
# that may be dropped and recreated. Exit 0 when every campaign scores identically.
set -euo pipefail
backup="${1:?usage: restore-drill.sh BACKUP.dump SOURCE_DSN SCRATCH_DB CAMPAIGN...}"
source_dsn="${2:?source DSN}"
scratch="${3:?scratch database name}"
shift 3
[ "$#" -gt 0 ] || { echo "name at least one campaign" >&2; exit 2; }

server_dsn="${source_dsn%/*}"
psql -q -v ON_ERROR_STOP=1 "$server_dsn/postgres" -c "DROP DATABASE IF EXISTS \"$scratch\"" -c "CREATE DATABASE \"$scratch\""
pg_restore --no-owner --exit-on-error --dbname="$server_dsn/$scratch" "$backup"

to_sqlalchemy() { echo "postgresql+psycopg://${1#postgresql://}"; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for campaign in "$@"; do
  COLLECT_DATABASE_URL="$(to_sqlalchemy "$source_dsn")" collect score "$campaign" --format json --out "$work/before.json"
  COLLECT_DATABASE_URL="$(to_sqlalchemy "$server_dsn/$scratch")" collect score "$campaign" --format json --out "$work/after.json"
  # computed_at differs by design; everything else must be byte-identical.
  if diff <(grep -v '"computed_at"' "$work/before.json") <(grep -v '"computed_at"' "$work/after.json") >/dev/null; then
    echo "$campaign: identical after restore ($(grep -o '"inputs_sha256": *"[0-9a-f]*"' "$work/after.json"))"
  else
    echo "$campaign: DIFFERENT after restore" >&2
    status=1
  fi
done
exit "$status"
