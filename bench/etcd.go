package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/lockdir/dlock/etcdlock"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startEtcd starts a single-member etcd in this process, on 127.0.0.1
// ports picked now, with its data in a fresh temporary directory, and
// returns its client URL and a function that stops it and removes the
// data. It is tuned for speed, not durability: no fsync.
func startEtcd() (endpoint string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "dlockbench-etcd-")
	if err != nil {
		return "", nil, err
	}
	cp, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	pp, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", cp)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", pp)}
	cfg := embed.NewConfig()
	cfg.Name = "bench"
	cfg.Dir = filepath.Join(dir, "data")
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = "bench=" + peer.String()
	cfg.InitialClusterToken = "dlockbench"
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true // benchmark data: speed over durability
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("starting etcd: %w", err)
	}
	stop = func() {
		e.Close()
		os.RemoveAll(dir)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		stop()
		return "", nil, fmt.Errorf("etcd: %w", err)
	case <-time.After(60 * time.Second):
		stop()
		return "", nil, errors.New("etcd did not become ready within 60s")
	}
	return client.String(), stop, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// etcdLocker is an etcdlock.Lock with the client it owns.
type etcdLocker struct {
	l      *etcdlock.Lock
	client *clientv3.Client
}

// newEtcdLocker connects to the etcd at endpoint and returns a lock whose
// key is named after path (unique to the run, like the other locks).
func newEtcdLocker(endpoint, path string) (*etcdLocker, error) {
	if endpoint == "" {
		return nil, errors.New("etcd: no endpoint")
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	l, err := etcdlock.New(c, "/dlockbench"+filepath.ToSlash(path))
	if err != nil {
		c.Close()
		return nil, err
	}
	return &etcdLocker{l, c}, nil
}

func (l *etcdLocker) Lock(ctx context.Context) error { return l.l.Lock(ctx) }
func (l *etcdLocker) Unlock() error                  { return l.l.Unlock() }
func (l *etcdLocker) Close() error                   { return l.client.Close() }
