#!/usr/bin/env bash
# Nightly logical backup of the collect database (custom format, compressed), keeping the
# last $KEEP_DAYS days. Schedule it, e.g. in cron at 02:30 (outside office hours):
#   30 2 * * *  COLLECT_PG_DSN=postgresql://collect@db/collect /opt/collect/deploy/backup.sh /var/backups/collect
# Test the backups with deploy/restore-drill.sh: a backup never restored is a hope, not a backup.
set -euo pipefail
dest="${1:?usage: backup.sh DEST_DIR}"
dsn="${COLLECT_PG_DSN:?set COLLECT_PG_DSN (libpq URL of the collect database)}"
keep_days="${KEEP_DAYS:-30}"
mkdir -p "$dest"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
file="$dest/collect-$stamp.dump"
pg_dump --format=custom --compress=6 --no-owner --file="$file.partial" "$dsn"
mv "$file.partial" "$file"
sha256sum "$file" > "$file.sha256"
find "$dest" -name 'collect-*.dump*' -mtime "+$keep_days" -delete
echo "$file"
