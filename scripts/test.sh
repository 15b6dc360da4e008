#!/usr/bin/env bash
# Runs the whole test suite (unit, property, integration with a real ZooKeeper and real broker
# processes, fault tests, and each micro-benchmark once with timing off). Installs what is
# missing first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider --benchmark-disable "$@"
