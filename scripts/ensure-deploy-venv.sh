#!/usr/bin/env bash
# A Python virtual environment under target/ with the validators the deployment tests use
# (Kubernetes OpenAPI schemas, Prometheus Operator models, JSON Schema, YAML), and the OpenAPI
# 3.1 validator tests/openapi.rs runs on the API's own document, and redis-py, the client
# tests/resp_clients.rs runs unchanged against the Redis-protocol port. Idempotent:
# does nothing when the pinned set is already installed.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${QUORUMD_DEPLOY_VENV:-$root/target/deploy-venv}"
requirements=(
  "kubernetes-validate==1.37.0"
  "cloudcoil.models.prometheus_operator==0.80.1.0"
  "jsonschema==4.26.0"
  "PyYAML==6.0.3"
  "openapi-spec-validator==0.9.0"
  "redis==8.1.0"
)
stamp="$venv/.quorumd-requirements"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${requirements[*]}" ]; then
  exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >&2
  else
    echo "ensure-deploy-venv: python3 with the venv module is needed (apt-get install python3-venv)" >&2
    exit 1
  fi
fi
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "${requirements[@]}" >&2
echo "${requirements[*]}" > "$stamp"
