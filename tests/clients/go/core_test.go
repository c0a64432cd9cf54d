package natsgo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestConnectReportsServerInfo(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		if v := nc.ConnectedServerVersion(); !regexp.MustCompile(`^2\.\d+\.\d+`).MatchString(v) {
			t.Errorf("ConnectedServerVersion = %q, want 2.x.y", v)
		}
		if got := nc.MaxPayload(); got != 1024*1024 {
			t.Errorf("MaxPayload = %d, want 1 MiB", got)
		}
		if id := nc.ConnectedServerId(); len(id) == 0 {
			t.Error("ConnectedServerId is empty")
		}
		if got := nc.ConnectedUrl(); got != s.URL() {
			t.Errorf("ConnectedUrl = %q, want %q", got, s.URL())
		}
		if got := nc.ConnectedAddr(); got != fmt.Sprintf("127.0.0.1:%d", s.Port) {
			t.Errorf("ConnectedAddr = %q", got)
		}
		if !nc.HeadersSupported() {
			t.Error("HeadersSupported = false")
		}
		if nc.AuthRequired() || nc.TLSRequired() {
			t.Error("auth or TLS required without auth or TLS configured")
		}
		if got := nc.DiscoveredServers(); len(got) != 0 {
			t.Errorf("DiscoveredServers = %v on a single node", got)
		}
		if got := nc.ConnectedClusterName(); got != "" {
			t.Errorf("ConnectedClusterName = %q without a cluster", got)
		}
		if id, err := nc.GetClientID(); err != nil || id == 0 {
			t.Errorf("GetClientID = %d, %v", id, err)
		}
		if ip, err := nc.GetClientIP(); err != nil || ip.String() != "127.0.0.1" {
			t.Errorf("GetClientIP = %v, %v", ip, err)
		}
		if nc.Status() != nats.CONNECTED || !nc.IsConnected() {
			t.Errorf("Status = %v", nc.Status())
		}
	})
}

func TestConnectionNameAppearsInConnz(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServerWithMonitor(t, kind)
		nc := Connect(t, s.URL(), nats.Name("go-suite"))
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/connz", s.MonitorPort))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var connz struct {
			Connections []struct {
				Name    string `json:"name"`
				Lang    string `json:"lang"`
				Version string `json:"version"`
			} `json:"connections"`
		}
		if err := json.Unmarshal(body, &connz); err != nil {
			t.Fatalf("connz: %v: %s", err, body)
		}
		// The start-up probe's connection may still be listed: look for ours by name.
		for _, c := range connz.Connections {
			if c.Name == "go-suite" {
				if c.Lang != "go" || c.Version != nats.Version {
					t.Errorf("connz connection = %+v, want go/%s", c, nats.Version)
				}
				return
			}
		}
		t.Fatalf("no connection named go-suite in connz: %s", body)
	})
}

func TestSyncSubscriptionNextMsgAndTimeout(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		sub, err := nc.SubscribeSync("sync.>")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			nc.Publish(fmt.Sprintf("sync.%d", i), []byte(fmt.Sprint(i)))
		}
		for i := 0; i < 3; i++ {
			m, err := sub.NextMsg(2 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != fmt.Sprintf("sync.%d", i) || string(m.Data) != fmt.Sprint(i) {
				t.Fatalf("message %d: %q %q", i, m.Subject, m.Data)
			}
		}
		if _, err := sub.NextMsg(100 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("NextMsg on an empty subscription = %v, want ErrTimeout", err)
		}
	})
}

func TestChanSubscriptionReceivesMessages(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		ch := make(chan *nats.Msg, 16)
		if _, err := nc.ChanSubscribe("chan.subject", ch); err != nil {
			t.Fatal(err)
		}
		qch := make(chan *nats.Msg, 16)
		if _, err := nc.ChanQueueSubscribe("chan.subject", "workers", qch); err != nil {
			t.Fatal(err)
		}
		nc.Publish("chan.subject", []byte("one"))
		if m := Receive(t, ch); string(m.Data) != "one" {
			t.Fatalf("got %q", m.Data)
		}
		if m := Receive(t, qch); string(m.Data) != "one" {
			t.Fatalf("queue got %q", m.Data)
		}
	})
}

