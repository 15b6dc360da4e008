#!/usr/bin/env bash
# Brings up a local broker in the foreground: installs what is missing, then starts
# metaq-server with conf/server.ini in local mode (it starts and stops its own ZooKeeper).
# Ctrl-C stops both. Extra arguments go to metaq-server: --brokers 3 runs a 3-broker cluster
# with the same ZooKeeper (README, "A local cluster").
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/metaq-server -f conf/server.ini --local "$@"
