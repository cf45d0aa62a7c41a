package testenv

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildMu  sync.Mutex
	builtDir string
	built    = map[string]string{}
)

// BuildBinary builds the main package at pkg (e.g. "./cmd/ingest", relative
// to the module root) once per test process and returns the binary's path.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if builtDir == "" {
		dir, err := os.MkdirTemp("", "eventline-bin-")
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		builtDir = dir
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	out := filepath.Join(builtDir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: go build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// Service is an eventline binary running as a child process with its own
// HTTP_ADDR and ADMIN_ADDR.
type Service struct {
	URL      string // http://HTTP_ADDR
	AdminURL string // http://ADMIN_ADDR
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error // set before exited is closed
	output   *syncBuffer
}

// StartService runs bin with the environment plus env ("KEY=value") and
// free HTTP_ADDR/ADMIN_ADDR, waits until /livez answers, and stops it with
// SIGTERM when the test ends. EVENTLINE_SECRET_KEY (which the webhooker
// requires) is a fresh random key unless env sets it.
//
// The ports are free when picked but only bound by the child a moment
// later, and another process (an outgoing connection's ephemeral port, say)
// can take one in between: a child that exits during start-up because an
// address is in use is started again on fresh ports, up to three times.
func StartService(t testing.TB, bin string, env ...string) *Service {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s, err := startService(t, bin, env)
		if err == nil {
			return s
		}
		if attempt < 3 && strings.Contains(s.output.String(), "address already in use") {
			continue
		}
		t.Fatalf("testenv: %s %v\n%s", bin, err, s.output.String())
	}
}

func startService(t testing.TB, bin string, env []string) (*Service, error) {
	t.Helper()
	httpAddr, adminAddr := FreeAddr(t), FreeAddr(t)
	s := &Service{URL: "http://" + httpAddr, AdminURL: "http://" + adminAddr, exited: make(chan struct{}), output: &syncBuffer{}}
	s.cmd = exec.Command(bin)
	s.cmd.Env = append(append(os.Environ(), "EVENTLINE_SECRET_KEY="+base64.StdEncoding.EncodeToString(randomBytes(32))), env...)
	s.cmd.Env = append(s.cmd.Env, "HTTP_ADDR="+httpAddr, "ADMIN_ADDR="+adminAddr)
	s.cmd.Stdout, s.cmd.Stderr = s.output, s.output
	if err := s.cmd.Start(); err != nil {
		return s, fmt.Errorf("start: %w", err)
	}
	go func() { s.waitErr = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() { s.Stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.AdminURL + "/livez")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			return s, errors.New("not live after 30s")
		}
		select {
		case <-s.exited:
			return s, errors.New("exited during start-up")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PID is the process id.
func (s *Service) PID() int { return s.cmd.Process.Pid }

// Output is what the process has written so far.
func (s *Service) Output() string { return s.output.String() }

// Stop sends SIGTERM and waits for the process, killing it after 30s.
func (s *Service) Stop(t testing.TB) {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("testenv: process did not exit within 30s of SIGTERM; killed\n%s", s.output.String())
	}
}

// Terminate sends SIGTERM and returns how the process exited (nil for
// status 0), failing the test if it has not exited within 30s.
func (s *Service) Terminate(t testing.TB) error {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.waitErr
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Fatalf("testenv: process did not exit within 30s of SIGTERM\n%s", s.output.String())
		return nil
	}
}

// WaitReady polls /readyz until it answers 200, failing after 30s.
func (s *Service) WaitReady(t testing.TB) {
	t.Helper()
	Poll(t, 30*time.Second, "/readyz answers 200\n"+s.Output(), func() bool {
		resp, err := http.Get(s.AdminURL + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// RequireCleanStop sends SIGTERM and fails unless the process exits 0
// having logged `"msg":"<name> stopped"`.
func (s *Service) RequireCleanStop(t testing.TB, name string) {
	t.Helper()
	if err := s.Terminate(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.Output())
	}
	if !strings.Contains(s.Output(), `"msg":"`+name+` stopped"`) {
		t.Fatalf("no clean stop in the logs of %s:\n%s", name, s.Output())
	}
}

// PeakRSSMiB is the process's peak resident set size (VmHWM) in MiB.
func (s *Service) PeakRSSMiB() (float64, error) { return PeakRSSMiB(s.PID()) }

// PeakRSSMiB reads VmHWM of a running process, in MiB.
func PeakRSSMiB(pid int) (float64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmHWM %q: %w", rest, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// RepoRoot returns the module's root directory (where go.mod is), for tests
// that read the repository's documents.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return root
}
