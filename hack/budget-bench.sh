#!/bin/bash
# Measures one real-world case under a memory budget (BENCHMARKS.md, "Builds inside a memory
# budget"). As root, with kiln's embedded store in ROOT, where debian:bookworm must be built
# first (integration/realworld_harness_test.go's debianDockerfile over the Debian fixtures).
# Usage: hack/budget-bench.sh CASE MEMORY [KILN] [ROOT]
# Prints: CASE MEMORY RESULT kilnRSS=MB stepsPeak=MiB SECONDS. cgroup v1 (the peak is read from
# the build cgroup's memory.max_usage_in_bytes, polled every 0.1 s).
set -u
c=$1 m=$2
repo="$(cd "$(dirname "$0")/.." && pwd)"
kiln=${3:-$repo/bin/kiln} root=${4:-/tmp/kiln-budget-bench}
h=$(echo -n "$root" | sha256sum | cut -c1-12)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo 0 >"$tmp/peak"
(
	while :; do
		for f in /sys/fs/cgroup/memory/kiln/"$h"/build-*/memory.max_usage_in_bytes; do
			v=$(cat "$f" 2>/dev/null) || continue
			[ -n "$v" ] && [ "$v" -gt "$(cat "$tmp/peak")" ] && echo "$v" >"$tmp/peak"
		done
		sleep 0.1
	done
) &
poll=$!
start=$(date +%s.%N)
/usr/bin/time -f %M -o "$tmp/rss" "$kiln" --store embedded --root "$root" build --memory "$m" \
	--no-cache --max-parallelism 1 --progress plain -t "$c" "$repo/integration/testdata/realworld/$c" >"$tmp/log" 2>&1
rc=$?
end=$(date +%s.%N)
kill $poll
wait $poll 2>/dev/null
res=ok
if [ $rc -ne 0 ]; then
	res=failed
	grep -q 'ran out of memory' "$tmp/log" && res="out-of-memory"
fi
echo "$c $m $res kilnRSS=$(($(tail -1 "$tmp/rss") / 1024))MB stepsPeak=$(($(cat "$tmp/peak") / 1048576))MiB $(echo "$end - $start" | bc)s"
