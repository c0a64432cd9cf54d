package natsgo

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// EachJetStream runs test once per server kind, against a server started with JetStream enabled
// and a fresh store directory, with a connection and its JetStream context.
func EachJetStream(t *testing.T, test func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext)) {
	EachKind(t, func(t *testing.T, kind string) {
		var s *Server
		if os.Getenv("NATRIX_GO_JS_CLUSTER") == "1" {
			// Three clustered servers; the test talks to the first, and its streams are
			// placed on any of the three, so requests, publishes and deliveries cross nodes.
			s = StartCluster(t, kind)[0]
		} else {
			s = StartJetStreamServer(t, kind)
		}
		nc := Connect(t, s.URL(), nats.NoReconnect())
		js, err := nc.JetStream(nats.MaxWait(3 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "JetStream answers", func() error {
			_, err := js.AccountInfo()
			return err
		})
		test(t, nc, js)
	})
}

func addOrders(t *testing.T, js nats.JetStreamContext, cfg nats.StreamConfig) *nats.StreamInfo {
	t.Helper()
	cfg.Name = "ORDERS"
	if cfg.Subjects == nil {
		cfg.Subjects = []string{"orders.>"}
	}
	info, err := js.AddStream(&cfg)
	if err != nil {
		t.Fatalf("AddStream: %v", err)
	}
	return info
}

func publish(t *testing.T, js nats.JetStreamContext, subj, data string, opts ...nats.PubOpt) *nats.PubAck {
	t.Helper()
	ack, err := js.Publish(subj, []byte(data), opts...)
	if err != nil {
		t.Fatalf("Publish %s: %v", subj, err)
	}
	return ack
}

func streamInfo(t *testing.T, js nats.JetStreamContext, name string) *nats.StreamInfo {
	t.Helper()
	info, err := js.StreamInfo(name)
	if err != nil {
		t.Fatalf("StreamInfo %s: %v", name, err)
	}
	return info
}

// apiCode is the JetStream error code carried by err, or 0.
func apiCode(err error) nats.ErrorCode {
	var apiErr *nats.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}

func TestJetStreamStreamLifecycle(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		info := addOrders(t, js, nats.StreamConfig{})
		if info.Config.Name != "ORDERS" || info.Config.Storage != nats.FileStorage ||
			info.Config.Retention != nats.LimitsPolicy || info.State.Msgs != 0 {
			t.Errorf("AddStream info = %+v", info)
		}
		for i := 0; i < 3; i++ {
			publish(t, js, fmt.Sprintf("orders.%d", i), "xxxxxxxxxx")
		}
		info = streamInfo(t, js, "ORDERS")
		if info.State.Msgs != 3 || info.State.FirstSeq != 1 || info.State.LastSeq != 3 || info.State.Bytes == 0 {
			t.Errorf("state after 3 publishes = %+v", info.State)
		}

		info, err := js.UpdateStream(&nats.StreamConfig{
			Name: "ORDERS", Subjects: []string{"orders.>", "refunds.*"}, MaxMsgs: 2,
		})
		if err != nil {
			t.Fatalf("UpdateStream: %v", err)
		}
		if len(info.Config.Subjects) != 2 || info.Config.MaxMsgs != 2 || info.State.Msgs != 2 || info.State.FirstSeq != 2 {
			t.Errorf("UpdateStream info = %+v / %+v", info.Config, info.State)
		}
		if ack := publish(t, js, "refunds.1", "r"); ack.Stream != "ORDERS" || ack.Sequence != 4 {
			t.Errorf("ack on added subject = %+v", ack)
		}

		var names []string
		for name := range js.StreamNames() {
			names = append(names, name)
		}
		if len(names) != 1 || names[0] != "ORDERS" {
			t.Errorf("StreamNames = %v", names)
		}

		if err := js.PurgeStream("ORDERS"); err != nil {
			t.Fatalf("PurgeStream: %v", err)
		}
		info = streamInfo(t, js, "ORDERS")
		if info.State.Msgs != 0 || info.State.FirstSeq != 5 || info.State.LastSeq != 4 {
			t.Errorf("state after purge = %+v", info.State)
		}

		for i := 0; i < 6; i++ {
			publish(t, js, fmt.Sprintf("orders.%d", i%2), strconv.Itoa(i))
		}
		if err := js.PurgeStream("ORDERS", &nats.StreamPurgeRequest{Subject: "orders.1"}); err != nil {
			t.Fatalf("PurgeStream by subject: %v", err)
		}
		if err := js.PurgeStream("ORDERS", &nats.StreamPurgeRequest{Subject: "orders.0", Keep: 1}); err != nil {
			t.Fatalf("PurgeStream keep: %v", err)
		}
		info = streamInfo(t, js, "ORDERS")
		if info.State.Msgs != 1 || info.State.FirstSeq != 9 || info.State.LastSeq != 10 {
			t.Errorf("state after filtered purges = %+v", info.State)
		}

		if err := js.DeleteStream("ORDERS"); err != nil {
			t.Fatalf("DeleteStream: %v", err)
		}
		if _, err := js.StreamInfo("ORDERS"); !errors.Is(err, nats.ErrStreamNotFound) {
			t.Errorf("StreamInfo after delete: %v, want ErrStreamNotFound", err)
		}
		if err := js.DeleteStream("ORDERS"); !errors.Is(err, nats.ErrStreamNotFound) {
			t.Errorf("DeleteStream twice: %v, want ErrStreamNotFound", err)
		}
		if _, err := js.UpdateStream(&nats.StreamConfig{Name: "MISSING"}); !errors.Is(err, nats.ErrStreamNotFound) {
			t.Errorf("UpdateStream missing: %v, want ErrStreamNotFound", err)
		}
	})
}

