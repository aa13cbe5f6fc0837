#!/usr/bin/env bash
# Debian packages the tests and demo need. Idempotent: installs only what is missing.
set -euo pipefail
# Packages tests need; extra names may be passed as arguments.
PACKAGES=(
  prometheus-node-exporter # tests/test_ingest_prometheus.py (+ prometheus): real scrape target
  prometheus-alertmanager  # tests/test_alerting.py: real Alertmanager v2 API
  prometheus               # tests/test_api_prometheus.py: scrapes the API, PromQL query
  wrk                      # scaleahead bench api: HTTP load generator
  chromium                 # tests/test_twin.py: renders the capacity twin HTML report
)
needed=()
for pkg in "${PACKAGES[@]}" "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || needed+=("$pkg")
done
if [ ${#needed[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "need root to install: ${needed[*]}" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}"
fi
