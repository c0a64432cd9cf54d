package natsgo

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// A three-node cluster as a nats.go user sees it: connections made while the nodes find each
// other, servers discovered from INFO, failover to another node, and an R3 stream used through
// three different nodes. Each test starts three servers of its kind with nats-server's
// command-line cluster flags, each with JetStream and its own store.

// clusterWait bounds how long a test waits for the cluster to form or to elect a leader.
const clusterWait = 20 * time.Second

// clusterArgs are the flags of node i (from 0) of a cluster whose nodes listen for routes on
// ports.
func clusterArgs(t *testing.T, i int, ports []int) []string {
	routes := make([]string, len(ports))
	for j, p := range ports {
		routes[j] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	return []string{
		"-js", "-sd", t.TempDir(),
		"--server_name", fmt.Sprintf("n%d", i+1),
		"--cluster_name", "goc",
		"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", ports[i]),
		"--routes", strings.Join(routes, ","),
	}
}

// StartCluster starts three clustered JetStream servers of kind, one after another.
func StartCluster(t *testing.T, kind string) []*Server {
	t.Helper()
	ports := []int{freePort(t), freePort(t), freePort(t)}
	servers := make([]*Server, len(ports))
	for i := range ports {
		servers[i] = StartServer(t, kind, clusterArgs(t, i, ports)...)
	}
	return servers
}

// eventually retries attempt every 250 ms until it succeeds or clusterWait passes.
func eventually(t *testing.T, what string, attempt func() error) {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		err := attempt()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, clusterWait, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Clients keep connecting to the first node while the other two join it: every connection
// completes its handshake (nats.go fails one whose PONG is preceded by the INFO announcing a
// new node; the race is narrow here, and cluster_core.rs in natrix-server pins the order with a
// raw connection), and a connection made afterwards knows all three nodes.
func TestClusterConnectionsWhileNodesJoinAndDiscovery(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		ports := []int{freePort(t), freePort(t), freePort(t)}
		first := StartServer(t, kind, clusterArgs(t, 0, ports)...)

		var connected, failed atomic.Int64
		var firstErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					nc, err := nats.Connect(first.URL(), nats.Timeout(2*time.Second), nats.NoReconnect())
					if err == nil {
						err = nc.Flush()
						nc.Close()
					}
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					connected.Add(1)
				}
			}()
		}
		StartServer(t, kind, clusterArgs(t, 1, ports)...)
		StartServer(t, kind, clusterArgs(t, 2, ports)...)
		time.Sleep(500 * time.Millisecond)
		close(stop)
		wg.Wait()
		if failed.Load() != 0 {
			t.Fatalf("%d of %d connections failed while nodes joined, first: %v",
				failed.Load(), failed.Load()+connected.Load(), firstErr.Load())
		}
		if connected.Load() == 0 {
			t.Fatal("no connection was made while nodes joined")
		}

		nc := Connect(t, first.URL(), nats.NoReconnect())
		eventually(t, "discovering the other nodes", func() error {
			if got := len(nc.DiscoveredServers()); got < 2 {
				return fmt.Errorf("%d servers discovered: %v", got, nc.DiscoveredServers())
			}
			return nil
		})
		if got := nc.ConnectedClusterName(); got != "goc" {
			t.Errorf("ConnectedClusterName = %q", got)
		}
	})
}

