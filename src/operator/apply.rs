//! How the operator writes objects: server-side apply with its single field manager, and
//! create-once for generated secrets (read back with [`secret_text`]).

use std::fmt::Debug;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{Result, StoredError};
use super::names::FIELD_MANAGER;
use crate::crd::Broker;

/// Applies a namespaced object built by a builder (which set its name and namespace), forcing
/// ownership of the fields it sets: the operator is their only rightful writer.
pub async fn apply<K>(client: &Client, object: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api
        .patch(&object.name_any(), &params, &Patch::Apply(object))
        .await?)
}

/// The Secret `name` of `broker`, created from `build()` when missing and never overwritten:
/// for generated key material (signing keys, passwords) that must stay what it was first made.
/// `build` runs only when the Secret is missing; of two racing creates the first stands, and
/// both callers get it.
///
/// A Secret of that name owned by an earlier Broker of the same name (deleted and created
/// again) is that Broker's leftover, not this one's: the garbage collector deletes it soon,
/// and a pass of the earlier Broker that was still running can even write it after the
/// Broker went. It is deleted (if it is still that very Secret) and made anew, so a re-created
/// Broker never takes over its predecessor's keys.
pub async fn create_once(
    client: &Client,
    broker: &Broker,
    name: &str,
    build: impl FnOnce() -> Secret,
) -> Result<Secret> {
    let api = Api::<Secret>::namespaced(client.clone(), &broker.namespace().unwrap_or_default());
    if let Some(existing) = api.get_opt(name).await? {
        if !owned_by_another_broker(&existing, broker) {
            return Ok(existing);
        }
        let leftover = Preconditions {
            uid: existing.uid(),
            ..Preconditions::default()
        };
        let params = DeleteParams::default().preconditions(leftover);
        match api.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let created = match api.create(&PostParams::default(), &build()).await {
        Ok(created) => created,
        Err(kube::Error::Api(status)) if status.code == 409 => api.get(name).await?,
        Err(e) => return Err(e.into()),
    };
    match owned_by_another_broker(&created, broker) {
        false => Ok(created),
        true => Err(StoredError::Leftover(format!("the Secret {name}")).into()),
    }
}

/// Whether `secret` names a Broker other than `broker` (an earlier one of the same name) as its
/// owner.
fn owned_by_another_broker(secret: &Secret, broker: &Broker) -> bool {
    let uid = broker.uid().unwrap_or_default();
    secret
        .owner_references()
        .iter()
        .any(|owner| owner.kind == Broker::kind(&()) && owner.uid != uid)
}

/// The text under `key` of a Secret the operator wrote (generated keys, passwords).
pub fn secret_text(secret: &Secret, key: &str) -> Result<String, StoredError> {
    let object = || format!("Secret {}", secret.name_any());
    let bytes = secret.data.as_ref().and_then(|d| d.get(key));
    let bytes = bytes.ok_or_else(|| StoredError::MissingKey {
        object: object(),
        key: key.to_owned(),
    })?;
    String::from_utf8(bytes.0.clone()).map_err(|_| StoredError::NotUtf8 {
        object: object(),
        key: key.to_owned(),
    })
}
