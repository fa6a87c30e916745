//! The cache port: short-lived shared values (Redis in production, a map in embedded mode).
//! A cache miss is never an error; callers fall back to their store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::AsyncCommands;

use crate::servers_ca::ServersCa;

#[derive(Debug, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct CacheError(String);

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
    /// Atomically increments a counter (created at 0), e.g. a version to invalidate by.
    async fn incr(&self, key: &str) -> Result<i64, CacheError>;
}

/// Redis, through a connection manager that reconnects by itself.
pub struct RedisCache {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

impl RedisCache {
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisCache, CacheError> {
        RedisCache::connect_with_ca(url, prefix, None).await
    }

    /// [`RedisCache::connect`]; a `rediss://` server's certificate is verified against `ca`
    /// (`servers_ca_file`) when given, else against the public web PKI roots.
    pub async fn connect_with_ca(url: &str, prefix: &str, ca: Option<&ServersCa>) -> Result<RedisCache, CacheError> {
        let client = match ca {
            Some(ca) if url.starts_with("rediss://") => {
                let certificates =
                    redis::TlsCertificates { client_tls: None, root_cert: Some(ca.pem().as_bytes().to_vec()) };
                redis::Client::build_with_tls(url, certificates)
            }
            _ => redis::Client::open(url),
        };
        let client = client.map_err(|e| CacheError(e.to_string()))?;
        let connection = redis::aio::ConnectionManager::new(client).await.map_err(|e| match ca {
            Some(ca) if url.starts_with("rediss://") => CacheError(format!("{e} ({})", ca.describe())),
            _ => CacheError(e.to_string()),
        })?;
        Ok(RedisCache { connection, prefix: prefix.to_owned() })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }
}

fn redis_error(error: redis::RedisError) -> CacheError {
    CacheError(error.to_string())
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.connection.clone().get(self.key(key)).await.map_err(redis_error)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let _: () =
            self.connection.clone().set_ex(self.key(key), value, ttl.as_secs().max(1)).await.map_err(redis_error)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let _: () = self.connection.clone().del(self.key(key)).await.map_err(redis_error)?;
        Ok(())
    }

    async fn incr(&self, key: &str) -> Result<i64, CacheError> {
        self.connection.clone().incr(self.key(key), 1).await.map_err(redis_error)
    }
}

/// A cached value and when it expires (never, for counters).
type Entry = (Vec<u8>, Option<Instant>);

/// In-process, for the embedded mode and tests.
#[derive(Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryCache {
    pub fn new() -> MemoryCache {
        MemoryCache::default()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((_, Some(expires))) if *expires <= Instant::now() => {
                entries.remove(key);
                Ok(None)
            }
            Some((value, _)) => Ok(Some(value.clone())),
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Keep the map bounded: drop what has expired whenever it grows large.
        if entries.len() > 100_000 {
            let now = Instant::now();
            entries.retain(|_, (_, expires)| expires.is_none_or(|at| at > now));
        }
        entries.insert(key.to_owned(), (value.to_vec(), Some(Instant::now() + ttl)));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        Ok(())
    }

    async fn incr(&self, key: &str) -> Result<i64, CacheError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(key.to_owned()).or_insert_with(|| (b"0".to_vec(), None));
        let next = std::str::from_utf8(&entry.0).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0) + 1;
        entry.0 = next.to_string().into_bytes();
        Ok(next)
    }
}