func TestJetStreamAddStreamErrors(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		addOrders(t, js, nats.StreamConfig{})
		_, err := js.AddStream(&nats.StreamConfig{Name: "ORDERS", Subjects: []string{"other.>"}})
		if !errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
			t.Errorf("AddStream same name, other config: %v, want ErrStreamNameAlreadyInUse", err)
		}
		_, err = js.AddStream(&nats.StreamConfig{Name: "OTHER", Subjects: []string{"orders.new"}})
		if code := apiCode(err); code != 10065 {
			t.Errorf("AddStream overlapping subjects: %v (code %d), want 10065", err, code)
		}
		// The same configuration again is accepted.
		addOrders(t, js, nats.StreamConfig{})
	})
}

func TestJetStreamPublishAcksAndDedup(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		addOrders(t, js, nats.StreamConfig{})
		if ack := publish(t, js, "orders.new", "one", nats.MsgId("id-1")); ack.Stream != "ORDERS" || ack.Sequence != 1 || ack.Duplicate {
			t.Errorf("first ack = %+v", ack)
		}
		if ack := publish(t, js, "orders.new", "one", nats.MsgId("id-1")); ack.Sequence != 1 || !ack.Duplicate {
			t.Errorf("duplicate ack = %+v", ack)
		}
		if ack := publish(t, js, "orders.new", "two", nats.MsgId("id-2")); ack.Sequence != 2 || ack.Duplicate {
			t.Errorf("second id ack = %+v", ack)
		}
		if ack := publish(t, js, "orders.new", "three", nats.ExpectStream("ORDERS")); ack.Sequence != 3 {
			t.Errorf("plain ack = %+v", ack)
		}

		var futures []nats.PubAckFuture
		for i := 0; i < 50; i++ {
			f, err := js.PublishAsync("orders.async", []byte(strconv.Itoa(i)))
			if err != nil {
				t.Fatal(err)
			}
			futures = append(futures, f)
		}
		Wait(t, js.PublishAsyncComplete(), 5*time.Second, "PublishAsyncComplete")
		for i, f := range futures {
			select {
			case ack := <-f.Ok():
				if ack.Sequence != uint64(4+i) || ack.Stream != "ORDERS" {
					t.Errorf("async ack %d = %+v", i, ack)
				}
			case err := <-f.Err():
				t.Errorf("async publish %d: %v", i, err)
			}
		}
		// Async with the same message id twice: one stored.
		f1, _ := js.PublishAsync("orders.async", []byte("d"), nats.MsgId("dup"))
		f2, _ := js.PublishAsync("orders.async", []byte("d"), nats.MsgId("dup"))
		Wait(t, js.PublishAsyncComplete(), 5*time.Second, "PublishAsyncComplete")
		a1, a2 := Wait(t, f1.Ok(), time.Second, "ack 1"), Wait(t, f2.Ok(), time.Second, "ack 2")
		if a1.Sequence != 54 || a1.Duplicate || a2.Sequence != 54 || !a2.Duplicate {
			t.Errorf("async dedup acks = %+v, %+v", a1, a2)
		}
		if info := streamInfo(t, js, "ORDERS"); info.State.Msgs != 54 {
			t.Errorf("messages = %d, want 54", info.State.Msgs)
		}

		if _, err := js.Publish("nostream.here", []byte("x"), nats.AckWait(time.Second)); !errors.Is(err, nats.ErrNoStreamResponse) {
			t.Errorf("publish without stream: %v, want ErrNoStreamResponse", err)
		}
	})
}

func TestJetStreamPublishExpectations(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		addOrders(t, js, nats.StreamConfig{})
		publish(t, js, "orders.a", "1", nats.MsgId("m1"))
		publish(t, js, "orders.b", "2")
		_, err := js.Publish("orders.a", []byte("x"), nats.ExpectLastSequence(1))
		if code := apiCode(err); code != nats.JSErrCodeStreamWrongLastSequence {
			t.Errorf("ExpectLastSequence(1): %v (code %d), want 10071", err, code)
		}
		if ack := publish(t, js, "orders.a", "3", nats.ExpectLastSequence(2)); ack.Sequence != 3 {
			t.Errorf("ExpectLastSequence(2) ack = %+v", ack)
		}
		_, err = js.Publish("orders.b", []byte("x"), nats.ExpectLastSequencePerSubject(1))
		if code := apiCode(err); code != nats.JSErrCodeStreamWrongLastSequence {
			t.Errorf("ExpectLastSequencePerSubject(1): %v (code %d), want 10071", err, code)
		}
		if ack := publish(t, js, "orders.b", "4", nats.ExpectLastSequencePerSubject(2)); ack.Sequence != 4 {
			t.Errorf("ExpectLastSequencePerSubject(2) ack = %+v", ack)
		}
		_, err = js.Publish("orders.a", []byte("x"), nats.ExpectStream("OTHER"))
		if code := apiCode(err); code != 10060 {
			t.Errorf("ExpectStream(OTHER): %v (code %d), want 10060", err, code)
		}
		_, err = js.Publish("orders.a", []byte("x"), nats.ExpectLastMsgId("nope"))
		if code := apiCode(err); code != 10070 {
			t.Errorf("ExpectLastMsgId(nope): %v (code %d), want 10070", err, code)
		}
		if info := streamInfo(t, js, "ORDERS"); info.State.Msgs != 4 {
			t.Errorf("messages = %d, want 4", info.State.Msgs)
		}
	})
}

