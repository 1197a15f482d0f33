#!/bin/sh
# Debian packages the tests and benchmarks use: chromium (browser test), ncbi-blast+ and vsearch
# (DNA baselines in bench/), postgresql (the project database tests start a server of their own). Installed when missing and this user may run apt-get; otherwise the
# tests that need them skip with the reason.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v blastn >/dev/null 2>&1 || missing="$missing ncbi-blast+"
command -v vsearch >/dev/null 2>&1 || missing="$missing vsearch"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages:$missing"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null \
        || echo "could not install$missing: the tests that need them will skip"
else
    echo "not installing$missing (needs root and apt-get): the tests that need them will skip"
fi
