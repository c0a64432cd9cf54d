package natsgo

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// accountLimits are the JetStream limits of the account APP in most tests of this file.
const accountLimits = "max_streams: 2, max_consumers: 1, max_file: 1MB, max_mem: 512KB, max_ack_pending: 100"

// startAccountServer starts a server with JetStream whose only account, APP (user a, password
// a), has the given JetStream limits, or no `jetstream` at all when limits is empty. It returns
// a connection of that user and its JetStream context.
func startAccountServer(t *testing.T, kind, limits string) (*nats.Conn, nats.JetStreamContext) {
	t.Helper()
	jetstream := ""
	if limits != "" {
		jetstream = "jetstream: { " + limits + " }"
	}
	config := WriteConfig(t,
		fmt.Sprintf("jetstream { store_dir: %q }", t.TempDir()),
		"accounts {",
		"  APP: {",
		"    "+jetstream,
		"    users: [ {user: a, password: a} ]",
		"  }",
		"}",
	)
	s := StartServer(t, kind, "-c", config)
	nc := Connect(t, s.URL(), nats.UserInfo("a", "a"), nats.NoReconnect())
	js, err := nc.JetStream(nats.MaxWait(3 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// wantAPIError fails the test unless err is a JetStream API error with this status, code and
// description.
func wantAPIError(t *testing.T, what string, err error, status int, code nats.ErrorCode, description string) {
	t.Helper()
	var apiErr *nats.APIError
	if !errors.As(err, &apiErr) {
		t.Errorf("%s: err = %v, want API error %d", what, err, code)
		return
	}
	if apiErr.Code != status || apiErr.ErrorCode != code || apiErr.Description != description {
		t.Errorf("%s: API error = %+v, want {Code:%d ErrorCode:%d Description:%s}",
			what, *apiErr, status, code, description)
	}
}

func addStream(t *testing.T, js nats.JetStreamContext, name string) {
	t.Helper()
	if _, err := js.AddStream(&nats.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name)}}); err != nil {
		t.Fatalf("AddStream %s: %v", name, err)
	}
}

func TestAccountUserUsesJetStreamWithinItsLimits(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		_, js := startAccountServer(t, kind, accountLimits)
		info, err := js.AccountInfo()
		if err != nil {
			t.Fatal(err)
		}
		want := nats.AccountLimits{
			MaxMemory: 512 * 1024, MaxStore: 1024 * 1024, MaxStreams: 2, MaxConsumers: 1,
			MaxAckPending: 100, MemoryMaxStreamBytes: -1, StoreMaxStreamBytes: -1,
		}
		if info.Limits != want {
			t.Errorf("AccountInfo limits = %+v, want %+v", info.Limits, want)
		}
		addStream(t, js, "ORDERS")
		if ack := publish(t, js, "orders", "first"); ack.Stream != "ORDERS" || ack.Sequence != 1 {
			t.Errorf("PubAck = %+v", ack)
		}
		// nats.go asks a pull consumer for as many pending acks as its internal channel holds,
		// which is past the account's cap: the user has to choose a smaller one.
		_, err = js.PullSubscribe("orders", "worker")
		wantAPIError(t, "PullSubscribe without MaxAckPending", err, 400, 10121,
			"consumer max ack pending exceeds system limit of 100")
		sub, err := js.PullSubscribe("orders", "worker", nats.MaxAckPending(100))
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := sub.Fetch(1, nats.MaxWait(2*time.Second))
		if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "first" {
			t.Fatalf("Fetch = %v, %v", msgs, err)
		}
		if err := msgs[0].AckSync(); err != nil {
			t.Fatal(err)
		}
		if info, err = js.AccountInfo(); err != nil || info.Streams != 1 || info.Consumers != 1 {
			t.Errorf("AccountInfo = %+v, %v; want 1 stream and 1 consumer", info, err)
		}
	})
}

func TestAccountMaxStreams(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		_, js := startAccountServer(t, kind, accountLimits)
		addStream(t, js, "S1")
		addStream(t, js, "S2")
		_, err := js.AddStream(&nats.StreamConfig{Name: "S3", Subjects: []string{"s3"}})
		wantAPIError(t, "third stream", err, 400, 10027, "maximum number of streams reached")
		if err := js.DeleteStream("S2"); err != nil {
			t.Fatal(err)
		}
		addStream(t, js, "S3")
	})
}

