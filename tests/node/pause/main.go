// The pod sandbox's process for tests/node (the image registry.k8s.io/pause would be pulled from
// a registry; nothing here reaches one): holds the pod's namespaces, reaps orphans, and exits
// on SIGTERM or SIGINT. scripts/install-node-tools.sh builds it as a static binary.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
