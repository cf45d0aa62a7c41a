# Medians of every metric per benchmark of `go test -bench -count n`
# output (value/unit pairs after the iteration count), one line per
# benchmark and metric. Used by `make bench-fanout`.
#
#   awk -f scripts/metric-medians.awk bench-results/fanout.txt
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	if (!(name in runs)) order[++k] = name
	runs[name]++
	for (f = 3; f < NF; f += 2) {
		u = $(f+1)
		if (!((name, u) in n)) units[name, ++nu[name]] = u
		v[name, u, ++n[name, u]] = $f
	}
}
function median(b, u,   m, i, j, t, a) {
	m = n[b, u]
	for (i = 1; i <= m; i++) a[i] = v[b, u, i] + 0
	for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return m % 2 ? a[(m+1)/2] : (a[m/2] + a[m/2+1]) / 2
}
END {
	for (i = 1; i <= k; i++) {
		b = order[i]
		printf "%s (%d runs)\n", b, runs[b]
		for (j = 1; j <= nu[b]; j++) printf "  %-28s %14.4g\n", units[b, j], median(b, units[b, j])
	}
}
