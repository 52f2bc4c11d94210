#!/usr/bin/env bash
# The compose topology without Docker: the local PostgreSQL, a one-shot migration, then the
# web app with several uvicorn workers in the background.
#   deploy/run-local.sh start | stop | status
# Settings come from the environment (or .env): COLLECT_SECRET_KEY is required.
# Defaults: database collect_local on 127.0.0.1:5432, port 8000, 2 workers, state in ./.run/.
set -euo pipefail

cmd="${1:-start}"
run_dir="${COLLECT_RUN_DIR:-$PWD/.run}"
port="${PORT:-8000}"
workers="${WORKERS:-2}"
pg_server="${PG_SERVER:-postgresql://postgres@127.0.0.1:5432}"
db_name="${DB_NAME:-collect_local}"
export COLLECT_DATABASE_URL="${COLLECT_DATABASE_URL:-postgresql+psycopg://${pg_server#postgresql://}/$db_name}"
pid_file="$run_dir/collect.pid"
log_file="$run_dir/collect.log"

running() { [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

case "$cmd" in
  start)
    if running; then echo "already running (pid $(cat "$pid_file"))"; exit 0; fi
    : "${COLLECT_SECRET_KEY:?COLLECT_SECRET_KEY must be set (see deploy/env.example)}"
    mkdir -p "$run_dir"
    # The database, as the compose `db` service would provide it.
    if ! psql -qtA "$pg_server/postgres" -c "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1; then
      psql -q "$pg_server/postgres" -c "CREATE DATABASE \"$db_name\""
    fi
    # The one-shot migration job.
    collect db upgrade
    # The app: uvicorn with several workers, detached; logs to a file. The workers share their
    # /metrics timings through this directory, emptied at each start (prometheus_client).
    export PROMETHEUS_MULTIPROC_DIR="$run_dir/metrics"
    rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    nohup collect serve --host 127.0.0.1 --port "$port" --workers "$workers" --proxy-headers \
      >>"$log_file" 2>&1 &
    echo $! > "$pid_file"
    for _ in $(seq 1 60); do
      if python3 -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=1).status == 200 else 1)" 2>/dev/null; then
        echo "collect is up at http://127.0.0.1:$port ($workers workers, pid $(cat "$pid_file"), log $log_file)"
        exit 0
      fi
      running || { echo "collect exited; see $log_file" >&2; tail -n 20 "$log_file" >&2; exit 1; }
      sleep 0.5
    done
    echo "collect did not become ready in 30 s; see $log_file" >&2
    exit 1
    ;;
  stop)
    if running; then
      kill -TERM "$(cat "$pid_file")"
      for _ in $(seq 1 40); do running || break; sleep 0.25; done
      running && kill -KILL "$(cat "$pid_file")"
    fi
    rm -f "$pid_file"
    echo "stopped"
    ;;
  status)
    if running; then echo "running (pid $(cat "$pid_file"))"; else echo "not running"; exit 1; fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
