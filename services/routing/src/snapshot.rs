//! The classifier and the directory as the resolver reads them: versioned snapshots, kept in
//! the shared cache (Redis) and in this process.
//!
//! Each scope has a version in the database, bumped in the same transaction as every change.
//! A reader first reads the versions (one small query), then takes the snapshot of exactly
//! those versions: from this process when it has it, else from the cache under a key that
//! carries the version, else from the store (and puts it into the cache). A change is therefore
//! visible to every instance as soon as it commits, with no invalidation message to lose, and
//! a reader that loaded an old tree can only ever write it under the old key, which nobody
//! reads any more (docs/adr/0003-routing-resolution.md).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pos_platform::cache::Cache;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::AnyConnection;

use crate::model::{Classifier, ClassifierData, Directory, DirectoryData, Scope};
use crate::store;

/// Both snapshots, of one moment.
#[derive(Clone)]
pub struct Snapshot {
    pub classifier: Arc<Classifier>,
    pub directory: Arc<Directory>,
}

pub struct Snapshots {
    cache: Arc<dyn Cache>,
    ttl: Duration,
    classifier: Mutex<Option<Arc<Classifier>>>,
    directory: Mutex<Option<Arc<Directory>>>,
}

/// The cache key of a scope's snapshot at `version`.
pub fn cache_key(scope: Scope, version: i64) -> String {
    format!("routing:{}:{version}", scope.as_str())
}

fn remembered<T>(slot: &Mutex<Option<Arc<T>>>) -> Option<Arc<T>> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn remember<T>(slot: &Mutex<Option<Arc<T>>>, value: Arc<T>) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
}

impl Snapshots {
    pub fn new(cache: Arc<dyn Cache>, ttl: Duration) -> Snapshots {
        Snapshots { cache, ttl, classifier: Mutex::new(None), directory: Mutex::new(None) }
    }

    /// The current snapshots. `conn` may be inside a transaction: the consumer reads them in
    /// the transaction that records its decision, so that it needs no second connection.
    pub async fn current(&self, conn: &mut AnyConnection) -> Result<Snapshot, sqlx::Error> {
        let (classifier_version, directory_version) = store::versions(conn).await?;
        let classifier = match remembered(&self.classifier).filter(|c| c.version() == classifier_version) {
            Some(classifier) => classifier,
            None => {
                let key = cache_key(Scope::Classifier, classifier_version);
                let data = match self.cached::<ClassifierData>(&key).await {
                    Some(data) => data,
                    None => {
                        let data = store::load_classifier(conn, classifier_version).await?;
                        self.put(&key, &data).await;
                        data
                    }
                };
                let classifier = Arc::new(Classifier::new(data));
                remember(&self.classifier, classifier.clone());
                classifier
            }
        };
        let directory = match remembered(&self.directory).filter(|d| d.version() == directory_version) {
            Some(directory) => directory,
            None => {
                let key = cache_key(Scope::Directory, directory_version);
                let data = match self.cached::<DirectoryData>(&key).await {
                    Some(data) => data,
                    None => {
                        let data = store::load_directory(conn, directory_version).await?;
                        self.put(&key, &data).await;
                        data
                    }
                };
                let directory = Arc::new(Directory::new(data));
                remember(&self.directory, directory.clone());
                directory
            }
        };
        Ok(Snapshot { classifier, directory })
    }

    /// The snapshot under `key`, if the cache has a readable one. A cache that fails is only
    /// logged: the store is the truth.
    async fn cached<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        match self.cache.get(key).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<T>(&bytes) {
                Ok(data) => Some(data),
                Err(error) => {
                    tracing::warn!(%key, %error, "cached routing snapshot is unreadable, reloading");
                    None
                }
            },
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%key, %error, "cache unavailable, reading the routing snapshot from the store");
                None
            }
        }
    }

    async fn put<T: Serialize>(&self, key: &str, data: &T) {
        match serde_json::to_vec(data) {
            Ok(bytes) => match self.cache.set(key, &bytes, self.ttl).await {
                Ok(()) => tracing::debug!(%key, bytes = bytes.len(), "routing snapshot cached"),
                Err(error) => tracing::warn!(%key, %error, "routing snapshot not cached"),
            },
            Err(error) => tracing::warn!(%key, %error, "routing snapshot not serializable"),
        }
    }
}
