// Package natsgo runs the official Go client (nats.go) against natrix and the reference
// nats-server side by side: every test runs once per server as the subtests "natrix" and
// "nats-server", so a difference shows as one passing and one failing.
//
// The binaries come from NATRIX_BIN (default target/debug/natrix-server) and NATS_SERVER_BIN
// (default target/test-deps/usr/sbin/nats-server). A missing binary fails the test: a suite that
// silently skips the reference proves nothing.
package natsgo

import (
	"bufio"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// kinds lists the servers every test runs against, with the variable naming each binary and the
// default path relative to the repository root.
var kinds = []struct{ name, env, fallback string }{
	{"natrix", "NATRIX_BIN", "target/debug/natrix-server"},
	{"nats-server", "NATS_SERVER_BIN", "target/test-deps/usr/sbin/nats-server"},
}

const portLow, portHigh = 22000, 22999

var (
	portsMu   sync.Mutex
	usedPorts = map[int]bool{}
)

// freePort returns a port in this suite's range that nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 200; i++ {
		port := portLow + rand.Intn(portHigh-portLow+1)
		if usedPorts[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		usedPorts[port] = true
		return port
	}
	t.Fatalf("no free port in %d-%d", portLow, portHigh)
	return 0
}

func serverBinary(t *testing.T, kind string) string {
	t.Helper()
	for _, k := range kinds {
		if k.name != kind {
			continue
		}
		path := os.Getenv(k.env)
		if path == "" {
			root, err := filepath.Abs("../../..")
			if err != nil {
				t.Fatal(err)
			}
			path = filepath.Join(root, k.fallback)
		}
		if info, err := os.Stat(path); err != nil || info.Mode()&0o111 == 0 {
			t.Fatalf("%s binary not found at %s (set %s)", kind, path, k.env)
		}
		return path
	}
	t.Fatalf("unknown server kind %q", kind)
	return ""
}

// Server is one server process on 127.0.0.1, restartable on the same port.
type Server struct {
	t           *testing.T
	Kind        string
	binary      string
	args        []string
	Port        int
	MonitorPort int
	cmd         *exec.Cmd
	log         *os.File
}

// URL is the client URL of the server.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.Port) }

// Start runs the server and waits until it sends INFO.
func (s *Server) Start() *Server {
	s.t.Helper()
	args := []string{"-a", "127.0.0.1", "-p", fmt.Sprint(s.Port)}
	if s.MonitorPort != 0 {
		args = append(args, "-m", fmt.Sprint(s.MonitorPort))
	}
	args = append(args, s.args...)
	s.cmd = exec.Command(s.binary, args...)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting %s: %v", s.Kind, err)
	}
	exited := make(chan struct{})
	go func(cmd *exec.Cmd) {
		cmd.Wait()
		close(exited)
	}(s.cmd)
	s.waitReady(exited)
	return s
}

func (s *Server) waitReady(exited chan struct{}) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.t.Fatalf("%s exited at start: %s", s.Kind, s.Output())
		default:
		}
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), time.Second)
		if err == nil {
			conn.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(conn).ReadString(' ')
			conn.Close()
			if line == "INFO " {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("%s did not accept connections on %d: %s", s.Kind, s.Port, s.Output())
}

// Signal sends sig to the running server.
func (s *Server) Signal(sig os.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signalling %s: %v", s.Kind, err)
	}
}

// Stop ends the server: SIGTERM, then SIGKILL after 5 seconds.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.ProcessState != nil {
		s.cmd = nil
		return
	}
	done := make(chan struct{})
	go func(p *os.Process) {
		p.Wait()
		close(done)
	}(s.cmd.Process)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Kill ends the server at once with SIGKILL.
func (s *Server) Kill() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		s.cmd.Process.Wait()
		s.cmd = nil
	}
}

// Output is the end of the server's log, for failure messages.
func (s *Server) Output() string {
	data, _ := os.ReadFile(s.log.Name())
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

// StartServer starts a server of the given kind with extra arguments; it is stopped when the test
// ends, and its log is printed if the test failed.
func StartServer(t *testing.T, kind string, args ...string) *Server {
	t.Helper()
	return startServer(t, kind, false, args...)
}

// StartJetStreamServer is StartServer with JetStream enabled, storing in a fresh directory.
func StartJetStreamServer(t *testing.T, kind string, args ...string) *Server {
	t.Helper()
	return StartServer(t, kind, append([]string{"-js", "-sd", t.TempDir()}, args...)...)
}

// StartServerWithMonitor is StartServer with the HTTP monitoring port enabled.
func StartServerWithMonitor(t *testing.T, kind string, args ...string) *Server {
	t.Helper()
	return startServer(t, kind, true, args...)
}

func startServer(t *testing.T, kind string, monitor bool, args ...string) *Server {
	t.Helper()
	log, err := os.CreateTemp(t.TempDir(), kind+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, Kind: kind, binary: serverBinary(t, kind), args: args, Port: freePort(t), log: log}
	if monitor {
		s.MonitorPort = freePort(t)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", kind, s.Output())
		}
		log.Close()
	})
	return s.Start()
}

// WriteConfig writes a server configuration file for this test and returns its path.
func WriteConfig(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.conf")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// EachKind runs test once per server kind, as subtests named after the server.
func EachKind(t *testing.T, test func(t *testing.T, kind string)) {
	for _, k := range kinds {
		kind := k.name
		t.Run(kind, func(t *testing.T) { test(t, kind) })
	}
}

// EachServer runs test once against a default server of each kind.
func EachServer(t *testing.T, test func(t *testing.T, s *Server)) {
	EachKind(t, func(t *testing.T, kind string) { test(t, StartServer(t, kind)) })
}

// Connect connects to url with the given options and closes the connection when the test ends.
func Connect(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(2 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Receive waits up to two seconds for a message on ch.
func Receive(t *testing.T, ch <-chan *nats.Msg) *nats.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(2 * time.Second):
		t.Fatal("no message within 2s")
		return nil
	}
}

// Wait waits up to timeout for ch to be signalled.
func Wait[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("%s did not happen within %v", what, timeout)
		var zero T
		return zero
	}
}
