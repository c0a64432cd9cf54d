package natsgo

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestUserPasswordAuth(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind, "--user", "alice", "--pass", "s3cret")
		nc := Connect(t, s.URL(), nats.UserInfo("alice", "s3cret"))
		if !nc.AuthRequired() {
			t.Error("AuthRequired = false on a server with a password")
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		Connect(t, fmt.Sprintf("nats://alice:s3cret@127.0.0.1:%d", s.Port)).Close()
		for name, opts := range map[string][]nats.Option{
			"wrong password": {nats.UserInfo("alice", "nope")},
			"wrong user":     {nats.UserInfo("bob", "s3cret")},
			"none":           nil,
			"token instead":  {nats.Token("s3cret")},
		} {
			nc, err := nats.Connect(s.URL(), append(opts, nats.Timeout(2*time.Second))...)
			if !errors.Is(err, nats.ErrAuthorization) {
				if nc != nil {
					nc.Close()
				}
				t.Errorf("%s: Connect = %v, want ErrAuthorization", name, err)
			}
		}
	})
}

func TestTokenAuth(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind, "--auth", "t0ken")
		nc := Connect(t, s.URL(), nats.Token("t0ken"))
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		Connect(t, fmt.Sprintf("nats://t0ken@127.0.0.1:%d", s.Port)).Close()
		for name, opts := range map[string][]nats.Option{
			"wrong token": {nats.Token("other")},
			"none":        nil,
			"user/pass":   {nats.UserInfo("t0ken", "t0ken")},
		} {
			nc, err := nats.Connect(s.URL(), append(opts, nats.Timeout(2*time.Second))...)
			if !errors.Is(err, nats.ErrAuthorization) {
				if nc != nil {
					nc.Close()
				}
				t.Errorf("%s: Connect = %v, want ErrAuthorization", name, err)
			}
		}
	})
}

// reconnectOptions make a client retry quickly and report its reconnects and disconnects.
func reconnectOptions(reconnected, disconnected chan struct{}) []nats.Option {
	return []nats.Option{
		nats.ReconnectWait(50 * time.Millisecond),
		nats.ReconnectJitter(0, 0),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {
			select {
			case disconnected <- struct{}{}:
			default:
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}),
	}
}

func TestReconnectAfterRestartResubscribesAndFlushesBufferedPublishes(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind)
		reconnected, disconnected := make(chan struct{}, 1), make(chan struct{}, 1)
		nc := Connect(t, s.URL(), reconnectOptions(reconnected, disconnected)...)
		sub, _ := nc.SubscribeSync("survivor")
		qsub, _ := nc.QueueSubscribeSync("survivor.q", "group")
		nc.Publish("survivor", []byte("before"))
		if m, err := sub.NextMsg(2 * time.Second); err != nil || string(m.Data) != "before" {
			t.Fatalf("before restart: %v %v", m, err)
		}
		serverID := nc.ConnectedServerId()

		s.Stop()
		Wait(t, disconnected, 5*time.Second, "disconnect")
		for i := 0; i < 5; i++ {
			if err := nc.Publish("survivor", []byte(fmt.Sprint("buffered-", i))); err != nil {
				t.Fatalf("publish while disconnected: %v", err)
			}
		}
		nc.Publish("survivor.q", []byte("queued"))
		s.Start()
		Wait(t, reconnected, 5*time.Second, "reconnect")

		for i := 0; i < 5; i++ {
			m, err := sub.NextMsg(2 * time.Second)
			if err != nil || string(m.Data) != fmt.Sprint("buffered-", i) {
				t.Fatalf("buffered message %d: %v %v", i, m, err)
			}
		}
		if m, err := qsub.NextMsg(2 * time.Second); err != nil || string(m.Data) != "queued" {
			t.Fatalf("queue subscription after reconnect: %v %v", m, err)
		}
		other := Connect(t, s.URL())
		other.Publish("survivor", []byte("after"))
		if m, err := sub.NextMsg(2 * time.Second); err != nil || string(m.Data) != "after" {
			t.Fatalf("after restart: %v %v", m, err)
		}
		if nc.ConnectedServerId() == serverID {
			t.Errorf("server id %s unchanged across a restart", serverID)
		}
		if stats := nc.Stats(); stats.Reconnects != 1 {
			t.Errorf("Reconnects = %d", stats.Reconnects)
		}
	})
}

