//! A stand-in storage driver for the real control plane, where no CSI
//! driver runs: it provisions a PersistentVolume for each claim of its
//! StorageClasses (a `hostPath` directory, as a local-path provisioner does;
//! pre-bound to the claim, which the persistent-volume binder then binds),
//! and it plays the external resizer: a bound claim that asks for more than
//! its capacity gets it (the volume's `spec.capacity`, then the claim's
//! `status.capacity`), as `csi-resizer` and the kubelet do for a driver that
//! expands volumes online. kube-controller-manager's expand controller
//! leaves such claims to "an external controller": this one.
//!
//! It only touches claims of StorageClasses whose provisioner is
//! [`PROVISIONER`], in the namespace it was started for.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// The provisioner name of the stand-in's StorageClasses.
pub const PROVISIONER: &str = "fusionhook.test/stand-in";

/// The running driver; stops on drop.
pub struct StorageDriver {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StorageDriver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates (or updates) StorageClass `name` of the stand-in, expandable or not.
pub async fn storage_class(client: &Client, name: &str, expandable: bool) -> anyhow::Result<()> {
    let class: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
        "provisioner": PROVISIONER, "allowVolumeExpansion": expandable, "volumeBindingMode": "Immediate", "reclaimPolicy": "Delete",
    }))?;
    let api: Api<StorageClass> = Api::all(client.clone());
    api.patch(name, &PatchParams::apply("fusionhook-tests").force(), &Patch::Apply(&class)).await?;
    Ok(())
}

impl StorageDriver {
    /// Serves the claims of `namespace`, with volumes as folders under `dir`.
    pub fn start(client: Client, namespace: &str, dir: PathBuf) -> Self {
        let namespace = namespace.to_owned();
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = pass(&client, &namespace, &dir).await {
                    eprintln!("stand-in storage driver ({namespace}): {e:#}");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self { task }
    }
}

fn storage(claim: &PersistentVolumeClaim) -> Option<String> {
    let requests = claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    requests.get("storage").map(|q| q.0.clone())
}

fn capacity(claim: &PersistentVolumeClaim) -> Option<String> {
    claim.status.as_ref()?.capacity.as_ref()?.get("storage").map(|q| q.0.clone())
}

/// One look at every claim of the namespace.
async fn pass(client: &Client, namespace: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let ours: BTreeMap<String, StorageClass> = classes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|c| c.provisioner == PROVISIONER)
        .map(|c| (c.name_any(), c))
        .collect();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for claim in claims.list(&ListParams::default()).await?.items {
        let class = claim.spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_default();
        if !ours.contains_key(&class) || claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(wanted) = storage(&claim) else { continue };
        let phase = claim.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        let volume = format!("{namespace}-{}", claim.name_any());
        if phase == "Pending" {
            let path = dir.join(&volume);
            std::fs::create_dir_all(&path)?;
            let pv: PersistentVolume = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
                "spec": {
                    "capacity": {"storage": wanted}, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                    "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": path},
                    "claimRef": {"namespace": namespace, "name": claim.name_any(), "uid": claim.uid()},
                },
            }))?;
            match volumes.create(&PostParams::default(), &pv).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        } else if phase == "Bound" && capacity(&claim).as_deref() != Some(wanted.as_str()) {
            let Some(bound) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()) else { continue };
            let grown = json!({"spec": {"capacity": {"storage": wanted}}});
            volumes.patch(&bound, &PatchParams::default(), &Patch::Merge(&grown)).await?;
            let status = json!({"status": {"capacity": {"storage": wanted}}});
            claims.patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await?;
        }
    }
    Ok(())
}
