package natsgo

import (
	"testing"

	"github.com/nats-io/nats.go"
)

func TestPublishedMessageReachesAsyncSubscriber(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		nc := Connect(t, s.URL())
		ch := make(chan *nats.Msg, 1)
		if _, err := nc.Subscribe("greet.joe", func(m *nats.Msg) { ch <- m }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("greet.joe", []byte("hi")); err != nil {
			t.Fatal(err)
		}
		m := Receive(t, ch)
		if m.Subject != "greet.joe" || string(m.Data) != "hi" {
			t.Fatalf("got %q %q", m.Subject, m.Data)
		}
	})
}
