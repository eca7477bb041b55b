// Command dlock-backend-etcd keeps the lock of an etcd:// PATH for "dlock
// run" and "dlock hold", which start it and talk to it over stdin and
// stdout (the protocol of dlock's internal/backendproto). Install it next
// to dlock or on PATH:
//
//	go install github.com/lockdir/dlock/etcdlock/cmd/dlock-backend-etcd@latest
//
// The URL names the cluster's client endpoints (plain http, comma
// separated), an optional user and password, and the lock's key, its
// path with the leading "/":
//
//	dlock run etcd://10.0.0.1:2379,10.0.0.2:2379/locks/migrate -- ./migrate up
//
// The lock is etcdlock's; see its README.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"os"
	"strings"
	"time"

	"github.com/lockdir/dlock"
	"github.com/lockdir/dlock/etcdlock"
	"github.com/lockdir/dlock/internal/backendproto"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	os.Exit(backendproto.Main(open))
}

// lock is etcdlock's Lock with the client it made, closed at the end.
type lock struct {
	dlock.Locker
	client *clientv3.Client
	key    string
}

func (l lock) Close() error { return l.client.Close() }

// Inspect says who holds the lock, for dlock status (the age of the
// holder's last renewal is not known: 0).
func (l lock) Inspect(ctx context.Context) (dlock.Holder, time.Duration, bool, error) {
	h, held, err := etcdlock.Inspect(ctx, l.client, l.key)
	return h, 0, held, err
}

func open(o backendproto.Options, log *slog.Logger) (dlock.Locker, error) {
	cfg, key, err := parseURL(o.URL)
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdlock: %s: %w", backendproto.Redact(o.URL), err)
	}
	opts := []etcdlock.Option{etcdlock.WithTimeout(o.Timeout), etcdlock.WithPatience(o.Patience), etcdlock.WithLogger(log)}
	if o.Margin > 0 {
		opts = append(opts, etcdlock.WithMargin(o.Margin))
	}
	l, err := etcdlock.New(c, key, opts...)
	if err != nil {
		c.Close()
		return nil, err
	}
	return lock{l, c, key}, nil
}

// parseURL reads etcd://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/KEY.
func parseURL(raw string) (clientv3.Config, string, error) {
	u, err := neturl.Parse(raw)
	if err != nil {
		return clientv3.Config{}, "", fmt.Errorf("etcdlock: bad URL %s: %v", backendproto.Redact(raw), err)
	}
	if !strings.EqualFold(u.Scheme, "etcd") {
		return clientv3.Config{}, "", fmt.Errorf("etcdlock: %s is not an etcd:// URL", backendproto.Redact(raw))
	}
	if u.Host == "" {
		return clientv3.Config{}, "", errors.New("etcdlock: the URL names no endpoint: etcd://HOST:2379/KEY")
	}
	if u.Path == "" || u.Path == "/" {
		return clientv3.Config{}, "", fmt.Errorf("etcdlock: %s names no key: etcd://HOST:2379/KEY", backendproto.Redact(raw))
	}
	var eps []string
	for _, h := range strings.Split(u.Host, ",") {
		if !strings.Contains(h, ":") {
			h += ":2379"
		}
		eps = append(eps, "http://"+h)
	}
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	return cfg, u.Path, nil
}
