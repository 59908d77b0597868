//go:build tools

// Package etcdbin pins etcd's server (its release tags keep replace directives,
// so it cannot be `go install`ed; building it through this module can).
package etcdbin

import _ "go.etcd.io/etcd/server/v3"
