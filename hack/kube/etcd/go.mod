// Builds etcd for the tests' control plane (scripts/install-kube.sh): the
// version k8s.io/kubernetes v1.37.2's go.mod names for go.etcd.io/etcd/client/v3.
module fusionhook.dev/hack/kube/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v3.7.0