func TestWildcardsMatchTokens(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		star, _ := nc.SubscribeSync("orders.*.created")
		tail, _ := nc.SubscribeSync("orders.>")
		partial, _ := nc.SubscribeSync("orders.eu*") // a literal token, not a wildcard
		for _, subj := range []string{"orders.eu.created", "orders.us.created", "orders.eu.created.late", "orders", "orders.eu*"} {
			nc.Publish(subj, []byte(subj))
		}
		nc.Flush()
		expect := func(sub *nats.Subscription, want ...string) {
			t.Helper()
			for _, w := range want {
				m, err := sub.NextMsg(2 * time.Second)
				if err != nil {
					t.Fatalf("%s: waiting for %s: %v", sub.Subject, w, err)
				}
				if m.Subject != w {
					t.Fatalf("%s: got %s, want %s", sub.Subject, m.Subject, w)
				}
			}
			if m, err := sub.NextMsg(50 * time.Millisecond); err == nil {
				t.Fatalf("%s: unexpected %s", sub.Subject, m.Subject)
			}
		}
		expect(star, "orders.eu.created", "orders.us.created")
		expect(tail, "orders.eu.created", "orders.us.created", "orders.eu.created.late", "orders.eu*")
		expect(partial, "orders.eu*")
	})
}

func TestQueueGroupDeliversEachMessageOnce(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		const n = 300
		var mu sync.Mutex
		seen := map[string]int{}
		perMember := make([]int, 3)
		var plain int64
		for i := 0; i < 3; i++ {
			i := i
			nc.QueueSubscribe("jobs", "workers", func(m *nats.Msg) {
				mu.Lock()
				seen[string(m.Data)]++
				perMember[i]++
				mu.Unlock()
			})
		}
		other := Connect(t, s.URL())
		other.QueueSubscribe("jobs", "workers", func(m *nats.Msg) {
			mu.Lock()
			seen[string(m.Data)]++
			mu.Unlock()
		})
		nc.Subscribe("jobs", func(*nats.Msg) { atomic.AddInt64(&plain, 1) })
		other.Flush()
		for i := 0; i < n; i++ {
			nc.Publish("jobs", []byte(fmt.Sprint(i)))
		}
		nc.Flush()
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) && atomic.LoadInt64(&plain) < n {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != n {
			t.Fatalf("queue group saw %d distinct messages, want %d", len(seen), n)
		}
		for k, c := range seen {
			if c != 1 {
				t.Fatalf("message %s delivered %d times to the group", k, c)
			}
		}
		if atomic.LoadInt64(&plain) != n {
			t.Fatalf("plain subscriber got %d, want %d", plain, n)
		}
		for i, c := range perMember {
			if c == 0 {
				t.Errorf("member %d never chosen in %d messages", i, n)
			}
		}
	})
}

func TestRequestReply(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind)
		for _, style := range []struct {
			name string
			opts []nats.Option
		}{{"new", nil}, {"old", []nats.Option{nats.UseOldRequestStyle()}}} {
			t.Run(style.name, func(t *testing.T) {
				responder := Connect(t, s.URL())
				responder.Subscribe("svc.echo", func(m *nats.Msg) { m.Respond(append([]byte("re:"), m.Data...)) })
				responder.Flush()
				nc := Connect(t, s.URL(), style.opts...)
				resp, err := nc.Request("svc.echo", []byte("ping"), 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if string(resp.Data) != "re:ping" {
					t.Fatalf("got %q", resp.Data)
				}
				// Many concurrent requests each get their own answer.
				var wg sync.WaitGroup
				errs := make(chan error, 100)
				for i := 0; i < 100; i++ {
					wg.Add(1)
					go func(i int) {
						defer wg.Done()
						want := fmt.Sprint(i)
						resp, err := nc.Request("svc.echo", []byte(want), 5*time.Second)
						if err != nil {
							errs <- err
						} else if string(resp.Data) != "re:"+want {
							errs <- fmt.Errorf("request %s answered %q", want, resp.Data)
						}
					}(i)
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
			})
		}
	})
}

