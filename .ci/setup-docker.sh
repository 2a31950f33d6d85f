#!/usr/bin/env bash
# Prepare a Docker daemon, a local registry and local base images for the image/docker tests.
#
# Idempotent: every step checks first and does nothing when already done, so a second run takes
# seconds.  Docker Hub is not reachable here, so the base images are built from Debian packages
# (debootstrap + docker import) and pushes go to a registry on 127.0.0.1:5000 whose htpasswd
# credentials are the ones in the ECR authorization token that moto hands out (user "AWS",
# password "<account id>-auth-token").
#
# Produces:
#   dockerd on unix:///var/run/docker.sock      (--iptables=false --bridge=none)
#   a registry on 127.0.0.1:5000                 (htpasswd user AWS)
#   starburst-ci/python:3.11                     Debian bookworm minbase + python3 (3.11)
#   starburst-ci/python:3.13                     Debian trixie minbase + python3 (3.13)
set -euo pipefail

STATE=${STARBURST_CI_STATE:-/var/lib/starburst-ci}
LOGS=${STARBURST_CI_LOGS:-/var/log/starburst-ci}
MIRROR=${STARBURST_CI_MIRROR:-http://deb.debian.org/debian}
ACCOUNT=${MOTO_ACCOUNT_ID:-123456789012}
REGISTRY_ADDR=127.0.0.1:5000
# name:debian suite, one base image per Python minor the tests need.
BASES=("3.11:bookworm" "3.13:trixie")

say() { echo "[setup-docker] $*"; }
die() { echo "[setup-docker] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (installs packages and starts dockerd)"
mkdir -p "$STATE" "$LOGS"

# --- packages ---------------------------------------------------------------------------------
missing=()
for pkg in docker.io docker-registry apache2-utils debootstrap curl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    # No init system here: keep the packages' maintainer scripts from starting services.
    policy_created=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        policy_created=1
    fi
    apt-get update -q >"$LOGS/apt-update.log" 2>&1 || say "apt-get update reported errors (see $LOGS/apt-update.log); trying the install anyway"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >"$LOGS/apt-install.log" 2>&1; then
        [ $policy_created = 1 ] && rm -f /usr/sbin/policy-rc.d
        tail -20 "$LOGS/apt-install.log" >&2
        die "apt-get install ${missing[*]} failed (full log: $LOGS/apt-install.log)"
    fi
    [ $policy_created = 1 ] && rm -f /usr/sbin/policy-rc.d
else
    say "packages present: docker.io docker-registry apache2-utils debootstrap curl"
fi

# Debian's client is /usr/bin/docker; a newer one earlier on PATH works as well.
DOCKER=$(command -v docker || echo /usr/bin/docker)

# --- dockerd ----------------------------------------------------------------------------------
if "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    say "dockerd already running ($("$DOCKER" version --format '{{.Server.Version}}'))"
else
    say "starting dockerd (log: $LOGS/dockerd.log)"
    DOCKERD=$(PATH="$PATH:/usr/sbin:/sbin" command -v dockerd) || die "no dockerd binary (package docker.io)"
    # A daemon killed with its session leaves pid files behind, and dockerd refuses to start
    # over them; remove them unless their process still runs.
    for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
        if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
            say "removing stale $pidfile"
            rm -f "$pidfile"
        fi
    done
    setsid nohup "$DOCKERD" --iptables=false --bridge=none \
        >"$LOGS/dockerd.log" 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 1 60); do
        "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
        tail -20 "$LOGS/dockerd.log" >&2
        die "dockerd did not come up (exited, or no answer within 60 s; full log: $LOGS/dockerd.log)"
    }
    say "dockerd is up ($("$DOCKER" version --format '{{.Server.Version}}'))"
fi

# --- registry ---------------------------------------------------------------------------------
REGISTRY_BIN=$(command -v docker-registry || echo /usr/bin/docker-registry)
mkdir -p "$STATE/registry/data"
htpasswd -Bbn AWS "$ACCOUNT-auth-token" >"$STATE/registry/htpasswd"
cat >"$STATE/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
auth:
  htpasswd:
    realm: starburst-ci
    path: $STATE/registry/htpasswd
EOF
registry_up() {
    # 401 means up and asking for the credentials.
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY_ADDR/v2/" 2>/dev/null)" = 401 ]
}
if registry_up; then
    say "registry already running on $REGISTRY_ADDR"
else
    say "starting registry on $REGISTRY_ADDR (log: $LOGS/registry.log)"
    setsid nohup "$REGISTRY_BIN" serve "$STATE/registry/config.yml" \
        >"$LOGS/registry.log" 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 1 30); do
        registry_up && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    registry_up || { tail -20 "$LOGS/registry.log" >&2; die "registry did not answer on $REGISTRY_ADDR within 15 s"; }
fi
code=$(curl -s -o /dev/null -w '%{http_code}' -u "AWS:$ACCOUNT-auth-token" "http://$REGISTRY_ADDR/v2/")
[ "$code" = 200 ] || die "registry refused the moto ECR credentials (HTTP $code)"
say "registry accepts user AWS with the moto ECR token of account $ACCOUNT"

# --- base images ------------------------------------------------------------------------------
for entry in "${BASES[@]}"; do
    minor=${entry%%:*}
    suite=${entry#*:}
    tag="starburst-ci/python:$minor"
    if "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
        say "base image $tag present"
        continue
    fi
    tarball="$STATE/rootfs-$suite.tar"
    if [ ! -s "$tarball" ]; then
        root="$STATE/rootfs-$suite"
        rm -rf "$root"
        say "debootstrap $suite with python3 into $root (log: $LOGS/debootstrap-$suite.log)"
        if ! debootstrap --variant=minbase --include=python3 "$suite" "$root" "$MIRROR" \
                >"$LOGS/debootstrap-$suite.log" 2>&1; then
            tail -20 "$LOGS/debootstrap-$suite.log" >&2
            die "debootstrap $suite failed (full log: $LOGS/debootstrap-$suite.log)"
        fi
        # Slim it like the official -slim images: no docs, no apt lists, no caches.
        rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
            "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
        ln -sf python3 "$root/usr/bin/python"
        tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
    fi
    say "importing $tarball as $tag"
    "$DOCKER" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$tarball" "$tag" >/dev/null
    got=$("$DOCKER" run --rm --network none "$tag" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [ "$got" = "$minor" ] || die "$tag runs Python $got, expected $minor"
done
say "base images: $("$DOCKER" image ls starburst-ci/python --format '{{.Repository}}:{{.Tag}} ({{.Size}})' | tr '\n' ' ')"
say "ready: DOCKER_HOST=unix:///var/run/docker.sock, registry $REGISTRY_ADDR"
