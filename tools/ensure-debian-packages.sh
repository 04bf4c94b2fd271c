#!/usr/bin/env bash
# Make sure the commands the live-server tests need are installed (Debian/Ubuntu).
#
#   tools/ensure-debian-packages.sh nginx [wrk] [chromium] [dot] [redis-server]
#
# For each COMMAND that is not found (on PATH or in /usr/sbin, /sbin, /usr/local/sbin), install its
# Debian package with `apt-get install -y --no-install-recommends` when running as root or with
# passwordless sudo; `apt-get update` runs first only if apt knows no candidate for the package.
# Otherwise print the exact command to run and exit 1. Quiet and idempotent when all are present.
# Exit codes: 0 all present, 1 something missing and not installable here, 2 usage.
set -euo pipefail

usage() {
    echo "usage: $0 COMMAND... (known: nginx wrk chromium dot redis-server)" >&2
    exit 2
}

# command -> Debian packages to try, first one with an install candidate wins.
# nginx-light (bookworm and older) has the upstream/proxy/map modules the template uses; later
# releases dropped the flavours and ship `nginx` itself.
packages_for() {
    case "$1" in
        nginx) echo "nginx-light nginx" ;;
        wrk) echo "wrk" ;;
        chromium) echo "chromium" ;;
        dot) echo "graphviz" ;;
        redis-server) echo "redis-server" ;;
        *) return 1 ;;
    esac
}

have() {
    command -v "$1" >/dev/null 2>&1 && return 0
    local dir
    for dir in /usr/sbin /sbin /usr/local/sbin; do  # nginx lives in /usr/sbin, often not on a user's PATH
        [ -x "$dir/$1" ] && return 0
    done
    return 1
}

has_candidate() {
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
    [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}

pick_package() {  # first package with a candidate, or empty
    local pkg
    for pkg in $1; do
        if has_candidate "$pkg"; then
            echo "$pkg"
            return 0
        fi
    done
    return 0
}

[ $# -ge 1 ] || usage

missing_cmds=()
for cmd in "$@"; do
    packages_for "$cmd" >/dev/null || { echo "$0: don't know which package provides '$cmd'" >&2; usage; }
    have "$cmd" || missing_cmds+=("$cmd")
done
[ ${#missing_cmds[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$0: missing ${missing_cmds[*]} and this is not a Debian-like system (no apt-get); install them yourself" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        sudo=(sudo -n)
    else
        first=()
        for cmd in "${missing_cmds[@]}"; do
            list=$(packages_for "$cmd")
            first+=("${list%% *}")
        done
        echo "missing: ${missing_cmds[*]}. Install with:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${first[*]}" >&2
        exit 1
    fi
fi

resolve() {  # sets $to_install; returns 1 if some command has no package with a candidate
    to_install=()
    local cmd pkg ok=0
    for cmd in "${missing_cmds[@]}"; do
        pkg=$(pick_package "$(packages_for "$cmd")")
        if [ -z "$pkg" ]; then
            ok=1
        else
            to_install+=("$pkg")
        fi
    done
    return $ok
}

if ! resolve; then
    echo "$0: refreshing package lists (apt-get update)" >&2
    "${sudo[@]}" apt-get update -qq >/dev/null
    if ! resolve; then
        echo "$0: no Debian package found for some of: ${missing_cmds[*]}" >&2
        exit 1
    fi
fi

echo "$0: installing ${to_install[*]}" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${to_install[@]}" >/dev/null

for cmd in "${missing_cmds[@]}"; do
    if ! have "$cmd"; then
        echo "$0: installed ${to_install[*]} but '$cmd' is still not found" >&2
        exit 1
    fi
done
