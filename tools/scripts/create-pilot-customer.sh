#!/usr/bin/env bash
# Onboard a pilot customer through the Customer Success Tracker (docs/tracker.md).
#
#   UNMO_ADMIN_TOKEN=... tools/scripts/create-pilot-customer.sh \
#       --company "TechStart Mobile" --vertical gaming --provider appsflyer \
#       --events-per-day 50000 --integration sdk --platforms ios,android [--send-test-event]
#
# Creates the customer, its apps (one per platform) and their keys, prints the onboarding kit
# (keys, ingest URL, integration snippets, a ready curl for a test event, app settings) and, with
# --send-test-event, sends one event with the new sdk key and prints the measured onboarding time.
# Finds the tracker through UNMO_TRACKER_URL (default http://127.0.0.1:8084).
# Other flags: --plan-price USD, --contact-email, --wait SECONDS, --json.  Bad flags: one line, exit 2.
#
# A thin wrapper over `unmo tracker onboard`, so that the flags are checked in one place.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ -n "${UNMO_BIN:-}" ]; then
    exec "$UNMO_BIN" tracker onboard "$@"
elif [ -x "$root/.venv/bin/unmo" ]; then
    exec "$root/.venv/bin/unmo" tracker onboard "$@"
elif command -v unmo >/dev/null 2>&1; then
    exec unmo tracker onboard "$@"
elif python3 -c 'import unmo' >/dev/null 2>&1; then
    exec python3 -m unmo tracker onboard "$@"
fi
echo "create-pilot-customer.sh: cannot find unmo (run ./run once, put unmo on PATH, or set UNMO_BIN)" >&2
exit 2
