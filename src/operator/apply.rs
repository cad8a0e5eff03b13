//! How the operator writes objects: server-side apply with its single field manager, and
//! create-once for generated secrets (read back with [`secret_text`]).

use std::fmt::Debug;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{Result, StoredError};
use super::names::FIELD_MANAGER;

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

/// The Secret `name` in `namespace`, created from `build()` when missing and never
/// overwritten: for generated key material (signing keys, passwords) that must stay what it was
/// first made. `build` runs only when the Secret is missing; of two racing creates the first
/// stands, and both callers get it.
pub async fn create_once(
    client: &Client,
    namespace: &str,
    name: &str,
    build: impl FnOnce() -> Secret,
) -> Result<Secret> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    if let Some(existing) = api.get_opt(name).await? {
        return Ok(existing);
    }
    match api.create(&PostParams::default(), &build()).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(api.get(name).await?),
        Err(e) => Err(e.into()),
    }
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
