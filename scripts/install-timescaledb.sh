#!/usr/bin/env bash
# Makes sure TimescaleDB is installed into the PostgreSQL the tests run, so that the
# event store's TimescaleDB schema is tested for real (tests/integration/test_timescaledb.py
# and every test that takes `store_url`). Idempotent: does nothing when this version
# is installed already.
#
# What it installs: the Apache-2 edition of TimescaleDB, built from Debian's source
# tarball (the Debian package's, fetched from deb.debian.org and checked against its
# SHA-256) with cmake against that PostgreSQL's server headers; about 30 s of build on
# 2 cores. Debian's tarball leaves out the Timescale-License code (compression,
# continuous aggregates), which TimescaleDB's own Docker images have: the migrations
# use those only under that license.
#
# PostgreSQL is found as vigil.services.postgres finds it: $VIGIL_PG_BIN, else the
# newest /usr/lib/postgresql/<major>/bin. With neither, Debian's postgresql is
# installed (as the tests then prefer it to the pgserver wheel's).
#
#   ./scripts/install-timescaledb.sh
set -euo pipefail

VERSION=2.19.3  # supports PostgreSQL 14-17
TARBALL="timescaledb_${VERSION}+dfsg.orig.tar.xz"
SHA256=09fd11191768c220b071f61a108df9bd1df5522fbe4e7c2229f30f69b195454a
URL="http://deb.debian.org/debian/pool/main/t/timescaledb/${TARBALL}"
CACHE="${VIGIL_CACHE_DIR:-$HOME/.cache/vigil}"

say() { echo "install-timescaledb: $*" >&2; }
as_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
apt_install() {
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

find_bindir() {
  if [ -n "${VIGIL_PG_BIN:-}" ]; then
    echo "$VIGIL_PG_BIN"
    return 0
  fi
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n); do
    [ -x "$dir/postgres" ] && echo "$dir"
  done | tail -n 1
}

bindir=$(find_bindir)
if [ -z "$bindir" ]; then
  if ! as_root_with_apt; then
    say "no PostgreSQL server packages found; as root: apt-get install postgresql postgresql-server-dev-all"
    exit 1
  fi
  apt-get update -qq
  apt_install postgresql
  bindir=$(find_bindir)
fi
major=$(basename "$(dirname "$bindir")")
case "$major" in
  14|15|16|17) ;;
  *) say "TimescaleDB $VERSION supports PostgreSQL 14-17, not $major ($bindir)"; exit 1 ;;
esac

pg_config="$bindir/pg_config"  # Debian's postgresql-client-<major>, which the server needs
[ -x "$pg_config" ] || { say "no pg_config in $bindir"; exit 1; }
if [ -f "$("$pg_config" --sharedir)/extension/timescaledb--${VERSION}.sql" ] \
   && [ -f "$("$pg_config" --pkglibdir)/timescaledb-${VERSION}.so" ]; then
  exit 0
fi

if [ ! -f "/usr/include/postgresql/$major/server/postgres.h" ] || ! command -v cmake >/dev/null \
   || ! command -v cc >/dev/null || ! command -v make >/dev/null || ! command -v curl >/dev/null; then
  if ! as_root_with_apt; then
    say "building TimescaleDB needs, as root: apt-get install postgresql-server-dev-$major cmake gcc make curl xz-utils"
    exit 1
  fi
  apt-get update -qq
  apt_install "postgresql-server-dev-$major" cmake gcc libc6-dev make curl xz-utils
fi

mkdir -p "$CACHE"
work="$CACHE/timescaledb-$VERSION-pg$major"
if [ ! -f "$CACHE/$TARBALL" ] || ! echo "$SHA256  $CACHE/$TARBALL" | sha256sum -c --quiet - 2>/dev/null; then
  say "downloading $URL"
  curl -sSf -o "$CACHE/$TARBALL.part" "$URL"
  if ! echo "$SHA256  $CACHE/$TARBALL.part" | sha256sum -c --quiet -; then
    say "checksum mismatch for $TARBALL (expected $SHA256)"
    exit 1
  fi
  mv "$CACHE/$TARBALL.part" "$CACHE/$TARBALL"
fi
rm -rf "$work"
mkdir -p "$work"
tar -xJf "$CACHE/$TARBALL" -C "$work" --strip-components=1

say "building TimescaleDB $VERSION (Apache-2 edition) for PostgreSQL $major ..."
(
  cd "$work"
  ./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
    -DSEND_TELEMETRY_DEFAULT=OFF -DCMAKE_BUILD_TYPE=Release -DPG_CONFIG="$pg_config" >"$work/configure.log" 2>&1 \
    || { tail -n 30 "$work/configure.log" >&2; exit 1; }
  make -C build -j"$(nproc)" >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; exit 1; }
  if [ -w "$("$pg_config" --sharedir)/extension" ] && [ -w "$("$pg_config" --pkglibdir)" ]; then
    make -C build install >"$work/install.log" 2>&1 || { tail -n 30 "$work/install.log" >&2; exit 1; }
  else
    say "cannot write into $("$pg_config" --sharedir)/extension: run as root, or: make -C $work/build install"
    exit 1
  fi
)
say "installed into $("$pg_config" --pkglibdir)"
