#!/usr/bin/env bash
# Start a local NATS server with JetStream for the result events (docs/events.md, `kind: nats`
# subscribers): listening on 127.0.0.1:4222 only, its JetStream store in $DATA_DIR/nats/store,
# in the background with its pid and log files beside it ($DATA_DIR/nats/nats-server.{pid,log}).
# Idempotent: a JetStream server already answering there is left alone (Debian's own nats-server
# service, which has no JetStream, is stopped first). Waits until it answers; prints its URL.
# The tests start servers of their own (tests/nats_server.py); this one is for `make run`.
set -euo pipefail

HOST=127.0.0.1
PORT="${NATS_PORT:-4222}"
DIR="${AGW_NATS_DIR:-${DATA_DIR:-var}/nats}"
PID_FILE="$DIR/nats-server.pid"
LOG_FILE="$DIR/nats-server.log"

BIN="$(command -v nats-server || true)"
if [ -z "$BIN" ]; then  # /usr/sbin is not on every PATH
    for candidate in /usr/sbin/nats-server /usr/bin/nats-server; do
        if [ -x "$candidate" ]; then BIN="$candidate"; break; fi
    done
fi
if [ -z "$BIN" ]; then
    echo "start-nats.sh: nats-server not found; install it: apt-get install nats-server" >&2
    exit 1
fi

# The INFO line a NATS server greets every client with ("" when nothing answers).
info() {
    ( exec 3<>"/dev/tcp/$HOST/$PORT" && IFS= read -r -t 2 line <&3 && printf '%s' "$line" ) 2>/dev/null || true
}

greeting="$(info)"
if [ -n "$greeting" ]; then
    if [[ "$greeting" == *'"jetstream":true'* ]]; then
        echo "nats://$HOST:$PORT"
        exit 0
    fi
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nats-server 2>/dev/null; then
        echo "start-nats.sh: Debian's nats-server service holds $HOST:$PORT without JetStream; stopping it" >&2
        systemctl stop nats-server
    else
        echo "start-nats.sh: a NATS server without JetStream answers on $HOST:$PORT; stop it, or set NATS_PORT" >&2
        exit 1
    fi
fi

mkdir -p "$DIR/store"
chmod 700 "$DIR" "$DIR/store"  # the store keeps result events: rendered device configuration
if [ -s "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    echo "start-nats.sh: nats-server (pid $(cat "$PID_FILE")) is running but does not answer yet" >&2
else
    rm -f "$PID_FILE"
    echo "start-nats.sh: starting nats-server on $HOST:$PORT (JetStream store $DIR/store, log $LOG_FILE)" >&2
    nohup "$BIN" -js -a "$HOST" -p "$PORT" -sd "$DIR/store" -P "$PID_FILE" -l "$LOG_FILE" >/dev/null 2>&1 &
fi

for _ in $(seq 1 100); do  # up to 20 s
    if [[ "$(info)" == *'"jetstream":true'* ]]; then
        echo "nats://$HOST:$PORT"
        exit 0
    fi
    sleep 0.2
done
echo "start-nats.sh: nats-server did not answer on $HOST:$PORT within 20 s; see $LOG_FILE:" >&2
tail -n 20 "$LOG_FILE" >&2 || true
exit 1
