//go:build tools

// Pins kube-apiserver for the e2e tests: k8s.io/kubernetes at a release, and in go.mod every
// k8s.io staging module it needs replaced by the matching v0.Y.Z (k8s.io/kubernetes itself
// requires them at v0.0.0). scripts/install-e2e-tools.sh builds
// k8s.io/kubernetes/cmd/kube-apiserver from this module.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
