//go:build tools

// Package etcd pins the etcd server scripts/install-kube.sh builds.
package etcd

import _ "go.etcd.io/etcd/server/v3"
