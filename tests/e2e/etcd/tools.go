//go:build tools

// Pins the etcd server (its module root is the etcd main package) for the e2e tests;
// scripts/install-e2e-tools.sh builds it with `go build go.etcd.io/etcd/server/v3`.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
