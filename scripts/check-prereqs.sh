#!/usr/bin/env bash
# The servers the tests run for real come from Debian packages, not from pip. Check them
# before pytest starts, so a machine without them learns it in a second, not after ten minutes
# of failing fixtures. As root with apt-get (CI), install what is missing; otherwise print
# the one command that does and fail.
#
#   scripts/check-prereqs.sh          what `make test` needs (every server)
#   scripts/check-prereqs.sh unit     what `make test-unit` needs (PostgreSQL: tests/storage)
set -euo pipefail

scope=${1:-all}
case "$scope" in
    all | unit) ;;
    *) echo "usage: $0 [all|unit]" >&2; exit 2 ;;
esac

has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
# tests/conftest.py: a throwaway cluster from initdb + postgres (tests/storage, tests/api).
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
if [ "$scope" = all ]; then
    # tests/conftest.py and tests/deploy: Mosquitto 3.1.1 and 5, its password tool, TLS certs.
    { has mosquitto && has mosquitto_passwd; } || missing+=(mosquitto)
    has openssl || missing+=(openssl)
    # tests/ingest/test_archive.py: speaks the InfluxDB v2 write API (Debian has no InfluxDB).
    has victoria-metrics || missing+=(victoria-metrics)
    # tests/api/console: the web console in a real browser (Playwright drives this one).
    [ -x /usr/bin/chromium ] || missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "check-prereqs: installing ${missing[*]} (the tests run them as real servers)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    exit 0
fi
target=$([ "$scope" = unit ] && echo "make test-unit" || echo "make test")
echo "$target runs real servers and tools from Debian packages; missing here: ${missing[*]}." >&2
echo "Install them (Debian/Ubuntu) with:" >&2
echo "    sudo apt-get install -y ${missing[*]}" >&2
exit 1
