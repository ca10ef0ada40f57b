#!/usr/bin/env bash
# CityBrain benchmark: builds in release, creates the Bytewax virtualenv (bench/.venv) if missing and runs
# the benchmark, which prints a table and writes bench/RESULTS.md. Extra arguments go to the benchmark
# (e.g. `bench/run.sh --quick`, `bench/run.sh --rates 5000,20000 --duration-s 5`, `--help`).
# Needs: cargo, mosquitto (/usr/sbin/mosquitto), python3 with venv; network access to PyPI on first run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p citybrain-bench
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c 'import bytewax, paho.mqtt' 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet 'bytewax==0.21.1' 'paho-mqtt>=2,<3'
fi
exec target/release/citybrain-bench "$@"
