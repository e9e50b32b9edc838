// Manifests of the add-ons a managed cluster ships and the sandbox installs as they are published:
// the CSI snapshot CRDs (snapshot.storage.k8s.io/v1) from the external-snapshotter's client module.
// Nothing is built from it; the sandbox reads config/crd/ from the downloaded module.
module sovereign.dev/controlplane/addons

go 1.26.0

require github.com/kubernetes-csi/external-snapshotter/client/v8 v8.6.0
