package natsgo

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// closedWith connects with a closed handler and returns the connection and the channel it
// signals when the client closes the connection.
func closedWith(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, chan struct{}) {
	t.Helper()
	closed := make(chan struct{})
	nc := Connect(t, url, append(opts, nats.ClosedHandler(func(*nats.Conn) { close(closed) }))...)
	return nc, closed
}

func expectLastError(t *testing.T, nc *nats.Conn, want string) {
	t.Helper()
	if err := nc.LastError(); err == nil || !strings.EqualFold(err.Error(), want) {
		t.Fatalf("LastError = %v, want %q", err, want)
	}
}

func TestInvalidSubjectRejectedByClient(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		for _, subj := range []string{"foo..bar", "", "foo bar", ".foo"} {
			if _, err := nc.Subscribe(subj, func(*nats.Msg) {}); !errors.Is(err, nats.ErrBadSubject) {
				t.Errorf("Subscribe(%q) = %v, want ErrBadSubject", subj, err)
			}
		}
		if err := nc.Publish("", nil); !errors.Is(err, nats.ErrBadSubject) {
			t.Errorf("Publish(\"\") = %v", err)
		}
		if !nc.IsConnected() {
			t.Fatal("client-side rejections closed the connection")
		}
	})
}

// nats.go checks only for empty tokens and whitespace; "foo.>.bar" reaches the server, whose
// -ERR 'Invalid Subject' nats.go turns into LastError and a client-side close.
func TestServerInvalidSubjectErrorClosesClient(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc, closed := closedWith(t, s.URL())
		if _, err := nc.Subscribe("foo.>.bar", func(*nats.Msg) {}); err != nil {
			t.Fatalf("Subscribe = %v (nats.go should send it)", err)
		}
		nc.Flush()
		Wait(t, closed, 3*time.Second, "close after -ERR")
		expectLastError(t, nc, "nats: invalid subject")
	})
}

func TestPedanticPublishToWildcardIsReportedAndDelivered(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		watcher := Connect(t, s.URL())
		sub, _ := watcher.SubscribeSync(">")
		watcher.Flush()
		pedantic := func(o *nats.Options) error { o.Pedantic = true; return nil }
		nc, closed := closedWith(t, s.URL(), pedantic)
		nc.Publish("orders.*", []byte("wild"))
		nc.Flush()
		Wait(t, closed, 3*time.Second, "close after -ERR")
		expectLastError(t, nc, "nats: invalid publish subject")
		if m, err := sub.NextMsg(2 * time.Second); err != nil || m.Subject != "orders.*" {
			t.Fatalf("the message itself: %v %v", m, err)
		}
	})
}

func TestMaxPayloadEnforcedByClient(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind)
		nc := Connect(t, s.URL())
		if err := nc.Publish("big", make([]byte, 1024*1024+1)); !errors.Is(err, nats.ErrMaxPayload) {
			t.Fatalf("1 MiB + 1 = %v, want ErrMaxPayload", err)
		}

		small := StartServer(t, kind, "-c", WriteConfig(t, "max_payload: 1024"))
		nc = Connect(t, small.URL())
		if got := nc.MaxPayload(); got != 1024 {
			t.Fatalf("MaxPayload = %d with max_payload: 1024", got)
		}
		sub, _ := nc.SubscribeSync("limit")
		if err := nc.Publish("limit", make([]byte, 1024)); err != nil {
			t.Fatalf("exactly max_payload: %v", err)
		}
		if err := nc.Publish("limit", make([]byte, 1025)); !errors.Is(err, nats.ErrMaxPayload) {
			t.Fatalf("max_payload + 1 = %v, want ErrMaxPayload", err)
		}
		if m, err := sub.NextMsg(2 * time.Second); err != nil || len(m.Data) != 1024 {
			t.Fatalf("max_payload message: %v", err)
		}
		if !nc.IsConnected() {
			t.Fatal("connection lost")
		}
	})
}

func TestMaxSubscriptionsErrorClosesClient(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind, "-c", WriteConfig(t, "max_subscriptions: 2"))
		nc, closed := closedWith(t, s.URL())
		for _, subj := range []string{"a", "b", "c"} {
			if _, err := nc.SubscribeSync(subj); err != nil {
				t.Fatalf("Subscribe(%s) = %v", subj, err)
			}
		}
		nc.Flush()
		Wait(t, closed, 3*time.Second, "close after -ERR")
		expectLastError(t, nc, "nats: maximum subscriptions exceeded")
	})
}

func TestMaxConnectionsRefusesConnect(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind, "-c", WriteConfig(t, "max_connections: 1"))
		// The start-up probe's connection may not be reaped yet: retry the first connect briefly.
		var first *nats.Conn
		var err error
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if first, err = nats.Connect(s.URL(), nats.NoReconnect()); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("first connection: %v", err)
		}
		defer first.Close()
		nc, err := nats.Connect(s.URL(), nats.Timeout(2*time.Second), nats.NoReconnect())
		if err == nil {
			nc.Close()
			t.Fatal("second connection accepted with max_connections: 1")
		}
		// Both servers send INFO, -ERR and close at once: nats.go reports the -ERR, or the failed
		// write of its CONNECT when the close wins the race.
		msg := strings.ToLower(err.Error())
		if !errors.Is(err, nats.ErrMaxConnectionsExceeded) && !strings.Contains(msg, "maximum connections exceeded") &&
			!strings.Contains(msg, "broken pipe") && !strings.Contains(msg, "connection reset") {
			t.Fatalf("Connect = %v, want maximum connections exceeded", err)
		}
	})
}

func TestPingsKeepConnectionAlive(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind, "-c", WriteConfig(t, `ping_interval: "100ms"`, "ping_max: 2"))
		disconnected := make(chan error, 1)
		nc := Connect(t, s.URL(), nats.PingInterval(50*time.Millisecond), nats.MaxPingsOutstanding(2),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { disconnected <- err }))
		sub, _ := nc.SubscribeSync("alive")
		time.Sleep(600 * time.Millisecond)
		select {
		case err := <-disconnected:
			t.Fatalf("disconnected while pinging: %v", err)
		default:
		}
		nc.Publish("alive", []byte("yes"))
		if _, err := sub.NextMsg(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		if rtt, err := nc.RTT(); err != nil || rtt > time.Second {
			t.Fatalf("RTT = %v %v", rtt, err)
		}
	})
}

func TestMaxControlLineErrorClosesClient(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc, closed := closedWith(t, s.URL())
		if _, err := nc.SubscribeSync(strings.Repeat("x", 5000)); err != nil {
			t.Fatalf("Subscribe = %v (nats.go has no length check)", err)
		}
		nc.Flush()
		Wait(t, closed, 3*time.Second, "close after -ERR")
		expectLastError(t, nc, "nats: maximum control line exceeded")
	})
}