func TestJetStreamGetMsgAndDirectGet(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		addOrders(t, js, nats.StreamConfig{AllowDirect: true})
		m := nats.NewMsg("orders.a")
		m.Data = []byte("first")
		m.Header.Set("X-Tag", "one")
		if _, err := js.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		publish(t, js, "orders.b", "second")
		publish(t, js, "orders.a", "third")

		for _, direct := range []bool{false, true} {
			var opts []nats.JSOpt
			if direct {
				opts = append(opts, nats.DirectGet())
			}
			msg, err := js.GetMsg("ORDERS", 1, opts...)
			if err != nil {
				t.Fatalf("GetMsg(1, direct=%v): %v", direct, err)
			}
			if msg.Subject != "orders.a" || msg.Sequence != 1 || string(msg.Data) != "first" || msg.Header.Get("X-Tag") != "one" {
				t.Errorf("GetMsg(1, direct=%v) = %+v", direct, msg)
			}
			if msg.Time.IsZero() || time.Since(msg.Time) > time.Minute {
				t.Errorf("GetMsg(1, direct=%v) time = %v", direct, msg.Time)
			}
			msg, err = js.GetLastMsg("ORDERS", "orders.a", opts...)
			if err != nil || msg.Sequence != 3 || string(msg.Data) != "third" {
				t.Errorf("GetLastMsg(orders.a, direct=%v) = %+v, %v", direct, msg, err)
			}
			if _, err := js.GetMsg("ORDERS", 99, opts...); !errors.Is(err, nats.ErrMsgNotFound) {
				t.Errorf("GetMsg(99, direct=%v): %v, want ErrMsgNotFound", direct, err)
			}
			if _, err := js.GetLastMsg("ORDERS", "orders.none", opts...); !errors.Is(err, nats.ErrMsgNotFound) {
				t.Errorf("GetLastMsg(orders.none, direct=%v): %v, want ErrMsgNotFound", direct, err)
			}
		}
		msg, err := js.GetMsg("ORDERS", 2, nats.DirectGetNext("orders.a"))
		if err != nil || msg.Sequence != 3 {
			t.Errorf("DirectGetNext(orders.a) from 2 = %+v, %v", msg, err)
		}

		if err := js.DeleteMsg("ORDERS", 2); err != nil {
			t.Fatalf("DeleteMsg: %v", err)
		}
		if _, err := js.GetMsg("ORDERS", 2); !errors.Is(err, nats.ErrMsgNotFound) {
			t.Errorf("GetMsg of deleted: %v, want ErrMsgNotFound", err)
		}
		if info := streamInfo(t, js, "ORDERS"); info.State.Msgs != 2 || info.State.NumDeleted != 1 {
			t.Errorf("state after DeleteMsg = %+v", info.State)
		}
		if _, err := js.GetMsg("NOPE", 1); !errors.Is(err, nats.ErrStreamNotFound) {
			t.Errorf("GetMsg on missing stream: %v, want ErrStreamNotFound", err)
		}
	})
}

func TestJetStreamPullFetchAcks(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		addOrders(t, js, nats.StreamConfig{})
		for i := 0; i < 3; i++ {
			publish(t, js, fmt.Sprintf("orders.%d", i), strconv.Itoa(i))
		}
		sub, err := js.PullSubscribe("orders.>", "worker", nats.BindStream("ORDERS"))
		if err != nil {
			t.Fatalf("PullSubscribe: %v", err)
		}
		msgs, err := sub.Fetch(3, nats.MaxWait(2*time.Second))
		if err != nil || len(msgs) != 3 {
			t.Fatalf("Fetch(3) = %d msgs, %v", len(msgs), err)
		}
		for i, m := range msgs {
			if string(m.Data) != strconv.Itoa(i) {
				t.Errorf("message %d = %q", i, m.Data)
			}
		}
		md, err := msgs[0].Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if md.Stream != "ORDERS" || md.Consumer != "worker" || md.Sequence.Stream != 1 || md.Sequence.Consumer != 1 ||
			md.NumDelivered != 1 || md.NumPending != 2 || time.Since(md.Timestamp) > time.Minute {
			t.Errorf("metadata = %+v", md)
		}

		if err := msgs[0].AckSync(); err != nil {
			t.Errorf("AckSync: %v", err)
		}
		if err := msgs[0].Ack(); !errors.Is(err, nats.ErrMsgAlreadyAckd) {
			t.Errorf("second Ack: %v, want ErrMsgAlreadyAckd", err)
		}
		if err := msgs[1].Nak(); err != nil {
			t.Error(err)
		}
		if err := msgs[2].Term(); err != nil {
			t.Error(err)
		}

		again, err := sub.Fetch(1, nats.MaxWait(2*time.Second))
		if err != nil || len(again) != 1 {
			t.Fatalf("Fetch after Nak = %d msgs, %v", len(again), err)
		}
		md, _ = again[0].Metadata()
		if string(again[0].Data) != "1" || md.NumDelivered != 2 || md.Sequence.Stream != 2 || md.Sequence.Consumer != 4 {
			t.Errorf("redelivered %q with %+v", again[0].Data, md)
		}
		if err := again[0].InProgress(); err != nil {
			t.Error(err)
		}
		if err := again[0].AckSync(); err != nil {
			t.Error(err)
		}

		if msgs, err := sub.Fetch(1, nats.MaxWait(300*time.Millisecond)); !errors.Is(err, nats.ErrTimeout) {
			t.Errorf("Fetch on empty consumer = %d msgs, %v, want ErrTimeout", len(msgs), err)
		}

		info, err := sub.ConsumerInfo()
		if err != nil {
			t.Fatal(err)
		}
		if info.Name != "worker" || info.Config.Durable != "worker" || info.Config.AckPolicy != nats.AckExplicitPolicy ||
			info.NumPending != 0 || info.NumAckPending != 0 || info.Delivered.Stream != 3 || info.AckFloor.Stream != 3 {
			t.Errorf("ConsumerInfo = %+v", info)
		}

		publish(t, js, "orders.9", "9")
		msgs, err = sub.Fetch(5, nats.MaxWait(time.Second))
		if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "9" {
			t.Fatalf("Fetch(5) with one new message = %d msgs, %v", len(msgs), err)
		}
		msgs[0].AckSync()

		if err := js.DeleteConsumer("ORDERS", "worker"); err != nil {
			t.Fatalf("DeleteConsumer: %v", err)
		}
		if _, err := js.ConsumerInfo("ORDERS", "worker"); !errors.Is(err, nats.ErrConsumerNotFound) {
			t.Errorf("ConsumerInfo after delete: %v, want ErrConsumerNotFound", err)
		}
	})
}

