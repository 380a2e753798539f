# Throwaway PostgreSQL on 127.0.0.1 for tests. Source this file, then `pg_start`; `pg_stop`
# removes the cluster. Sets TRUSTDECK_TEST_POSTGRES_URL.
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}

pg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

pg_as() {
  if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}

pg_start() {
  PGD=$(mktemp -d /tmp/trustdeck-pg.XXXXXX)
  [ "$(id -u)" -eq 0 ] && chown postgres: "$PGD"
  PGPORT=$(pg_free_port)
  pg_as "$PG_BIN/initdb -D $PGD/data -A trust -U postgres --no-sync -E UTF8" >"$PGD.initdb.log" 2>&1 \
    || { cat "$PGD.initdb.log" >&2; return 1; }
  pg_as "$PG_BIN/pg_ctl -D $PGD/data -l $PGD/log -w -o \"-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGD -c fsync=off -c max_connections=300\" start" >/dev/null \
    || { cat "$PGD/log" >&2; return 1; }
  export TRUSTDECK_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
  echo "pg: throwaway PostgreSQL on 127.0.0.1:$PGPORT ($PGD)"
}

pg_stop() {
  [ -n "${PGD:-}" ] || return 0
  pg_as "$PG_BIN/pg_ctl -D $PGD/data stop -m fast" >/dev/null 2>&1 || true
  rm -rf "$PGD" "$PGD.initdb.log"
  PGD=
}
