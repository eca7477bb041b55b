package etcdlock_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/lockdir/dlock/etcdlock"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func Example() {
	// etcdEndpoint is "127.0.0.1:2379" or wherever your etcd listens.
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{etcdEndpoint},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	lock, err := etcdlock.New(client, "/locks/nightly-report",
		etcdlock.WithTimeout(10*time.Second), // lease TTL: a dead holder frees the lock after this
		etcdlock.WithPatience(time.Minute))   // give up (dlock.ErrBusy) after waiting this long
	if err != nil {
		log.Fatal(err)
	}
	err = lock.Do(context.Background(), func(ctx context.Context) error {
		// Only one process at a time gets here. ctx is cancelled if the
		// lock is lost; hand lock.Fence() to the resource you protect.
		fmt.Println("holding", lock.Key(), "fence > 0:", lock.Fence() > 0)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output: holding /locks/nightly-report fence > 0: true
}