func TestJetStreamPullAckWaitRedelivery(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		addOrders(t, js, nats.StreamConfig{})
		publish(t, js, "orders.1", "1")
		sub, err := js.PullSubscribe("orders.>", "slow", nats.AckWait(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if msgs, err := sub.Fetch(1, nats.MaxWait(2*time.Second)); err != nil || len(msgs) != 1 {
			t.Fatalf("first Fetch: %d, %v", len(msgs), err)
		}
		start := time.Now()
		msgs, err := sub.Fetch(1, nats.MaxWait(3*time.Second))
		if err != nil || len(msgs) != 1 {
			t.Fatalf("Fetch of the redelivery: %d, %v", len(msgs), err)
		}
		md, _ := msgs[0].Metadata()
		if md.NumDelivered != 2 {
			t.Errorf("NumDelivered = %d, want 2", md.NumDelivered)
		}
		if waited := time.Since(start); waited < 300*time.Millisecond {
			t.Errorf("redelivered after %v, before ack wait", waited)
		}
		msgs[0].AckSync()
	})
}

func TestJetStreamPushDurable(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		addOrders(t, js, nats.StreamConfig{})
		for i := 0; i < 3; i++ {
			publish(t, js, fmt.Sprintf("orders.%d", i), strconv.Itoa(i))
		}
		ch := make(chan *nats.Msg, 16)
		sub, err := js.ChanSubscribe("orders.>", ch, nats.Durable("pusher"), nats.ManualAck())
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		for i := 0; i < 3; i++ {
			m := Receive(t, ch)
			if string(m.Data) != strconv.Itoa(i) {
				t.Errorf("message %d = %q", i, m.Data)
			}
			m.Ack()
		}
		publish(t, js, "orders.3", "3")
		m := Receive(t, ch)
		if md, _ := m.Metadata(); string(m.Data) != "3" || md.Sequence.Stream != 4 {
			t.Errorf("live message %q, %+v", m.Data, md)
		}
		if err := m.AckSync(); err != nil {
			t.Error(err)
		}
		info, err := js.ConsumerInfo("ORDERS", "pusher")
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Durable != "pusher" || info.Config.DeliverSubject == "" || !info.PushBound ||
			info.NumAckPending != 0 || info.Delivered.Stream != 4 {
			t.Errorf("ConsumerInfo = %+v", info)
		}
		var names []string
		for name := range js.ConsumerNames("ORDERS") {
			names = append(names, name)
		}
		if len(names) != 1 || names[0] != "pusher" {
			t.Errorf("ConsumerNames = %v", names)
		}
		if si := streamInfo(t, js, "ORDERS"); si.State.Consumers != 1 {
			t.Errorf("stream consumers = %d", si.State.Consumers)
		}
		// Unsubscribe of a durable the subscription created deletes it.
		if err := sub.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
		if _, err := js.ConsumerInfo("ORDERS", "pusher"); !errors.Is(err, nats.ErrConsumerNotFound) {
			t.Errorf("ConsumerInfo after Unsubscribe: %v, want ErrConsumerNotFound", err)
		}

		// A durable created up front survives the subscription and resumes where it left off.
		if _, err := js.AddConsumer("ORDERS", &nats.ConsumerConfig{
			Durable: "kept", DeliverSubject: nats.NewInbox(), AckPolicy: nats.AckExplicitPolicy,
		}); err != nil {
			t.Fatalf("AddConsumer: %v", err)
		}
		sub, err = js.SubscribeSync("", nats.Bind("ORDERS", "kept"))
		if err != nil {
			t.Fatalf("SubscribeSync Bind: %v", err)
		}
		for i := 0; i < 4; i++ {
			m, err := sub.NextMsg(2 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			m.AckSync()
		}
		sub.Unsubscribe()
		publish(t, js, "orders.5", "5")
		// The server notices the interest is gone asynchronously: until then the consumer is bound.
		deadline := time.Now().Add(2 * time.Second)
		for {
			sub, err = js.SubscribeSync("", nats.Bind("ORDERS", "kept"))
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("SubscribeSync Bind again: %v", err)
		}
		m, err = sub.NextMsg(2 * time.Second)
		if err != nil || string(m.Data) != "5" {
			t.Fatalf("resumed at %v, %v; want message 5", m, err)
		}
		if md, _ := m.Metadata(); md.Sequence.Stream != 5 || md.Sequence.Consumer != 5 || md.NumDelivered != 1 {
			t.Errorf("resumed message metadata = %+v", md)
		}
	})
}

