#!/usr/bin/env bash
# Installs the Docker Compose v2 CLI plugin, which `tests/test_compose.py` uses to
# validate docker-compose.yml with `docker compose config` (no Docker engine needed).
# Debian ships only the docker client here, so the plugin is built from source
# fetched through the Go module proxy. Does nothing when `docker compose` already works.
set -euo pipefail
version="${1:-v2.40.3}"

if ! command -v docker >/dev/null; then
  echo "install-compose-plugin: the docker CLI is not installed (apt-get install docker.io, or docker-ce-cli)" >&2
  exit 1
fi
if docker compose version >/dev/null 2>&1; then
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "install-compose-plugin: 'docker compose' is missing and Go is not installed to build it (apt-get install golang)" >&2
  exit 1
fi

if [ -w /usr/local/lib ]; then dest=/usr/local/lib/docker/cli-plugins; else dest="$HOME/.docker/cli-plugins"; fi
echo "building docker compose $version into $dest (once; takes a few minutes) ..."
src_dir=$(go mod download -json "github.com/docker/compose/v2@$version" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src_dir/." "$work/"
chmod -R u+w "$work"
mkdir -p "$dest"
# `go install pkg@version` refuses modules whose go.mod has exclude directives, so build in a copy.
(cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$version" -o "$dest/docker-compose" ./cmd)
docker compose version
