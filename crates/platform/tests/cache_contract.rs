//! One contract for the cache port, run against Redis and the in-process cache.

use std::time::Duration;

use pos_platform::cache::{Cache, MemoryCache, RedisCache};
use pos_platform::testing;

async fn redis() -> RedisCache {
    RedisCache::connect(&testing::redis_url(), &testing::unique("cache")).await.expect("local Redis is running")
}

async fn round_trip(cache: &dyn Cache) {
    assert_eq!(cache.get("missing").await.unwrap(), None, "a miss is not an error");
    cache.set("k", b"value", Duration::from_secs(60)).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"value"[..]));
    cache.set("k", b"newer", Duration::from_secs(60)).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"newer"[..]));
    cache.delete("k").await.unwrap();
    assert_eq!(cache.get("k").await.unwrap(), None);
    cache.delete("k").await.unwrap();
}

async fn entries_expire(cache: &dyn Cache) {
    cache.set("short", b"x", Duration::from_secs(1)).await.unwrap();
    assert!(cache.get("short").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(cache.get("short").await.unwrap(), None);
}

async fn counters_count_atomically(cache: &dyn Cache) {
    let tasks: Vec<_> = (0..20).map(|_| cache.incr("version")).collect();
    let mut values: Vec<i64> = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    values.sort_unstable();
    assert_eq!(values, (1..=20).collect::<Vec<_>>(), "every increment is seen once");
    assert_eq!(cache.get("version").await.unwrap().as_deref(), Some(&b"20"[..]));
    cache.delete("version").await.unwrap();
}

async fn keys_are_binary_safe(cache: &dyn Cache) {
    let value: Vec<u8> = (0..=255).collect();
    cache.set("routing:classifier:7", &value, Duration::from_secs(60)).await.unwrap();
    assert_eq!(cache.get("routing:classifier:7").await.unwrap(), Some(value));
    cache.delete("routing:classifier:7").await.unwrap();
}

macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $check() { super::$check(&pos_platform::cache::MemoryCache::new()).await; })*
        }
        mod redis {
            $(#[tokio::test] async fn $check() { super::$check(&super::redis().await).await; })*
        }
    };
}

contract!(round_trip, entries_expire, counters_count_atomically, keys_are_binary_safe);

#[tokio::test]
async fn prefixes_keep_deployments_apart() {
    let url = testing::redis_url();
    let (a, b) = (
        RedisCache::connect(&url, &testing::unique("a")).await.unwrap(),
        RedisCache::connect(&url, &testing::unique("b")).await.unwrap(),
    );
    a.set("shared-name", b"a", Duration::from_secs(60)).await.unwrap();
    assert_eq!(b.get("shared-name").await.unwrap(), None);
    a.delete("shared-name").await.unwrap();
    let _ = MemoryCache::new();
}