func TestJetStreamQueueSubscribe(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		addOrders(t, js, nats.StreamConfig{})
		var mu sync.Mutex
		seen := map[string][]int{}
		done := make(chan struct{})
		handler := func(name string) nats.MsgHandler {
			return func(m *nats.Msg) {
				n, _ := strconv.Atoi(string(m.Data))
				m.Ack()
				mu.Lock()
				defer mu.Unlock()
				seen[name] = append(seen[name], n)
				if len(seen["a"])+len(seen["b"]) == 20 {
					close(done)
				}
			}
		}
		for _, name := range []string{"a", "b"} {
			if _, err := js.QueueSubscribe("orders.>", "workers", handler(name), nats.Durable("workers")); err != nil {
				t.Fatalf("QueueSubscribe %s: %v", name, err)
			}
		}
		for i := 0; i < 20; i++ {
			publish(t, js, "orders.x", strconv.Itoa(i))
		}
		Wait(t, done, 5*time.Second, "20 deliveries")
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		all := append(append([]int{}, seen["a"]...), seen["b"]...)
		mu.Unlock()
		sort.Ints(all)
		for i, n := range all {
			if i != n || len(all) != 20 {
				t.Fatalf("deliveries = %v, want each of 0..19 once", all)
			}
		}
		info, err := js.ConsumerInfo("ORDERS", "workers")
		if err != nil || info.Config.DeliverGroup != "workers" {
			t.Errorf("ConsumerInfo = %+v, %v", info, err)
		}
	})
}

func TestJetStreamOrderedConsumer(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		addOrders(t, js, nats.StreamConfig{})
		for i := 0; i < 5; i++ {
			publish(t, js, fmt.Sprintf("orders.%d", i%2), strconv.Itoa(i))
		}
		sub, err := js.SubscribeSync("orders.>", nats.OrderedConsumer())
		if err != nil {
			t.Fatalf("OrderedConsumer: %v", err)
		}
		next := func() int {
			t.Helper()
			m, err := sub.NextMsg(2 * time.Second)
			if err != nil {
				t.Fatalf("NextMsg: %v", err)
			}
			n, _ := strconv.Atoi(string(m.Data))
			return n
		}
		for i := 0; i < 5; i++ {
			if n := next(); n != i {
				t.Fatalf("message %d = %d", i, n)
			}
		}
		for i := 5; i < 8; i++ {
			publish(t, js, "orders.x", strconv.Itoa(i))
		}
		for i := 5; i < 8; i++ {
			if n := next(); n != i {
				t.Fatalf("message %d = %d", i, n)
			}
		}
		info, err := sub.ConsumerInfo()
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.AckPolicy != nats.AckNonePolicy || !info.Config.FlowControl || info.Config.Heartbeat == 0 ||
			info.Config.MemoryStorage != true || info.Config.Durable != "" {
			t.Errorf("ordered consumer config = %+v", info.Config)
		}
		sub.Unsubscribe()
	})
}

func TestJetStreamAccountInfo(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		info, err := js.AccountInfo()
		if err != nil {
			t.Fatal(err)
		}
		if info.Streams != 0 || info.Consumers != 0 {
			t.Errorf("empty AccountInfo = %+v", info)
		}
		addOrders(t, js, nats.StreamConfig{})
		publish(t, js, "orders.1", string(make([]byte, 100)))
		if _, err := js.PullSubscribe("orders.>", "d"); err != nil {
			t.Fatal(err)
		}
		// A clustered nats-server counts the stored bytes a moment later (usage is gathered
		// from the nodes asynchronously).
		deadline := time.Now().Add(5 * time.Second)
		for {
			info, err = js.AccountInfo()
			if err != nil {
				t.Fatal(err)
			}
			if info.Store > 100 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if info.Streams != 1 || info.Consumers != 1 || info.Store <= 100 || info.Memory != 0 ||
			info.Limits.MaxStreams != -1 || info.API.Total == 0 {
			t.Errorf("AccountInfo = %+v", info)
		}
	})
}

func TestJetStreamKeyValue(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		kv, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: "cfg", History: 5})
		if err != nil {
			t.Fatalf("CreateKeyValue: %v", err)
		}
		rev, err := kv.Put("color", []byte("red"))
		if err != nil || rev != 1 {
			t.Fatalf("Put = %d, %v", rev, err)
		}
		e, err := kv.Get("color")
		if err != nil || e.Key() != "color" || string(e.Value()) != "red" || e.Revision() != 1 || e.Operation() != nats.KeyValuePut {
			t.Fatalf("Get = %+v, %v", e, err)
		}
		if rev, err := kv.Update("color", []byte("blue"), 1); err != nil || rev != 2 {
			t.Fatalf("Update = %d, %v", rev, err)
		}
		if _, err := kv.Update("color", []byte("green"), 1); apiCode(err) != nats.JSErrCodeStreamWrongLastSequence {
			t.Errorf("Update with stale revision: %v, want wrong last sequence", err)
		}
		if _, err := kv.Create("color", []byte("green")); !errors.Is(err, nats.ErrKeyExists) {
			t.Errorf("Create of existing key: %v, want ErrKeyExists", err)
		}
		if rev, err := kv.Create("size", []byte("L")); err != nil || rev != 3 {
			t.Errorf("Create = %d, %v", rev, err)
		}
		if e, err := kv.GetRevision("color", 1); err != nil || string(e.Value()) != "red" {
			t.Errorf("GetRevision(1) = %v, %v", e, err)
		}
		if err := kv.Delete("size"); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Get("size"); !errors.Is(err, nats.ErrKeyNotFound) {
			t.Errorf("Get of deleted key: %v, want ErrKeyNotFound", err)
		}
		if rev, err := kv.Create("size", []byte("M")); err != nil || rev != 5 {
			t.Errorf("Create after delete = %d, %v", rev, err)
		}
		if _, err := kv.Get("missing"); !errors.Is(err, nats.ErrKeyNotFound) {
			t.Errorf("Get of missing key: %v, want ErrKeyNotFound", err)
		}
		keys, err := kv.Keys()
		sort.Strings(keys)
		if err != nil || len(keys) != 2 || keys[0] != "color" || keys[1] != "size" {
			t.Errorf("Keys = %v, %v", keys, err)
		}
		hist, err := kv.History("color")
		if err != nil || len(hist) != 2 || string(hist[0].Value()) != "red" || hist[1].Revision() != 2 {
			t.Errorf("History = %v, %v", hist, err)
		}
		if err := kv.Purge("color"); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Get("color"); !errors.Is(err, nats.ErrKeyNotFound) {
			t.Errorf("Get of purged key: %v, want ErrKeyNotFound", err)
		}
		hist, err = kv.History("color")
		if err != nil || len(hist) != 1 || hist[0].Operation() != nats.KeyValuePurge {
			t.Errorf("History after purge = %v, %v", hist, err)
		}
		if keys, err := kv.Keys(); err != nil || len(keys) != 1 || keys[0] != "size" {
			t.Errorf("Keys after purge = %v, %v", keys, err)
		}
		st, err := kv.Status()
		if err != nil || st.Bucket() != "cfg" || st.History() != 5 || st.BackingStore() != "JetStream" {
			t.Errorf("Status = %+v, %v", st, err)
		}
		again, err := js.KeyValue("cfg")
		if err != nil {
			t.Fatal(err)
		}
		if e, err := again.Get("size"); err != nil || string(e.Value()) != "M" {
			t.Errorf("Get via KeyValue() = %v, %v", e, err)
		}
		if _, err := js.KeyValue("nope"); !errors.Is(err, nats.ErrBucketNotFound) {
			t.Errorf("KeyValue(nope): %v, want ErrBucketNotFound", err)
		}
		if err := js.DeleteKeyValue("cfg"); err != nil {
			t.Fatal(err)
		}
		empty, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: "empty"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := empty.Keys(); !errors.Is(err, nats.ErrNoKeysFound) {
			t.Errorf("Keys of empty bucket: %v, want ErrNoKeysFound", err)
		}
	})
}

