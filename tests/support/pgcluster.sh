#!/bin/sh
# Throwaway PostgreSQL 15 clusters for the SQL tests.
#
#   pgcluster.sh start DIR NAME:PORT...   one initdb, copied per cluster, all started
#   pgcluster.sh standby DIR NAME:PORT FROM_PORT   a physical standby (pg_basebackup) of
#                                         the cluster on FROM_PORT, started and streaming
#   pgcluster.sh stop DIR                 stops every cluster under DIR, removes DIR
#
# initdb refuses to run as root, so when run as root the clusters belong to
# the postgres user (runuser). Each cluster listens on 127.0.0.1 only, with
# wal_level=logical (the replication playbooks need it) and durability off
# (the data is thrown away). Roles: postgres and atlas_admin (superusers,
# trust), atlas_pw (password "pw-Secret-42", scram) for the password tests.
set -eu

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    dir=$1
    shift
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
    fi
    as_owner "$PGBIN/initdb" -D "$dir/template" -U postgres --auth=trust --no-sync \
        -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    cat >"$dir/template/pg_hba.conf" <<'HBA'
local all all trust
host all atlas_pw 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
HBA
    for spec in "$@"; do
        name=${spec%%:*}
        port=${spec#*:}
        as_owner cp -a "$dir/template" "$dir/$name"
        as_owner mkdir -p "$dir/$name.sock"
        cat >>"$dir/$name/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/$name.sock'
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_connections = 50
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
wal_retrieve_retry_interval = 200ms
cluster_name = '$name'
CONF
    done
    # Start in parallel: each pg_ctl -w waits only for its own cluster.
    pids=""
    for spec in "$@"; do
        name=${spec%%:*}
        as_owner "$PGBIN/pg_ctl" -D "$dir/$name" -l "$dir/$name.log" -w -t 30 start >/dev/null &
        pids="$pids $!"
    done
    status=0
    for pid in $pids; do
        wait "$pid" || status=1
    done
    if [ $status -ne 0 ]; then
        for spec in "$@"; do
            cat "$dir/${spec%%:*}.log" >&2 || true
        done
        exit 1
    fi
    for spec in "$@"; do
        name=${spec%%:*}
        port=${spec#*:}
        as_owner "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
            -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE ROLE atlas_admin SUPERUSER LOGIN;
CREATE ROLE atlas_pw LOGIN PASSWORD 'pw-Secret-42';
CREATE DATABASE atlas OWNER atlas_admin;
SQL
    done
}

standby() {
    dir=$1
    name=${2%%:*}
    port=${2#*:}
    from=$3
    # -R writes standby.signal and primary_conninfo; the copied
    # postgresql.conf is the source's, so its port and socket are replaced.
    as_owner "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$from" -U postgres -D "$dir/$name" -R -X stream \
        --no-sync >"$dir/$name.basebackup.log" 2>&1 || { cat "$dir/$name.basebackup.log" >&2; exit 1; }
    as_owner mkdir -p "$dir/$name.sock"
    cat >>"$dir/$name/postgresql.conf" <<CONF
port = $port
unix_socket_directories = '$dir/$name.sock'
cluster_name = '$name'
hot_standby = on
CONF
    as_owner "$PGBIN/pg_ctl" -D "$dir/$name" -l "$dir/$name.log" -w -t 30 start >/dev/null ||
        { cat "$dir/$name.log" >&2; exit 1; }
}

stop() {
    dir=$1
    [ -d "$dir" ] || exit 0
    for pidfile in "$dir"/*/postmaster.pid; do
        [ -f "$pidfile" ] || continue
        as_owner "$PGBIN/pg_ctl" -D "$(dirname "$pidfile")" -m immediate -w stop >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
}

cmd=${1:-}
shift || true
case "$cmd" in
start) start "$@" ;;
standby) standby "$@" ;;
stop) stop "$@" ;;
*)
    echo "usage: pgcluster.sh start DIR NAME:PORT... | standby DIR NAME:PORT FROM_PORT | stop DIR" >&2
    exit 2
    ;;
esac
