package webhooker

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/proccpu"
)

// cpuMeter measures the CPU time a phase of a benchmark costs the whole
// pipeline: this process (webhooker, receiver and publisher, or the raw
// client and receiver), the nats-server process and the Postgres backends
// serving the benchmark's database. On a shared machine throughput moves
// with the neighbours' load; CPU per delivery moves much less.
type cpuMeter struct {
	pool    *pgxpool.Pool
	natsPID int
}

type cpuSample struct {
	self time.Duration
	nats time.Duration
	pg   map[int]time.Duration // backend pid -> CPU
}

// cpuUse is the CPU a phase cost, by process.
type cpuUse struct{ self, nats, pg time.Duration }

func (u cpuUse) total() time.Duration { return u.self + u.nats + u.pg }

// procCPU is the CPU time a process has used; 0 when it is gone.
func procCPU(pid int) time.Duration {
	t, _ := proccpu.Of(pid)
	return t
}

func (m *cpuMeter) sample(b *testing.B) cpuSample {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	s := cpuSample{self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), pg: map[int]time.Duration{}}
	if m.natsPID > 0 {
		s.nats = procCPU(m.natsPID)
	}
	if m.pool != nil {
		rows, err := m.pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
			var pid int
			if err := rows.Scan(&pid); err != nil {
				b.Fatal(err)
			}
			s.pg[pid] = procCPU(pid)
		}
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// since is the CPU spent between start and now; a process that appeared
// meanwhile (a new pool connection) counts from zero.
func (m *cpuMeter) since(b *testing.B, start cpuSample) cpuUse {
	b.Helper()
	end := m.sample(b)
	u := cpuUse{self: end.self - start.self, nats: end.nats - start.nats}
	for pid, cpu := range end.pg {
		u.pg += cpu - start.pg[pid]
	}
	return u
}