func TestJetStreamKeyValueWatch(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		kv, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: "live"})
		if err != nil {
			t.Fatal(err)
		}
		kv.Put("a", []byte("1"))
		w, err := kv.WatchAll()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		next := func() nats.KeyValueEntry {
			t.Helper()
			return Wait(t, w.Updates(), 2*time.Second, "a watch update")
		}
		if e := next(); e == nil || e.Key() != "a" || string(e.Value()) != "1" {
			t.Fatalf("initial value = %v", e)
		}
		if e := next(); e != nil {
			t.Fatalf("want the nil marker after the initial values, got %v", e)
		}
		kv.Put("b", []byte("2"))
		kv.Delete("a")
		if e := next(); e == nil || e.Key() != "b" || string(e.Value()) != "2" || e.Revision() != 2 {
			t.Errorf("update = %v", e)
		}
		if e := next(); e == nil || e.Key() != "a" || e.Operation() != nats.KeyValueDelete {
			t.Errorf("delete = %v", e)
		}

		// A watcher on one key only sees that key.
		wb, err := kv.Watch("b")
		if err != nil {
			t.Fatal(err)
		}
		defer wb.Stop()
		if e := Wait(t, wb.Updates(), 2*time.Second, "b's value"); e == nil || string(e.Value()) != "2" {
			t.Fatalf("initial value of b = %v", e)
		}
		if e := Wait(t, wb.Updates(), 2*time.Second, "the nil marker"); e != nil {
			t.Fatalf("want the nil marker, got %v", e)
		}
		kv.Put("c", []byte("3"))
		kv.Put("b", []byte("4"))
		e := Wait(t, wb.Updates(), 2*time.Second, "a watch update on b")
		if e == nil || e.Key() != "b" || string(e.Value()) != "4" {
			t.Errorf("update on b = %v", e)
		}
	})
}

func TestJetStreamObjectStore(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		obs, err := js.CreateObjectStore(&nats.ObjectStoreConfig{Bucket: "files"})
		if err != nil {
			t.Fatalf("CreateObjectStore: %v", err)
		}
		data := make([]byte, 1024*1024+17)
		rand.Read(data)
		info, err := obs.PutBytes("big.bin", data)
		if err != nil {
			t.Fatalf("PutBytes: %v", err)
		}
		if info.Name != "big.bin" || info.Size != uint64(len(data)) || info.Chunks != 9 || info.Bucket != "files" {
			t.Errorf("put info = %+v", info)
		}
		if _, err := obs.PutString("small.txt", "hello"); err != nil {
			t.Fatal(err)
		}
		got, err := obs.GetBytes("big.bin")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("GetBytes = %d bytes (equal %v), %v", len(got), bytes.Equal(got, data), err)
		}
		if s, err := obs.GetString("small.txt"); err != nil || s != "hello" {
			t.Errorf("GetString = %q, %v", s, err)
		}
		info, err = obs.GetInfo("big.bin")
		if err != nil || info.Size != uint64(len(data)) || info.Digest == "" {
			t.Errorf("GetInfo = %+v, %v", info, err)
		}
		list, err := obs.List()
		var names []string
		for _, i := range list {
			names = append(names, i.Name)
		}
		sort.Strings(names)
		if err != nil || len(names) != 2 || names[0] != "big.bin" || names[1] != "small.txt" {
			t.Errorf("List = %v, %v", names, err)
		}
		if err := obs.Delete("big.bin"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := obs.GetInfo("big.bin"); !errors.Is(err, nats.ErrObjectNotFound) {
			t.Errorf("GetInfo after delete: %v, want ErrObjectNotFound", err)
		}
		if _, err := obs.GetBytes("big.bin"); !errors.Is(err, nats.ErrObjectNotFound) {
			t.Errorf("GetBytes after delete: %v, want ErrObjectNotFound", err)
		}
		list, err = obs.List()
		if err != nil || len(list) != 1 || list[0].Name != "small.txt" {
			t.Errorf("List after delete = %v, %v", list, err)
		}
		// The deleted object's chunks are purged.
		if st, err := obs.Status(); err != nil || st.Size() > 1024 {
			t.Errorf("Status after delete = size %d, %v", st.Size(), err)
		}
		if _, err := js.ObjectStore("nope"); !errors.Is(err, nats.ErrStreamNotFound) {
			t.Errorf("ObjectStore(nope): %v, want ErrStreamNotFound", err)
		}
	})
}

