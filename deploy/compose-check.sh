#!/usr/bin/env bash
# Validates docker-compose.yml with a compose tool's `config` command (no Docker engine needed):
# Debian's docker-compose package, installed when missing.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! command -v docker-compose >/dev/null; then
  sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  echo "compose-check: installing Debian's docker-compose (for \`config\` only)" >&2
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-compose >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-compose >/dev/null
  fi
fi
docker-compose -f "$repo/docker-compose.yml" config -q
echo "compose-check: docker-compose.yml is valid"