func TestRequestWithoutRespondersFailsFast(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		start := time.Now()
		_, err := nc.Request("nobody.home", []byte("?"), 5*time.Second)
		if !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("Request = %v, want ErrNoResponders", err)
		}
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Fatalf("no-responders took %v", elapsed)
		}
		// RequestMsg and the old request style also get it.
		if _, err := nc.RequestMsg(nats.NewMsg("nobody.home"), 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("RequestMsg = %v, want ErrNoResponders", err)
		}
		old := Connect(t, s.URL(), nats.UseOldRequestStyle())
		if _, err := old.Request("nobody.home", nil, 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("old-style Request = %v, want ErrNoResponders", err)
		}
	})
}

func TestHeadersRoundTrip(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		sub, _ := nc.SubscribeSync("hdr")
		msg := nats.NewMsg("hdr")
		msg.Header.Add("X-Trace", "a")
		msg.Header.Add("X-Trace", "b")
		msg.Header.Set("Content-Type", "text/plain")
		msg.Data = []byte("body")
		if err := nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
		// Headers without a body, and a body without headers.
		empty := &nats.Msg{Subject: "hdr", Header: nats.Header{"Only": []string{"header"}}}
		nc.PublishMsg(empty)
		nc.Publish("hdr", []byte("plain"))

		m, err := sub.NextMsg(2 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Values("X-Trace"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
			t.Errorf("X-Trace = %v, want [a b]", got)
		}
		if got := m.Header.Get("Content-Type"); got != "text/plain" {
			t.Errorf("Content-Type = %q", got)
		}
		if string(m.Data) != "body" {
			t.Errorf("data = %q", m.Data)
		}
		m, _ = sub.NextMsg(2 * time.Second)
		if m == nil || m.Header.Get("Only") != "header" || len(m.Data) != 0 {
			t.Errorf("header-only message = %+v", m)
		}
		m, _ = sub.NextMsg(2 * time.Second)
		if m == nil || len(m.Header) != 0 || string(m.Data) != "plain" {
			t.Errorf("plain message = %+v", m)
		}
	})
}

func TestRequestMsgCarriesHeadersBothWays(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		nc.Subscribe("svc.hdr", func(m *nats.Msg) {
			reply := nats.NewMsg(m.Reply)
			reply.Header.Set("Echo", m.Header.Get("Ask"))
			m.RespondMsg(reply)
		})
		req := nats.NewMsg("svc.hdr")
		req.Header.Set("Ask", "42")
		resp, err := nc.RequestMsg(req, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Echo") != "42" {
			t.Fatalf("reply headers = %v", resp.Header)
		}
	})
}

func TestFlushAndFlushTimeout(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		for i := 0; i < 1000; i++ {
			nc.Publish("flush.me", []byte("x"))
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := nc.FlushTimeout(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		if err := nc.FlushTimeout(0); !errors.Is(err, nats.ErrBadTimeout) {
			t.Fatalf("FlushTimeout(0) = %v, want ErrBadTimeout", err)
		}
		if n, _ := nc.Buffered(); n != 0 {
			t.Fatalf("%d bytes buffered after Flush", n)
		}
	})
}

func TestDrainConnectionProcessesPendingMessagesThenCloses(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		closed := make(chan struct{})
		nc := Connect(t, s.URL(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
		var got int64
		nc.Subscribe("drain.conn", func(*nats.Msg) {
			time.Sleep(time.Millisecond)
			atomic.AddInt64(&got, 1)
		})
		pub := Connect(t, s.URL())
		for i := 0; i < 200; i++ {
			pub.Publish("drain.conn", []byte("x"))
		}
		pub.Flush()
		time.Sleep(20 * time.Millisecond)
		if err := nc.Drain(); err != nil {
			t.Fatal(err)
		}
		Wait(t, closed, 5*time.Second, "close after drain")
		// nats.go counts a message as handled when its callback starts, so the last callbacks
		// may still be finishing when the closed handler runs: wait for them, bounded.
		deadline := time.Now().Add(2 * time.Second)
		for atomic.LoadInt64(&got) < 200 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := atomic.LoadInt64(&got); n != 200 {
			t.Fatalf("handled %d of 200 messages by drain", n)
		}
		if err := nc.Publish("drain.conn", nil); !errors.Is(err, nats.ErrConnectionClosed) {
			t.Fatalf("Publish after drain = %v", err)
		}
	})
}

