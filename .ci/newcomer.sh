#!/usr/bin/env bash
# The newcomer path, from this clean clone: the README's run command (`cargo run --release`) starts the
# demo; the dashboard must answer with live data within two minutes; Ctrl-C must stop it cleanly (exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p citybrain
log=$(mktemp -d)
cargo run --release >"$log/out.txt" 2>"$log/err.txt" &
pid=$!
ok=""
for _ in $(seq 1 120); do
  sleep 1
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  body=$(curl -fsS http://127.0.0.1:8080/api/v1/open/parking 2>/dev/null || true)
  if [[ "$body" == *OffStreetParking* ]]; then ok=1; break; fi
done
# `cargo run` forwards SIGINT to the demo through the terminal; here, signal the demo process itself.
demo=$(pgrep -f 'target/release/citybrain$' || true)
kill -INT ${demo:-$pid} 2>/dev/null || true
code=0
wait "$pid" || code=$?
cat "$log/out.txt"
if [[ -z "$ok" ]]; then
  echo "newcomer: FAILED: no live open-data answer from http://127.0.0.1:8080 within 120 s"; tail -50 "$log/err.txt"; exit 1
fi
grep -q "http://127.0.0.1:8080/" "$log/out.txt" || { echo "newcomer: FAILED: the dashboard URL was not printed"; exit 1; }
if [[ $code -ne 0 ]]; then
  echo "newcomer: FAILED: the demo exited with $code after Ctrl-C"; tail -50 "$log/err.txt"; exit 1
fi
echo "newcomer: OK (demo served live data and stopped cleanly)"
