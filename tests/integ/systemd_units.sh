#!/bin/sh
# SPDX-License-Identifier: MIT
# The installed units pass systemd-analyze verify, with their commands pointed at the
# binaries of this build (the test does not install anything).
set -eu
unitdir=$1 condafs=$2 condafsd=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for u in condafsd.service condafs-gc.service condafs-gc.timer; do
	sed -e "s|^ExecStart=[^ ]*/condafsd|ExecStart=$condafsd|" \
	    -e "s|^ExecStart=[^ ]*/condafs |ExecStart=$condafs |" "$unitdir/$u" > "$tmp/$u"
done
ok=0 failed=0
for u in condafsd.service condafs-gc.service condafs-gc.timer; do
	if out=$(systemd-analyze verify "$tmp/$u" 2>&1) && [ -z "$out" ]; then
		echo "ok: $u"
		ok=$((ok + 1))
	else
		echo "FAIL: $u: $out"
		failed=$((failed + 1))
	fi
done
echo "$ok passed, $failed failed"
[ "$failed" = 0 ]