// A client that knows only one node moves to another when that node stops, and its
// subscription works there.
func TestClusterClientFailsOverToAnotherNode(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		servers := StartCluster(t, kind)
		reconnected := make(chan struct{}, 4)
		nc := Connect(t, servers[0].URL(),
			nats.ReconnectWait(100*time.Millisecond),
			nats.MaxReconnects(-1),
			nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
		eventually(t, "discovering the other nodes", func() error {
			if got := len(nc.DiscoveredServers()); got < 2 {
				return fmt.Errorf("%d servers discovered", got)
			}
			return nil
		})
		sub, err := nc.SubscribeSync("after.failover")
		if err != nil {
			t.Fatal(err)
		}
		nc.Flush()

		servers[0].Stop()
		Wait(t, reconnected, 10*time.Second, "reconnecting to another node")
		if url := nc.ConnectedUrl(); url == servers[0].URL() {
			t.Fatalf("still connected to the stopped node %s", url)
		}
		other := Connect(t, servers[1].URL(), nats.NoReconnect())
		// The resubscription reaches the node the client chose, then the others: publish until
		// the first message arrives.
		eventually(t, "delivery after failover", func() error {
			if err := other.Publish("after.failover", []byte("moved")); err != nil {
				return err
			}
			other.Flush()
			msg, err := sub.NextMsg(200 * time.Millisecond)
			if err != nil {
				return err
			}
			if string(msg.Data) != "moved" {
				return fmt.Errorf("got %q", msg.Data)
			}
			return nil
		})
	})
}

// An R3 stream created through one node, published to through a second and consumed through
// the third: every PubAck in order, the stream info's cluster block, and a durable pull
// consumer whose acks every node agrees on.
func TestClusterR3StreamUsedThroughThreeNodes(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		servers := StartCluster(t, kind)
		contexts := make([]nats.JetStreamContext, len(servers))
		for i, s := range servers {
			js, err := Connect(t, s.URL(), nats.NoReconnect()).JetStream(nats.MaxWait(5 * time.Second))
			if err != nil {
				t.Fatal(err)
			}
			contexts[i] = js
		}
		cfg := &nats.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Replicas: 3}
		eventually(t, "creating an R3 stream", func() error {
			_, err := contexts[0].AddStream(cfg)
			return err
		})
		// The other nodes take the new stream's subjects a moment after the create returns (on
		// either server): until then a publish there has no responders, so nothing was stored
		// and it can be sent again. Any other failure is not retried (it could be stored).
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := contexts[1].Publish("orders.new", []byte("0"))
			if err == nil {
				break
			}
			if !errors.Is(err, nats.ErrNoStreamResponse) || time.Now().After(deadline) {
				t.Fatalf("first Publish through another node: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for i := 1; i < 50; i++ {
			ack := publish(t, contexts[1], "orders.new", fmt.Sprint(i))
			if ack.Stream != "ORDERS" || ack.Sequence != uint64(i+1) {
				t.Fatalf("PubAck %d = %+v", i, ack)
			}
		}
		info := streamInfo(t, contexts[1], "ORDERS")
		if info.State.Msgs != 50 {
			t.Errorf("State.Msgs = %d", info.State.Msgs)
		}
		if info.Cluster == nil || info.Cluster.Name != "goc" || len(info.Cluster.Replicas) != 2 {
			t.Fatalf("Cluster = %+v", info.Cluster)
		}
		if l := info.Cluster.Leader; l != "n1" && l != "n2" && l != "n3" {
			t.Errorf("Cluster.Leader = %q", l)
		}

		sub, err := contexts[2].PullSubscribe("orders.>", "worker", nats.BindStream("ORDERS"))
		if err != nil {
			t.Fatalf("PullSubscribe: %v", err)
		}
		var got []string
		for len(got) < 50 {
			msgs, err := sub.Fetch(20, nats.MaxWait(5*time.Second))
			if err != nil {
				t.Fatalf("Fetch after %d messages: %v", len(got), err)
			}
			for _, m := range msgs {
				if err := m.AckSync(); err != nil {
					t.Fatalf("AckSync: %v", err)
				}
				got = append(got, string(m.Data))
			}
		}
		for i, data := range got {
			if data != fmt.Sprint(i) {
				t.Fatalf("message %d = %q (all: %v)", i, data, got)
			}
		}
		ci, err := contexts[0].ConsumerInfo("ORDERS", "worker")
		if err != nil {
			t.Fatalf("ConsumerInfo: %v", err)
		}
		if ci.NumPending != 0 || ci.NumAckPending != 0 || ci.AckFloor.Stream != 50 {
			t.Errorf("ConsumerInfo: pending %d, ack pending %d, ack floor %d",
				ci.NumPending, ci.NumAckPending, ci.AckFloor.Stream)
		}
	})
}
