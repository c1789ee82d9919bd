#!/usr/bin/env bash
# Start the local PostgreSQL 15 cluster (Debian 12, no systemd) and make sure the journal's test
# role and database exist. Idempotent; run as root. Listens on loopback only (Debian's default).
# Prints the SQLAlchemy URL the journal tests use (AGW_TEST_POSTGRES_URL).
set -euo pipefail

VERSION="${PG_VERSION:-15}"
CLUSTER="${PG_CLUSTER:-main}"
ROLE="${AGW_PG_ROLE:-agw}"
PASSWORD="${AGW_PG_PASSWORD:-agw}"
DATABASE="${AGW_PG_DATABASE:-agw_test}"
PORT="${PG_PORT:-5432}"

if [ "$(id -u)" -ne 0 ]; then
    echo "start-postgres.sh: needs root (to start the cluster as the postgres user)" >&2
    exit 1
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "start-postgres.sh: pg_ctlcluster not found; install PostgreSQL: apt-get install postgresql" >&2
    exit 1
fi
if ! pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {found=1} END {exit !found}'; then
    echo "start-postgres.sh: creating cluster $VERSION/$CLUSTER" >&2
    pg_createcluster "$VERSION" "$CLUSTER" --port "$PORT" >&2
fi
status=$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $4}')
if [ "$status" != "online" ]; then
    echo "start-postgres.sh: starting cluster $VERSION/$CLUSTER" >&2
    pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi

psql_admin() { runuser -u postgres -- psql --port "$PORT" -v ON_ERROR_STOP=1 -qtA "$@"; }

for _ in $(seq 1 50); do  # the server may take a moment to accept connections
    if psql_admin -c "select 1" >/dev/null 2>&1; then break; fi
    sleep 0.2
done

if [ "$(psql_admin -c "select 1 from pg_roles where rolname = '$ROLE'")" != "1" ]; then
    psql_admin -c "create role \"$ROLE\" login password '$PASSWORD'" >&2
fi
if [ "$(psql_admin -c "select 1 from pg_database where datname = '$DATABASE'")" != "1" ]; then
    psql_admin -c "create database \"$DATABASE\" owner \"$ROLE\"" >&2
fi

echo "postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"
