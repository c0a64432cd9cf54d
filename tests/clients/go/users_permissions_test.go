package natsgo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// An NKey user with a fixed seed, so that the configuration can name its public key.
const (
	userSeed   = "SUAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4H776Y"
	userPublic = "UAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RLKK"
	// bcrypt of "s3cret" at cost 4.
	s3cretBcrypt = "$2b$04$xaBmIBJnThhjuylTwyw4F.1cryKdT0kzLF/dc.PyqdD90eixfkoeW"
)

func usersConfig(t *testing.T, extra ...string) string {
	lines := append(extra,
		"authorization {",
		"  users: [",
		`    { user: alice, password: "`+s3cretBcrypt+`" }`,
		`    { user: bob, password: pw, permissions: { publish: { allow: ["foo.>"], deny: "foo.secret" }, subscribe: { allow: ["foo.*", "_INBOX.>"], deny: "foo.bar" } } }`,
		`    { nkey: `+userPublic+`, permissions: { publish: "nk.>", subscribe: "nk.>" } }`,
		"  ]",
		"}",
	)
	return WriteConfig(t, lines...)
}

func TestUsersWithBcryptAndNkeys(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind, "-c", usersConfig(t))
		Connect(t, s.URL(), nats.UserInfo("alice", "s3cret")).Close()
		for name, opts := range map[string][]nats.Option{
			"wrong password":   {nats.UserInfo("alice", "nope")},
			"hash as password": {nats.UserInfo("alice", s3cretBcrypt)},
			"unknown user":     {nats.UserInfo("mallory", "pw")},
			"no credentials":   nil,
		} {
			nc, err := nats.Connect(s.URL(), append(opts, nats.Timeout(2*time.Second))...)
			if !errors.Is(err, nats.ErrAuthorization) {
				if nc != nil {
					nc.Close()
				}
				t.Errorf("%s: Connect = %v, want ErrAuthorization", name, err)
			}
		}
		seed := filepath.Join(t.TempDir(), "user.nk")
		if err := os.WriteFile(seed, []byte(userSeed), 0o600); err != nil {
			t.Fatal(err)
		}
		opt, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		nc := Connect(t, s.URL(), opt)
		ch := make(chan *nats.Msg, 1)
		if _, err := nc.ChanSubscribe("nk.echo", ch); err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("nk.echo", []byte("signed")); err != nil {
			t.Fatal(err)
		}
		if got := string(Receive(t, ch).Data); got != "signed" {
			t.Errorf("got %q", got)
		}
	})
}

func TestPermissionViolationsKeepTheConnection(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind, "-c", usersConfig(t))
		errs := make(chan error, 4)
		nc := Connect(t, s.URL(), nats.UserInfo("bob", "pw"),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
		if err := nc.Publish("foo.secret", []byte("x")); err != nil {
			t.Fatal(err)
		}
		err := Wait(t, errs, 2*time.Second, "publish violation")
		if !strings.Contains(strings.ToLower(err.Error()), `permissions violation for publish to "foo.secret"`) {
			t.Errorf("publish violation = %v", err)
		}
		if _, err := nc.SubscribeSync("foo.bar"); err != nil {
			t.Fatal(err)
		}
		err = Wait(t, errs, 2*time.Second, "subscription violation")
		if !strings.Contains(strings.ToLower(err.Error()), `permissions violation for subscription to "foo.bar"`) {
			t.Errorf("subscription violation = %v", err)
		}
		ch := make(chan *nats.Msg, 2)
		if _, err := nc.ChanSubscribe("foo.*", ch); err != nil {
			t.Fatal(err)
		}
		for _, subject := range []string{"foo.bar", "foo.baz"} {
			if err := nc.Publish(subject, []byte(subject)); err != nil {
				t.Fatal(err)
			}
		}
		if got := Receive(t, ch).Subject; got != "foo.baz" {
			t.Errorf("wildcard subscription got %q; foo.bar is denied", got)
		}
		if !nc.IsConnected() {
			t.Error("a permissions violation closed the connection")
		}
	})
}

func TestNoAuthUser(t *testing.T) {
	EachKind(t, func(t *testing.T, kind string) {
		s := StartServer(t, kind, "-c", usersConfig(t, "no_auth_user: bob"))
		nc := Connect(t, s.URL())
		if nc.AuthRequired() {
			t.Error("INFO says auth_required although no_auth_user admits anyone")
		}
		ch := make(chan *nats.Msg, 1)
		if _, err := nc.ChanSubscribe("foo.a", ch); err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("foo.a", []byte("as bob")); err != nil {
			t.Fatal(err)
		}
		Receive(t, ch)
		if _, err := nats.Connect(s.URL(), nats.UserInfo("bob", "wrong"), nats.Timeout(2*time.Second)); !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("wrong password with no_auth_user: %v", err)
		}
	})
}