func TestDrainSubscriptionStopsInterestKeepsConnection(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		var got int64
		sub, _ := nc.Subscribe("drain.sub", func(*nats.Msg) { atomic.AddInt64(&got, 1) })
		for i := 0; i < 50; i++ {
			nc.Publish("drain.sub", nil)
		}
		nc.Flush()
		if err := sub.Drain(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for sub.IsValid() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if sub.IsValid() {
			t.Fatal("subscription still valid after drain")
		}
		if n := atomic.LoadInt64(&got); n != 50 {
			t.Fatalf("handled %d of 50", n)
		}
		nc.Publish("drain.sub", nil)
		nc.Flush()
		time.Sleep(50 * time.Millisecond)
		if n := atomic.LoadInt64(&got); n != 50 {
			t.Fatalf("got a message after drain: %d", n)
		}
		if !nc.IsConnected() {
			t.Fatal("connection closed by a subscription drain")
		}
	})
}

func TestAutoUnsubscribeStopsAfterLimit(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		sub, _ := nc.SubscribeSync("auto")
		if err := sub.AutoUnsubscribe(3); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			nc.Publish("auto", []byte(fmt.Sprint(i)))
		}
		nc.Flush()
		for i := 0; i < 3; i++ {
			if _, err := sub.NextMsg(2 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := sub.NextMsg(100 * time.Millisecond); !errors.Is(err, nats.ErrMaxMessages) && !errors.Is(err, nats.ErrBadSubscription) {
			t.Fatalf("after the limit: %v", err)
		}
		if nc.NumSubscriptions() != 0 {
			t.Fatalf("NumSubscriptions = %d after auto-unsubscribe", nc.NumSubscriptions())
		}
	})
}

func TestPendingCountsQueuedMessages(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		sub, _ := nc.SubscribeSync("pending")
		for i := 0; i < 10; i++ {
			nc.Publish("pending", []byte("12345"))
		}
		nc.Flush()
		deadline := time.Now().Add(2 * time.Second)
		msgs, bytes := 0, 0
		for time.Now().Before(deadline) {
			msgs, bytes, _ = sub.Pending()
			if msgs == 10 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if msgs != 10 || bytes != 50 {
			t.Fatalf("Pending = %d msgs %d bytes, want 10/50", msgs, bytes)
		}
	})
}

func TestSlowConsumerReportedToErrorHandler(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		slow := make(chan error, 1)
		nc := Connect(t, s.URL(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case slow <- err:
			default:
			}
		}))
		block := make(chan struct{})
		sub, _ := nc.Subscribe("slow", func(*nats.Msg) { <-block })
		defer close(block)
		sub.SetPendingLimits(10, 1024)
		pub := Connect(t, s.URL())
		for i := 0; i < 100; i++ {
			pub.Publish("slow", []byte("payload"))
		}
		pub.Flush()
		if err := Wait(t, slow, 3*time.Second, "slow consumer error"); !errors.Is(err, nats.ErrSlowConsumer) {
			t.Fatalf("error handler got %v", err)
		}
		if dropped, _ := sub.Dropped(); dropped == 0 {
			t.Fatal("no message dropped")
		}
		if !nc.IsConnected() {
			t.Fatal("client-side slow consumer closed the connection")
		}
	})
}

func TestRTTMeasuresARoundTrip(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		rtt, err := nc.RTT()
		if err != nil {
			t.Fatal(err)
		}
		if rtt <= 0 || rtt > time.Second {
			t.Fatalf("RTT = %v", rtt)
		}
	})
}

func TestNoEchoSuppressesOwnMessages(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL(), nats.NoEcho())
		other := Connect(t, s.URL())
		mine, _ := nc.SubscribeSync("echo")
		theirs, _ := other.SubscribeSync("echo")
		// Both subscriptions are on the server before anyone publishes.
		nc.Flush()
		other.Flush()
		nc.Publish("echo", []byte("from nc"))
		other.Publish("echo", []byte("from other"))
		nc.Flush()
		other.Flush()
		m, err := mine.NextMsg(2 * time.Second)
		if err != nil || string(m.Data) != "from other" {
			t.Fatalf("no-echo connection got %v %v", m, err)
		}
		if m, err := mine.NextMsg(100 * time.Millisecond); err == nil {
			t.Fatalf("no-echo connection got its own message %q", m.Data)
		}
		// Two publishers on two connections: no order between them.
		got := map[string]bool{}
		for i := 0; i < 2; i++ {
			m, err := theirs.NextMsg(2 * time.Second)
			if err != nil {
				t.Fatalf("echo connection: %v after %v", err, got)
			}
			got[string(m.Data)] = true
		}
		if !got["from nc"] || !got["from other"] {
			t.Fatalf("echo connection got %v", got)
		}
	})
}