func TestAccountMaxConsumersCapsEachStream(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		_, js := startAccountServer(t, kind, accountLimits)
		addStream(t, js, "S1")
		addStream(t, js, "S2")
		consumer := func(stream, name string) error {
			_, err := js.AddConsumer(stream, &nats.ConsumerConfig{Durable: name, AckPolicy: nats.AckExplicitPolicy})
			return err
		}
		if err := consumer("S1", "c1"); err != nil {
			t.Fatal(err)
		}
		wantAPIError(t, "second consumer of S1", consumer("S1", "c2"), 400, 10026, "maximum consumers limit reached")
		// The cap is per stream, as in nats-server.
		if err := consumer("S2", "c2"); err != nil {
			t.Errorf("first consumer of S2: %v", err)
		}
	})
}

func TestAccountMaxAckPending(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		_, js := startAccountServer(t, kind, accountLimits)
		addStream(t, js, "S1")
		addStream(t, js, "S2")
		_, err := js.AddConsumer("S1", &nats.ConsumerConfig{Durable: "greedy", AckPolicy: nats.AckExplicitPolicy, MaxAckPending: 101})
		wantAPIError(t, "max_ack_pending 101", err, 400, 10121, "consumer max ack pending exceeds system limit of 100")
		info, err := js.AddConsumer("S1", &nats.ConsumerConfig{Durable: "plain", AckPolicy: nats.AckExplicitPolicy})
		if err != nil || info.Config.MaxAckPending != 100 {
			t.Errorf("consumer without max_ack_pending = %+v, %v; want the account's 100", info, err)
		}
		info, err = js.AddConsumer("S2", &nats.ConsumerConfig{Durable: "modest", AckPolicy: nats.AckExplicitPolicy, MaxAckPending: 50})
		if err != nil || info.Config.MaxAckPending != 50 {
			t.Errorf("consumer with max_ack_pending 50 = %+v, %v", info, err)
		}
	})
}

func TestAccountStreamReservingMoreThanMaxFile(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		_, js := startAccountServer(t, kind, accountLimits)
		_, err := js.AddStream(&nats.StreamConfig{Name: "BIG", Subjects: []string{"big"}, MaxBytes: 2 << 20})
		wantAPIError(t, "max_bytes 2 MiB", err, 500, 10047, "insufficient storage resources available")
		if _, err := js.AddStream(&nats.StreamConfig{Name: "FITS", Subjects: []string{"fits"}, MaxBytes: 1 << 20}); err != nil {
			t.Errorf("max_bytes 1 MiB: %v", err)
		}
	})
}

func TestAccountPublishPastMaxFile(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		_, js := startAccountServer(t, kind, "max_file: 2000, max_mem: 1000")
		addStream(t, js, "FILE")
		payload := make([]byte, 200)
		stored := 0
		var err error
		for ; stored < 20; stored++ {
			if _, err = js.Publish("file", payload); err != nil {
				break
			}
		}
		wantAPIError(t, "publish past max_file", err, 400, 10002, "resource limits exceeded for account")
		// A file-store message counts 4 (subject) + 200 (payload) + 30 bytes: eight fit in 2,000.
		if stored != 8 {
			t.Errorf("%d messages stored before the refusal, want 8", stored)
		}
		if msgs := streamInfo(t, js, "FILE").State.Msgs; msgs != 8 {
			t.Errorf("stream holds %d messages, want 8", msgs)
		}
	})
}

func TestAccountWithoutJetStream(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		nc, js := startAccountServer(t, kind, "")
		// nats.go replaces this answer of AccountInfo with its own error value.
		if _, err := js.AccountInfo(); !errors.Is(err, nats.ErrJetStreamNotEnabledForAccount) || apiCode(err) != 10039 {
			t.Errorf("AccountInfo: %v, want ErrJetStreamNotEnabledForAccount", err)
		}
		_, err := js.AddStream(&nats.StreamConfig{Name: "S", Subjects: []string{"s"}})
		wantAPIError(t, "AddStream", err, 503, 10039, "JetStream not enabled for account")
		_, err = js.StreamInfo("S")
		wantAPIError(t, "StreamInfo", err, 503, 10039, "JetStream not enabled for account")
		// Core messaging is unaffected.
		ch := make(chan *nats.Msg, 1)
		if _, err := nc.ChanSubscribe("core", ch); err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("core", []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if got := string(Receive(t, ch).Data); got != "hi" {
			t.Errorf("got %q", got)
		}
	})
}
