// Package proccpu reads the CPU time a process has used from
// /proc/<pid>/stat (proc(5)): what the benchmarks measure other
// processes by (nats-server, Postgres backends, the services).
package proccpu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ClockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// which is 100 on every Linux architecture Go supports (getconf CLK_TCK).
const ClockTick = 10 * time.Millisecond

// parseStat returns utime+stime of a /proc/<pid>/stat line (proc(5)),
// which covers every thread of the process. The second field, comm, is in
// parentheses and may itself contain spaces and parentheses, so the fields
// are counted from the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, errors.New("no ')' after comm")
	}
	// After ") ": state(3) ppid(4) ... utime(14) stime(15).
	fields := bytes.Fields(b[end+1:])
	const utimeAt = 14 - 3
	if len(fields) <= utimeAt+1 {
		return 0, fmt.Errorf("%d fields after comm, want > %d", len(fields), utimeAt+1)
	}
	var ticks uint64
	for _, f := range fields[utimeAt : utimeAt+2] {
		n, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("utime/stime %q: %w", f, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * ClockTick, nil
}

// Of is the CPU time (user+system, all threads) pid has used.
func Of(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStat(b)
}
