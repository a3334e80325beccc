#!/bin/sh
# Rebuild the bundled demo dump: pmdb/demo/pmdb-demo and pmdb/demo/pmdb-demo.core.
# The core is written by gdb's generate-core-file at the SIGSEGV, so it holds the
# executable's text. Usage: make-demo.sh [OUTDIR]   (default: pmdb/demo of this tree)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../../pmdb/demo}
# a fixed directory, so the path recorded in the core is the same on every rebuild
work=/tmp/pmdb-demo
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
cp "$here/demo.c" "$work/"
(cd "$work" && gcc -g -O1 -no-pie -fno-pie -pthread -o pmdb-demo demo.c)
(cd "$work" && gdb -nx -batch -iex 'set debuginfod enabled off' -ex 'run' -ex 'generate-core-file pmdb-demo.core' -ex 'kill' \
	--args ./pmdb-demo 9 >/dev/null)
cp "$work/pmdb-demo" "$work/pmdb-demo.core" "$out/"
ls -l "$out/pmdb-demo" "$out/pmdb-demo.core"
