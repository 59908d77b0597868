//go:build tools

// Package kwokbin pins kwok, which simulates nodes and makes pods on them
// Running/Ready without containers.
package kwokbin

import _ "sigs.k8s.io/kwok/cmd/kwok"
