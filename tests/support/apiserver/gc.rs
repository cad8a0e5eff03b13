//! Deletion: finalizers (graceful deletion by `deletionTimestamp`) and the garbage collector's
//! background cascade along `metadata.ownerReferences`.

use serde_json::{json, Value};

use super::store::{finalizers, now, ApiError, ChangeType, Key, Store};

impl Store {
    /// DELETE: an object with finalizers only gets a `deletionTimestamp` (once); one without is
    /// removed at once. `preconditions` are DeleteOptions' `{uid, resourceVersion}`.
    pub fn delete(&mut self, key: &Key, preconditions: &Value) -> Result<Value, ApiError> {
        let object = self
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(key))?;
        for field in ["uid", "resourceVersion"] {
            if let Some(expected) = preconditions[field].as_str() {
                if object["metadata"][field] != expected {
                    return Err(ApiError::conflict(
                        key,
                        &format!("precondition failed: {field} is not {expected}"),
                    ));
                }
            }
        }
        if finalizers(&object).is_empty() {
            return Ok(self.remove(key, object));
        }
        if object["metadata"].get("deletionTimestamp").is_some() {
            return Ok(object);
        }
        let mut marked = object.clone();
        marked["metadata"]["deletionTimestamp"] = json!(now());
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        Ok(self.commit(key, marked, ChangeType::Modified, Some(object)))
    }

    /// Really removes `object` (its last state) and then, as the garbage collector would, deletes
    /// every object all of whose owners are now gone.
    pub fn remove(&mut self, key: &Key, object: Value) -> Value {
        let removed = self.commit(key, object, ChangeType::Deleted, None);
        let Some(uid) = removed["metadata"]["uid"].as_str() else {
            return removed;
        };
        let orphans: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                let owners = owner_uids(o);
                owners.contains(&uid) && owners.iter().all(|owner| !self.exists(owner))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for orphan in orphans {
            // Removing one orphan may already have removed another (a chain): skip those.
            if self.objects.contains_key(&orphan) {
                self.delete(&orphan, &Value::Null)
                    .expect("the orphan exists and has no preconditions");
            }
        }
        removed
    }

    fn exists(&self, uid: &str) -> bool {
        self.objects.values().any(|o| o["metadata"]["uid"] == uid)
    }
}

fn owner_uids(object: &Value) -> Vec<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
        .collect()
}