func TestJetStreamWorkQueueAndLimits(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		if _, err := js.AddStream(&nats.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.*"}, Retention: nats.WorkQueuePolicy}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			publish(t, js, fmt.Sprintf("jobs.%d", i%2), strconv.Itoa(i))
		}
		sub, err := js.PullSubscribe("jobs.*", "w")
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := sub.Fetch(4, nats.MaxWait(2*time.Second))
		if err != nil || len(msgs) != 4 {
			t.Fatalf("Fetch = %d, %v", len(msgs), err)
		}
		for _, m := range msgs[:3] {
			m.AckSync()
		}
		if info := streamInfo(t, js, "JOBS"); info.State.Msgs != 1 || info.State.FirstSeq != 4 {
			t.Errorf("work queue after 3 acks = %+v", info.State)
		}
		_, err = js.AddConsumer("JOBS", &nats.ConsumerConfig{Durable: "w2", AckPolicy: nats.AckExplicitPolicy})
		if code := apiCode(err); code != 10099 {
			t.Errorf("second overlapping work queue consumer: %v (code %d), want 10099", err, code)
		}

		if _, err := js.AddStream(&nats.StreamConfig{Name: "LIM", Subjects: []string{"lim"}, MaxMsgs: 2, Discard: nats.DiscardNew}); err != nil {
			t.Fatal(err)
		}
		publish(t, js, "lim", "1")
		publish(t, js, "lim", "2")
		if _, err := js.Publish("lim", []byte("3")); apiCode(err) != 10077 {
			t.Errorf("publish over max_msgs with discard new: %v, want code 10077", err)
		}
		if _, err := js.AddStream(&nats.StreamConfig{Name: "PER", Subjects: []string{"per.*"}, MaxMsgsPerSubject: 1}); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"per.a", "per.b", "per.a", "per.c"} {
			publish(t, js, s, s)
		}
		info, err := js.StreamInfo("PER", &nats.StreamInfoRequest{SubjectsFilter: "per.*"})
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 3 || len(info.State.Subjects) != 3 || info.State.Subjects["per.a"] != 1 {
			t.Errorf("per-subject limit state = %+v", info.State)
		}
	})
}

func TestJetStreamRestartKeepsState(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartJetStreamServer(t, kind)
		nc := Connect(t, s.URL(), nats.NoReconnect())
		js, err := nc.JetStream(nats.MaxWait(3 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		addOrders(t, js, nats.StreamConfig{})
		for i := 0; i < 5; i++ {
			publish(t, js, "orders.x", strconv.Itoa(i), nats.MsgId(fmt.Sprintf("m%d", i)))
		}
		sub, err := js.PullSubscribe("orders.>", "keep")
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := sub.Fetch(2, nats.MaxWait(2*time.Second))
		if err != nil || len(msgs) != 2 {
			t.Fatalf("Fetch = %d, %v", len(msgs), err)
		}
		for _, m := range msgs {
			m.AckSync()
		}
		kv, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: "state", History: 3})
		if err != nil {
			t.Fatal(err)
		}
		kv.Put("k", []byte("v1"))
		kv.Put("k", []byte("v2"))
		obs, err := js.CreateObjectStore(&nats.ObjectStoreConfig{Bucket: "blobs"})
		if err != nil {
			t.Fatal(err)
		}
		blob := make([]byte, 300*1024)
		rand.Read(blob)
		if _, err := obs.PutBytes("blob", blob); err != nil {
			t.Fatal(err)
		}
		nc.Close()

		s.Stop()
		s.Start()
		nc = Connect(t, s.URL(), nats.NoReconnect())
		js, _ = nc.JetStream(nats.MaxWait(3 * time.Second))
		if info := streamInfo(t, js, "ORDERS"); info.State.Msgs != 5 || info.State.LastSeq != 5 {
			t.Errorf("stream after restart = %+v", info.State)
		}
		if ack := publish(t, js, "orders.x", "again", nats.MsgId("m4")); ack.Sequence != 5 || !ack.Duplicate {
			t.Errorf("dedup after restart: %+v", ack)
		}
		ci, err := js.ConsumerInfo("ORDERS", "keep")
		if err != nil || ci.AckFloor.Stream != 2 || ci.NumPending != 3 {
			t.Fatalf("consumer after restart = %+v, %v", ci, err)
		}
		sub, err = js.PullSubscribe("orders.>", "keep")
		if err != nil {
			t.Fatal(err)
		}
		msgs, err = sub.Fetch(3, nats.MaxWait(2*time.Second))
		if err != nil || len(msgs) != 3 || string(msgs[0].Data) != "2" {
			t.Errorf("Fetch after restart = %d msgs, %v", len(msgs), err)
		}
		kv, err = js.KeyValue("state")
		if err != nil {
			t.Fatal(err)
		}
		if e, err := kv.Get("k"); err != nil || string(e.Value()) != "v2" || e.Revision() != 2 {
			t.Errorf("KV after restart = %v, %v", e, err)
		}
		obs, err = js.ObjectStore("blobs")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := obs.GetBytes("blob"); err != nil || !bytes.Equal(got, blob) {
			t.Errorf("object after restart: %d bytes, %v", len(got), err)
		}
	})
}

