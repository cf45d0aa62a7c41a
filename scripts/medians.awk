# Medians of ns/op per benchmark of `go test -bench -count n` output, and
# each one's ratio to the baseline of its group: the sub-benchmark named
# raw-* with the same parent and size (Group/raw-map/100000 for
# Group/indexed/100000). Used by `make bench-registry`.
#
#   awk -f scripts/medians.awk bench-results/registry.txt
/^Benchmark/ && $4 == "ns/op" {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	if (!(name in n)) order[++k] = name
	v[name, ++n[name]] = $3
}
function median(b,   m, i, j, t, a) {
	m = n[b]
	for (i = 1; i <= m; i++) a[i] = v[b, i] + 0
	for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return m % 2 ? a[(m+1)/2] : (a[m/2] + a[m/2+1]) / 2
}
END {
	for (i = 1; i <= k; i++) {
		b = order[i]; split(b, p, "/")
		if (p[2] ~ /^raw/) base[p[1] "/" p[3]] = median(b)
	}
	printf "%-36s %16s %6s %12s\n", "benchmark", "median ns/op", "runs", "/ raw"
	for (i = 1; i <= k; i++) {
		b = order[i]; split(b, p, "/"); r = base[p[1] "/" p[3]]
		printf "%-36s %16.1f %6d %12s\n", b, median(b), n[b], r ? sprintf("%.1f", median(b) / r) : "-"
	}
}
