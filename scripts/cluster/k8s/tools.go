//go:build tools

// Package k8sbin pins the Kubernetes control-plane commands we build from Go
// modules (k8s.io/kubernetes cannot be `go install`ed: its staging modules are
// replace directives, which go.mod here maps to their published releases).
package k8sbin

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