func TestReconnectResendsCredentials(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind, "--user", "alice", "--pass", "s3cret")
		reconnected, disconnected := make(chan struct{}, 1), make(chan struct{}, 1)
		opts := append(reconnectOptions(reconnected, disconnected), nats.UserInfo("alice", "s3cret"))
		nc := Connect(t, s.URL(), opts...)
		sub, _ := nc.SubscribeSync("auth.survivor")
		nc.Flush()
		s.Stop()
		Wait(t, disconnected, 5*time.Second, "disconnect")
		s.Start()
		Wait(t, reconnected, 5*time.Second, "reconnect")
		nc.Publish("auth.survivor", []byte("hello again"))
		if m, err := sub.NextMsg(2 * time.Second); err != nil || string(m.Data) != "hello again" {
			t.Fatalf("after reconnect: %v %v", m, err)
		}
	})
}

func TestLameDuckModeNotifiesClients(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		conf := WriteConfig(t, `lame_duck_duration: "30s"`, `lame_duck_grace_period: "200ms"`)
		s := StartServer(t, kind, "-c", conf)
		defer s.Kill()
		ldm := make(chan struct{}, 1)
		nc := Connect(t, s.URL(), nats.LameDuckModeHandler(func(*nats.Conn) {
			select {
			case ldm <- struct{}{}:
			default:
			}
		}))
		sub, _ := nc.SubscribeSync("ldm")
		nc.Flush()
		clientID, _ := nc.GetClientID()
		s.Signal(syscall.SIGUSR2)
		Wait(t, ldm, 3*time.Second, "lame duck mode callback")
		// nats.go replaces its server info with the lame duck INFO: the client id must survive.
		if id, err := nc.GetClientID(); err != nil || id != clientID {
			t.Errorf("GetClientID in lame duck mode = %d, %v; was %d", id, err, clientID)
		}
		if ip, err := nc.GetClientIP(); err != nil || ip.String() != "127.0.0.1" {
			t.Errorf("GetClientIP in lame duck mode = %v, %v", ip, err)
		}

		// The connection still works during the lame duck duration...
		nc.Publish("ldm", []byte("still here"))
		if m, err := sub.NextMsg(2 * time.Second); err != nil || string(m.Data) != "still here" {
			t.Fatalf("in lame duck mode: %v %v", m, err)
		}
		// ...but the server accepts no new connection.
		if late, err := nats.Connect(s.URL(), nats.Timeout(500*time.Millisecond), nats.NoReconnect()); err == nil {
			late.Close()
			t.Fatal("a new connection was accepted in lame duck mode")
		}
	})
}

func TestReconnectKeepsAutoUnsubscribeLimitsAndManySubscriptions(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind)
		reconnected, disconnected := make(chan struct{}, 1), make(chan struct{}, 1)
		nc := Connect(t, s.URL(), reconnectOptions(reconnected, disconnected)...)
		limited, _ := nc.SubscribeSync("limited")
		limited.AutoUnsubscribe(5)
		const many = 2000
		var got int64
		for i := 0; i < many; i++ {
			nc.Subscribe(fmt.Sprintf("many.%d", i), func(*nats.Msg) { atomic.AddInt64(&got, 1) })
		}
		nc.Publish("limited", nil)
		nc.Publish("limited", nil)
		nc.Flush()
		for i := 0; i < 2; i++ {
			if _, err := limited.NextMsg(2 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		s.Stop()
		Wait(t, disconnected, 5*time.Second, "disconnect")
		s.Start()
		Wait(t, reconnected, 5*time.Second, "reconnect")
		// The resent SUBs are on the wire; a round trip makes sure the server has them all.
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}

		pub := Connect(t, s.URL())
		for i := 0; i < 10; i++ {
			pub.Publish("limited", nil)
		}
		for i := 0; i < many; i++ {
			pub.Publish(fmt.Sprintf("many.%d", i), nil)
		}
		pub.Flush()
		for i := 0; i < 3; i++ {
			if _, err := limited.NextMsg(2 * time.Second); err != nil {
				t.Fatalf("message %d of the remaining 3: %v", i, err)
			}
		}
		deadline := time.Now().Add(3 * time.Second)
		for atomic.LoadInt64(&got) < many && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := atomic.LoadInt64(&got); n != many {
			t.Fatalf("%d of %d resubscribed subscriptions got their message", n, many)
		}
		if _, err := limited.NextMsg(100 * time.Millisecond); err == nil {
			t.Fatal("more than 5 messages on a subscription limited to 5")
		}
	})
}
