//! Deletion: finalizers (graceful deletion by `deletionTimestamp`) and the garbage collector's
//! cascade along `metadata.ownerReferences`: background (the owner goes first, then what it
//! owned) or foreground (`propagationPolicy: Foreground`, Argo CD's way: the owner is held by the
//! `foregroundDeletion` finalizer until every dependent that blocks it is gone, so its
//! dependents — a Mailbox's Secret, say — are deleted *before* its own finalizers run).

use serde_json::{json, Value};

use super::store::{finalizers, now, ApiError, ChangeType, Key, Store};

/// The finalizer that holds an owner deleted in the foreground until its dependents are gone.
pub const FOREGROUND: &str = "foregroundDeletion";

impl Store {
    /// DELETE: an object with finalizers only gets a `deletionTimestamp` (once); one without is
    /// removed at once. `options` are DeleteOptions: `preconditions` (`{uid, resourceVersion}`)
    /// and `propagationPolicy`.
    pub fn delete(&mut self, key: &Key, options: &Value) -> Result<Value, ApiError> {
        let preconditions = &options["preconditions"];
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
        let uid = object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if options["propagationPolicy"] == "Foreground" && !self.dependents(&uid).is_empty() {
            return Ok(self.delete_foreground(key, object, &uid));
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
        // An owner deleted in the foreground may have waited for this one.
        for owner in owner_uids(&removed) {
            self.release_foreground(owner);
        }
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

    /// The garbage collector's answer to an object written with owners none of which exists
    /// (any more): it deletes it, as it deletes what an owner leaves behind. A controller
    /// that wrote for an owner just deleted (from a cache that lagged) leaves nothing behind.
    /// Returns `written`, the write's own answer.
    pub fn collect_if_dangling(&mut self, key: &Key, written: Value) -> Value {
        let owners = owner_uids(&written);
        if !owners.is_empty() && owners.iter().all(|owner| !self.exists(owner)) {
            self.delete(key, &Value::Null)
                .expect("the object was just written and has no preconditions");
        }
        written
    }

    /// Foreground deletion: the owner gets its `deletionTimestamp` and the `foregroundDeletion`
    /// finalizer, its dependents are deleted (a dependent another live owner still holds only
    /// loses this owner's reference), and the finalizer goes once no blocking dependent is left.
    fn delete_foreground(&mut self, key: &Key, object: Value, uid: &str) -> Value {
        let mut marked = object.clone();
        let mut held = finalizers(&object);
        if !held.iter().any(|f| f == FOREGROUND) {
            held.push(FOREGROUND.to_owned());
        }
        marked["metadata"]["finalizers"] = json!(held);
        if marked["metadata"].get("deletionTimestamp").is_none() {
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        let marked = self.commit(key, marked, ChangeType::Modified, Some(object));
        for dependent in self.dependents(uid) {
            let Some(current) = self.objects.get(&dependent).cloned() else {
                continue; // already gone with an earlier one
            };
            let other_owner_lives = owner_uids(&current)
                .into_iter()
                .any(|owner| owner != uid && self.exists(owner));
            if other_owner_lives {
                let mut kept = current.clone();
                if let Some(refs) = kept["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"] != uid);
                }
                self.commit(&dependent, kept, ChangeType::Modified, Some(current));
            } else {
                self.delete(&dependent, &Value::Null)
                    .expect("the dependent exists and has no preconditions");
            }
        }
        self.release_foreground(uid);
        self.objects.get(key).cloned().unwrap_or(marked)
    }

    /// Drops the `foregroundDeletion` finalizer of the object `uid` (if it holds one) once no
    /// dependent with `blockOwnerDeletion` is left; the object goes when no finalizer is left.
    fn release_foreground(&mut self, uid: &str) {
        let Some((key, owner)) = self
            .objects
            .iter()
            .find(|(_, o)| o["metadata"]["uid"] == uid)
            .map(|(k, o)| (k.clone(), o.clone()))
        else {
            return;
        };
        let blocked = self.dependents(uid).iter().any(|dependent| {
            self.objects[dependent]["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["uid"] == uid && r["blockOwnerDeletion"] == true)
        });
        let held = finalizers(&owner);
        if blocked || !held.iter().any(|f| f == FOREGROUND) {
            return;
        }
        let rest: Vec<String> = held.into_iter().filter(|f| f != FOREGROUND).collect();
        let mut released = owner.clone();
        released["metadata"]["finalizers"] = json!(rest);
        if rest.is_empty() {
            self.remove(&key, released);
        } else {
            self.commit(&key, released, ChangeType::Modified, Some(owner));
        }
    }

    /// The objects that name `uid` among their owners.
    fn dependents(&self, uid: &str) -> Vec<Key> {
        self.objects
            .iter()
            .filter(|(_, o)| owner_uids(o).contains(&uid))
            .map(|(k, _)| k.clone())
            .collect()
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
