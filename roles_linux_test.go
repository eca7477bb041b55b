//go:build linux

package dlock

// linuxRoles are the children's roles that need Linux (see roles).
var linuxRoles = map[string]func() int{
	"chaos-worker":  chaosWorker,                               // chaos_test.go
	"perm":          permChild,                                 // faults_test.go
	"holder":        func() int { return lockChild("holder") }, // hosts_test.go, skew_test.go
	"waiter":        func() int { return lockChild("waiter") },
	"command":       commandChild,
	"command-child": commandGrandchild,
	"handoff":       handoffChild, // hosts_hint_test.go
	// The qemu guests' (qemu_test.go, scripts/qemu-nfs.sh): they need
	// nothing of the test framework, and the guest has no Go toolchain
	// to build them apart.
	"qemu-hold":    func() int { return qemuRole("qemu-hold") },
	"qemu-wait":    func() int { return qemuRole("qemu-wait") },
	"qemu-run":     func() int { return qemuRole("qemu-run") },
	"qemu-counter": func() int { return qemuRole("qemu-counter") },
	"qemu-agent":   func() int { return qemuRole("qemu-agent") }, // qemu_clients_test.go
	"qemu-worker":  func() int { return qemuRole("qemu-worker") },
}