func TestLargePayloadsRoundTrip(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		payload := bytes.Repeat([]byte("0123456789abcdef"), 1024*1024/16)
		nc.Subscribe("big.echo", func(m *nats.Msg) { m.Respond(m.Data) })
		resp, err := nc.Request("big.echo", payload, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(resp.Data, payload) {
			t.Fatalf("1 MiB payload came back as %d bytes, different", len(resp.Data))
		}
	})
}

func TestManyMessagesArriveInOrder(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		const n = 20000
		done := make(chan error, 1)
		next := 0
		nc.Subscribe("ordered", func(m *nats.Msg) {
			if string(m.Data) != fmt.Sprint(next) {
				select {
				case done <- fmt.Errorf("message %d is %q", next, m.Data):
				default:
				}
			}
			next++
			if next == n {
				done <- nil
			}
		})
		pub := Connect(t, s.URL())
		pub.Flush()
		nc.Flush()
		for i := 0; i < n; i++ {
			pub.Publish("ordered", []byte(fmt.Sprint(i)))
		}
		pub.Flush()
		if err := Wait(t, done, 10*time.Second, "all messages"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestServerNameFromFlag(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		unnamed := Connect(t, StartServer(t, kind).URL())
		// Without a name, nats-server reports its id as its name.
		if unnamed.ConnectedServerName() != unnamed.ConnectedServerId() {
			t.Errorf("ConnectedServerName = %q, id %q", unnamed.ConnectedServerName(), unnamed.ConnectedServerId())
		}
		nc := Connect(t, StartServer(t, kind, "-n", "node-a").URL())
		if got := nc.ConnectedServerName(); got != "node-a" {
			t.Errorf("ConnectedServerName = %q, want node-a", got)
		}
	})
}

func TestVerboseConnectionWorks(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		verbose := func(o *nats.Options) error { o.Verbose = true; return nil }
		nc := Connect(t, s.URL(), verbose)
		sub, _ := nc.SubscribeSync("verbose")
		for i := 0; i < 10; i++ {
			nc.Publish("verbose", []byte(fmt.Sprint(i)))
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if _, err := sub.NextMsg(2 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.LastError(); err != nil {
			t.Fatalf("LastError = %v", err)
		}
	})
}

func TestUnsubscribeStopsDeliveryAndRequestTimesOut(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		sub, _ := nc.SubscribeSync("unsub")
		nc.Subscribe("svc.slow", func(m *nats.Msg) {}) // never answers
		if err := sub.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
		if nc.NumSubscriptions() != 1 {
			t.Fatalf("NumSubscriptions = %d", nc.NumSubscriptions())
		}
		watcher, _ := nc.SubscribeSync("unsub")
		nc.Publish("unsub", []byte("x"))
		if _, err := watcher.NextMsg(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.NextMsg(50 * time.Millisecond); !errors.Is(err, nats.ErrBadSubscription) {
			t.Fatalf("NextMsg on an unsubscribed subscription = %v", err)
		}
		start := time.Now()
		if _, err := nc.Request("svc.slow", nil, 200*time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("Request to a silent responder = %v, want ErrTimeout", err)
		}
		if time.Since(start) < 150*time.Millisecond {
			t.Fatal("timed out early")
		}
	})
}

func TestPublishRequestSetsReplySubject(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		sub, _ := nc.SubscribeSync("with.reply")
		inbox := nc.NewInbox()
		replies, _ := nc.SubscribeSync(inbox)
		nc.PublishRequest("with.reply", inbox, []byte("q"))
		m, err := sub.NextMsg(2 * time.Second)
		if err != nil || m.Reply != inbox {
			t.Fatalf("reply subject = %v, %v; want %s", m, err, inbox)
		}
		m.Respond([]byte("a"))
		if r, err := replies.NextMsg(2 * time.Second); err != nil || string(r.Data) != "a" {
			t.Fatalf("reply: %v %v", r, err)
		}
	})
}
