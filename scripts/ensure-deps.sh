#!/usr/bin/env bash
# Makes sure the programs the tests and the demo need are installed: redis-server (and
# redis-cli); Chromium for the dashboard's browser test; for the security and deployment
# tests openssl, systemd-analyze and a Python venv with the manifest validators
# (scripts/ensure-deploy-venv.sh); promtool, from Debian's `prometheus` package, for the
# alert rules and dashboard tests (tests/alerts.rs) and `promtool check metrics`. The package
# also ships the Prometheus server and its unit; installing it does not need the server to run
# (containers refuse service starts), and 19 MB is small beside Chromium. Installs them from the system package manager when it can;
# otherwise says exactly what to install and fails.
set -euo pipefail

"$(dirname "$0")/ensure-deploy-venv.sh"

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v promtool >/dev/null 2>&1 || [ -n "${PROMTOOL:-}" ] || need+=(prometheus)
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
  && [ -z "${CHROMIUM:-}" ]; then
  need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0

echo "ensure-deps: missing: ${need[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
fi
if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
  echo "ensure-deps: installing ${need[*]} with apt-get" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2
  exit 0
fi
if command -v dnf >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
  $sudo dnf install -y redis chromium openssl systemd >&2
  exit 0
fi
cat >&2 <<MSG
ensure-deps: cannot install ${need[*]} automatically here.
Install Redis 7.0 or newer so that 'redis-server' and 'redis-cli' are on PATH, Chromium
(for the dashboard test; or point CHROMIUM at a Chromium binary), openssl and systemd's
systemd-analyze (for the security and unit-file tests), and Prometheus' promtool (for the alert
rules and dashboard tests):
  Debian/Ubuntu:  sudo apt-get install ${need[*]}
  Fedora/RHEL:    sudo dnf install redis chromium openssl systemd, and promtool from a
                  Prometheus release (or set PROMTOOL to its path)
  macOS:          brew install redis prometheus; brew install --cask chromium
MSG
exit 1
