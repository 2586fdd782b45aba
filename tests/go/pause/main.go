// pause stands in for the kubelet's pod sandbox process (registry.k8s.io/pause)
// in the CRI test bed's local image: it blocks until SIGTERM or SIGINT and
// exits 0. Its process name (comm) is "pause", which is how headroom tells a
// pod's sandbox from its containers.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
