#!/usr/bin/env bash
# `npm run consumers`: the four event consumers (audit, analytics, fraud, webhooks), each its own
# process in its own consumer group, until Ctrl-C / SIGTERM (forwarded to each; they finish the
# event in hand and exit). `npm start` runs them too; this is for running them on their own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pids=()
for name in audit analytics fraud webhooks; do
  node --import tsx src/events/consumers/main.ts "$name" &
  pids+=("$!")
done
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; exit 0; }
trap stop INT TERM
# If one consumer exits on its own, stop the others (a supervisor restarts the lot).
wait -n "${pids[@]}" || true
stop
