//go:build tools

// Pins the node's Kubernetes components for tests/node: the same k8s.io/kubernetes release and
// staging-module replacements as tests/e2e/apiserver (which builds kube-apiserver), so the whole
// cluster is one version. scripts/install-node-tools.sh builds the four commands from this module.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