func TestJetStreamKeyValueWatchHistoryAndObjectWatch(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		kv, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: "hist", History: 10})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			kv.Put("k", []byte(strconv.Itoa(i)))
		}
		w, err := kv.Watch("k", nats.IncludeHistory())
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		for i := 0; i < 3; i++ {
			e := Wait(t, w.Updates(), 2*time.Second, "history entry")
			if e == nil || string(e.Value()) != strconv.Itoa(i) || e.Delta() != uint64(2-i) {
				t.Fatalf("history entry %d = %v", i, e)
			}
		}
		if e := Wait(t, w.Updates(), 2*time.Second, "nil marker"); e != nil {
			t.Fatalf("want nil marker, got %v", e)
		}
		keys := make([]string, 0)
		for name := range js.KeyValueStoreNames() {
			keys = append(keys, name)
		}
		// nats.go 1.22.1 lists the backing stream's name.
		if len(keys) != 1 || keys[0] != "KV_hist" {
			t.Errorf("KeyValueStoreNames = %v", keys)
		}

		obs, err := js.CreateObjectStore(&nats.ObjectStoreConfig{Bucket: "watched"})
		if err != nil {
			t.Fatal(err)
		}
		ow, err := obs.Watch()
		if err != nil {
			t.Fatal(err)
		}
		defer ow.Stop()
		if i := Wait(t, ow.Updates(), 2*time.Second, "object nil marker"); i != nil {
			t.Fatalf("want nil marker, got %+v", i)
		}
		obs.PutString("o", "data")
		if i := Wait(t, ow.Updates(), 2*time.Second, "object update"); i == nil || i.Name != "o" || i.Size != 4 {
			t.Errorf("object update = %+v", i)
		}
	})
}

// A mirror copies its origin with the origin's sequences, a source copies what its filter takes
// under new sequences, both follow new messages and report themselves in stream info; a stream
// with republish publishes each stored message again with where it is stored.
func TestJetStreamMirrorSourceAndRePublish(t *testing.T) {
	EachJetStream(t, func(t *testing.T, nc *nats.Conn, js nats.JetStreamContext) {
		republished, err := nc.SubscribeSync("copies.>")
		if err != nil {
			t.Fatal(err)
		}
		addOrders(t, js, nats.StreamConfig{
			RePublish: &nats.RePublish{Destination: "copies.>"},
		})
		for i := 1; i <= 3; i++ {
			publish(t, js, fmt.Sprintf("orders.%d", i), strconv.Itoa(i))
		}
		for i := 1; i <= 3; i++ {
			m, err := republished.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("republished message %d: %v", i, err)
			}
			if m.Subject != fmt.Sprintf("copies.orders.%d", i) || string(m.Data) != strconv.Itoa(i) ||
				m.Header.Get("Nats-Stream") != "ORDERS" || m.Header.Get("Nats-Sequence") != strconv.Itoa(i) ||
				m.Header.Get("Nats-Last-Sequence") != "0" {
				t.Errorf("republished %s %q %v", m.Subject, m.Data, m.Header)
			}
		}
		if _, err := js.AddStream(&nats.StreamConfig{
			Name: "MIRROR", Mirror: &nats.StreamSource{Name: "ORDERS"},
		}); err != nil {
			t.Fatalf("AddStream mirror: %v", err)
		}
		if _, err := js.AddStream(&nats.StreamConfig{
			Name:    "PICKED",
			Sources: []*nats.StreamSource{{Name: "ORDERS", FilterSubject: "orders.2"}},
		}); err != nil {
			t.Fatalf("AddStream sources: %v", err)
		}
		holds := func(name string, want uint64) {
			t.Helper()
			eventually(t, fmt.Sprintf("%s holding %d messages", name, want), func() error {
				info, err := js.StreamInfo(name)
				if err != nil {
					return err
				}
				if info.State.Msgs != want {
					return fmt.Errorf("%d messages", info.State.Msgs)
				}
				return nil
			})
		}
		holds("MIRROR", 3)
		holds("PICKED", 1)
		publish(t, js, "orders.2", "again")
		holds("MIRROR", 4)
		holds("PICKED", 2)

		original, err := js.GetMsg("ORDERS", 4)
		if err != nil {
			t.Fatal(err)
		}
		copied, err := js.GetMsg("MIRROR", 4)
		if err != nil {
			t.Fatal(err)
		}
		if copied.Subject != original.Subject || !copied.Time.Equal(original.Time) ||
			string(copied.Data) != "again" {
			t.Errorf("mirrored %+v, origin %+v", copied, original)
		}
		picked, err := js.GetMsg("PICKED", 2)
		if err != nil {
			t.Fatal(err)
		}
		if picked.Subject != "orders.2" || string(picked.Data) != "again" ||
			picked.Header.Get("Nats-Stream-Source") == "" {
			t.Errorf("sourced %+v", picked)
		}
		mirror := streamInfo(t, js, "MIRROR")
		if mirror.Mirror == nil || mirror.Mirror.Name != "ORDERS" || mirror.Config.Mirror == nil {
			t.Errorf("mirror info %+v", mirror)
		}
		sourced := streamInfo(t, js, "PICKED")
		if len(sourced.Sources) != 1 || sourced.Sources[0].Name != "ORDERS" {
			t.Errorf("sources info %+v", sourced.Sources)
		}
		// A mirror takes no subjects.
		_, err = js.AddStream(&nats.StreamConfig{
			Name: "BAD", Subjects: []string{"bad"}, Mirror: &nats.StreamSource{Name: "ORDERS"},
		})
		if apiCode(err) != 10034 {
			t.Errorf("mirror with subjects: %v", err)
		}
	})
}
