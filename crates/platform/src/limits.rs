//! Limits on every call the gRPC server takes: how often one caller may call (per method and in
//! all), how long a call may run, how large one message may be, and how many calls one
//! connection may have open at once. Configured in `[limits]`; see docs/deploy.md.
//!
//! Rate limits are keyed GCRA limiters (governor) per caller: the verified subject, or the peer's
//! address when the call carries no valid token (a stolen or guessed token must not pick its own
//! key). A call over its limit gets `RESOURCE_EXHAUSTED` with the reason `RATE_LIMITED` and
//! `google.rpc.RetryInfo` saying when the next call would pass; it never reaches the service.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::{Authenticated, Role};
use crate::config::ConfigError;

/// The `google.rpc.ErrorInfo` reason of a call refused by a rate limit.
pub const RATE_LIMITED: &str = "RATE_LIMITED";

/// Calls neither counted nor timed: probes (health every few seconds from each orchestrator
/// node) and reflection (tools, whose streams stay open for a whole session).
const EXEMPT_SERVICES: [&str; 3] =
    ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// `[limits]`: the gRPC server's limits. Method names are written as in the call's path without
/// the leading slash, e.g. `pos.v1.IntakeService/SubmitAppeal`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// What one caller may call one method, unless `methods` says otherwise.
    pub per_method: Allowance,
    /// What one caller may call all methods together.
    pub per_caller: Allowance,
    /// Callers with the role `system` (the services themselves, integrations, load tests): this
    /// allowance per caller and method instead of the two above and of `methods`' rates, since
    /// one of them speaks for many people. Sized above the platform's own peak: intake asks
    /// routing once per appeal as one caller, at the 1,000 appeals/s a deployment is built for.
    pub system: Allowance,
    /// Per-method rates and deadlines, e.g. `[limits.methods."pos.v1.IntakeService/SubmitAppeal"]`.
    pub methods: BTreeMap<String, MethodLimits>,
    /// The largest message a call may send or receive, in bytes (each message of a stream on
    /// its own).
    pub max_message_bytes: usize,
    /// How long a call may take until its answer begins, unless the client asks for less
    /// (`grpc-timeout`) or `methods` says otherwise.
    pub call_timeout_secs: u64,
    /// Calls one HTTP/2 connection may have open at once (its `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
}

/// A rate with a burst: `burst` calls at once after a quiet spell, then `rate` a second.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
pub struct Allowance {
    /// Calls a second, fractions allowed (`0.2`: one every five seconds); `0` for no limit.
    pub rate: f64,
    pub burst: u32,
}

/// One method's own limits; what is unset is the default's.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct MethodLimits {
    /// Calls a second one caller may make to this method (`0` for no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Unset: a second's worth of `rate`, at least one call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Unset: `call_timeout_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// What an upload may take: a client stream's call lasts until its last chunk is in, so 10 MiB
/// over a slow mobile link (~150 kbit/s) needs minutes, not the default half a minute.
pub const UPLOAD_METHOD: &str = "pos.v1.IntakeService/UploadAttachment";
const UPLOAD_TIMEOUT_SECS: u64 = 600;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            per_method: Allowance { rate: 50.0, burst: 100 },
            per_caller: Allowance { rate: 200.0, burst: 400 },
            system: Allowance { rate: 10_000.0, burst: 20_000 },
            methods: BTreeMap::from([(
                UPLOAD_METHOD.to_owned(),
                MethodLimits { timeout_secs: Some(UPLOAD_TIMEOUT_SECS), ..MethodLimits::default() },
            )]),
            max_message_bytes: 4 * 1024 * 1024,
            call_timeout_secs: 30,
            max_concurrent_streams: 200,
        }
    }
}

impl Allowance {
    /// The limiter's quota; `None` when unlimited.
    fn quota(self) -> Option<Quota> {
        if self.rate == 0.0 {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / self.rate);
        Quota::with_period(period)
            .map(|quota| quota.allow_burst(NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN)))
    }

    fn validate(self, field: &str) -> Result<(), ConfigError> {
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(ConfigError::invalid(format!("{field}.rate"), "must be 0 (no limit) or more"));
        }
        // Below one call in ten thousand seconds the period no longer fits governor's clock.
        if self.rate != 0.0 && self.rate < 0.0001 {
            return Err(ConfigError::invalid(format!("{field}.rate"), "must be at least 0.0001 calls a second"));
        }
        if self.rate != 0.0 && self.burst == 0 {
            return Err(ConfigError::invalid(format!("{field}.burst"), "must be at least 1"));
        }
        Ok(())
    }
}

impl MethodLimits {
    fn allowance(&self, default: Allowance) -> Allowance {
        match (self.rate, self.burst) {
            (None, None) => default,
            (Some(rate), burst) => Allowance { rate, burst: burst.unwrap_or_else(|| (rate.ceil() as u32).max(1)) },
            (None, Some(burst)) => Allowance { rate: default.rate, burst },
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.per_method.validate("limits.per_method")?;
        self.per_caller.validate("limits.per_caller")?;
        self.system.validate("limits.system")?;
        for (method, limits) in &self.methods {
            let field = format!("limits.methods.\"{method}\"");
            if method.starts_with('/') || !method.contains('/') {
                return Err(ConfigError::invalid(field, "name a method as `package.Service/Method`"));
            }
            limits.allowance(self.per_method).validate(&field)?;
            if limits.timeout_secs == Some(0) {
                return Err(ConfigError::invalid(format!("{field}.timeout_secs"), "must be at least 1"));
            }
        }
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::invalid("limits.max_message_bytes", "must be at least 1024"));
        }
        if self.call_timeout_secs == 0 {
            return Err(ConfigError::invalid("limits.call_timeout_secs", "must be at least 1"));
        }
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError::invalid("limits.max_concurrent_streams", "must be at least 1"));
        }
        Ok(())
    }

    /// How long a call of `method` (`package.Service/Method`) may take until its answer begins.
    pub fn timeout(&self, method: &str) -> Duration {
        let secs = self.methods.get(method).and_then(|limits| limits.timeout_secs).unwrap_or(self.call_timeout_secs);
        Duration::from_secs(secs)
    }
}

/// Applies `[limits] max_message_bytes` to a generated `*ServiceServer`, both ways:
/// `pos_platform::message_limits!(IntakeServiceServer::new(api), &ctx.infra.config.limits)`.
/// A macro because the generated servers share the two methods but no trait that has them.
#[macro_export]
macro_rules! message_limits {
    ($server:expr, $limits:expr) => {{
        let limits: &$crate::limits::LimitsConfig = $limits;
        $server.max_decoding_message_size(limits.max_message_bytes).max_encoding_message_size(limits.max_message_bytes)
    }};
}

/// How many checks pass between sweeps of keys whose limit is full again: memory stays bounded
/// by the callers of the last moments, however many came and went.
const SWEEP_EVERY: u64 = 4096;

/// A keyed rate limiter that forgets idle keys now and then.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(quota: Quota) -> KeyedLimiter<K> {
        KeyedLimiter { limiter: RateLimiter::keyed(quota), checks: AtomicU64::new(0) }
    }

    /// `Err(wait)` when `key` is over its quota: the call would pass after `wait`.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// `RESOURCE_EXHAUSTED` with the `ErrorInfo` `reason` and `RetryInfo` saying when to come back:
/// a rate limit, or a quota such as intake's daily upload bytes.
pub fn exhausted(reason: &str, message: impl Into<String>, retry_after: Duration) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, crate::error::ERROR_DOMAIN, std::collections::HashMap::new());
    details.set_retry_info(Some(retry_after));
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// Who is counted: the verified subject, else the peer's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Subject(Arc<str>),
    Address(IpAddr),
    /// No token and no address (an in-process call): all such calls share one allowance.
    Unknown,
}

/// Which limit refused a call.
#[derive(Clone, Copy, Debug)]
enum Scope {
    Method,
    Caller,
}

impl Scope {
    fn describe(self) -> &'static str {
        match self {
            Scope::Method => "too many calls of this method",
            Scope::Caller => "too many calls",
        }
    }
}

/// The limiters of one server.
struct Limiters {
    config: LimitsConfig,
    per_method: Option<KeyedLimiter<(Key, Arc<str>)>>,
    per_caller: Option<KeyedLimiter<Key>>,
    system: Option<KeyedLimiter<(Key, Arc<str>)>>,
    /// Methods with a rate of their own; `None` inside: unlimited.
    methods: BTreeMap<String, Option<KeyedLimiter<Key>>>,
    /// Refusals logged per caller: one line a minute, so that a flood does not flood the log.
    logged: KeyedLimiter<Key>,
}

impl Limiters {
    fn new(config: LimitsConfig) -> Limiters {
        let methods = config
            .methods
            .iter()
            .filter(|(_, limits)| limits.rate.is_some() || limits.burst.is_some())
            .map(|(method, limits)| {
                (method.clone(), limits.allowance(config.per_method).quota().map(KeyedLimiter::new))
            })
            .collect();
        Limiters {
            per_method: config.per_method.quota().map(KeyedLimiter::new),
            per_caller: config.per_caller.quota().map(KeyedLimiter::new),
            system: config.system.quota().map(KeyedLimiter::new),
            methods,
            logged: KeyedLimiter::new(Quota::per_minute(NonZeroU32::MIN)),
            config,
        }
    }

    /// `Err((scope, wait))` when the call must be refused.
    fn check(&self, key: &Key, system: bool, method: &str) -> Result<(), (Scope, Duration)> {
        let method_key = || (key.clone(), Arc::<str>::from(method));
        if system {
            return match &self.system {
                Some(limiter) => limiter.check(&method_key()).map_err(|wait| (Scope::Method, wait)),
                None => Ok(()),
            };
        }
        match self.methods.get(method) {
            Some(Some(limiter)) => limiter.check(key).map_err(|wait| (Scope::Method, wait))?,
            Some(None) => {}
            None => {
                if let Some(limiter) = &self.per_method {
                    limiter.check(&method_key()).map_err(|wait| (Scope::Method, wait))?;
                }
            }
        }
        if let Some(limiter) = &self.per_caller {
            limiter.check(key).map_err(|wait| (Scope::Caller, wait))?;
        }
        Ok(())
    }
}

/// Tower layer enforcing `[limits]` rates and deadlines on every call but health and reflection.
/// It reads the caller from [`Authenticated`], so it goes inside [`crate::auth::AuthLayer`].
#[derive(Clone)]
pub struct LimitsLayer {
    limiters: Arc<Limiters>,
}

impl LimitsLayer {
    pub fn new(config: &LimitsConfig) -> Result<LimitsLayer, ConfigError> {
        config.validate()?;
        Ok(LimitsLayer { limiters: Arc::new(Limiters::new(config.clone())) })
    }
}

impl<S> tower::Layer<S> for LimitsLayer {
    type Service = Limits<S>;
    fn layer(&self, inner: S) -> Limits<S> {
        Limits { inner, limiters: self.limiters.clone() }
    }
}

#[derive(Clone)]
pub struct Limits<S> {
    inner: S,
    limiters: Arc<Limiters>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Limits<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().trim_start_matches('/');
        let service = method.split_once('/').map_or(method, |(service, _)| service);
        if EXEMPT_SERVICES.contains(&service) {
            return Box::pin(self.inner.call(request));
        }
        let method = method.to_owned();
        let caller = match request.extensions().get::<Authenticated>() {
            Some(Authenticated(Ok(caller))) => Some(caller),
            _ => None,
        };
        let system = caller.is_some_and(|caller| caller.has(Role::System));
        let key = match (caller, crate::tls::peer_address(request.extensions())) {
            (Some(caller), _) => Key::Subject(Arc::from(caller.subject.as_str())),
            (None, Some(address)) => Key::Address(address),
            (None, None) => Key::Unknown,
        };
        if let Err((scope, wait)) = self.limiters.check(&key, system, &method) {
            // Labelled by the path, as `pos_grpc_requests_total` is.
            metrics::counter!("pos_grpc_rate_limited_total", "method" => format!("/{method}")).increment(1);
            if self.limiters.logged.check(&key).is_ok() {
                // The subject or the address, never the token; the next refusals of this caller
                // within a minute are counted, not logged.
                let caller = match &key {
                    Key::Subject(subject) => subject.to_string(),
                    Key::Address(address) => address.to_string(),
                    Key::Unknown => "unknown".to_owned(),
                };
                tracing::warn!(target: "security", %caller, %method, limit = ?scope, "call rate limited");
            }
            let status = exhausted(RATE_LIMITED, scope.describe(), wait);
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let timeout = self.limiters.config.timeout(&method);
        let future = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(timeout, future).await {
                Ok(result) => result,
                // The handler is dropped, and with it whatever it was waiting for.
                Err(_) => Ok(Status::deadline_exceeded(format!("the call took longer than {timeout:?}")).into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_uploads_get_longer() {
        let config = LimitsConfig::default();
        config.validate().unwrap();
        assert_eq!(config.timeout("pos.v1.IntakeService/SubmitAppeal"), Duration::from_secs(30));
        assert_eq!(config.timeout(UPLOAD_METHOD), Duration::from_secs(UPLOAD_TIMEOUT_SECS));
    }

    #[test]
    fn bad_values_are_named() {
        let mut config = LimitsConfig::default();
        config.methods.insert("/pos.v1.X/Y".into(), MethodLimits::default());
        assert!(config.validate().unwrap_err().to_string().contains("limits.methods"));
        let config = LimitsConfig { per_caller: Allowance { rate: -1.0, burst: 1 }, ..LimitsConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("limits.per_caller.rate"));
        let config = LimitsConfig { call_timeout_secs: 0, ..LimitsConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("call_timeout_secs"));
    }

    #[test]
    fn a_method_rate_without_a_burst_allows_a_seconds_worth() {
        let limits = MethodLimits { rate: Some(2.5), ..MethodLimits::default() };
        let default = Allowance { rate: 50.0, burst: 100 };
        assert_eq!(limits.allowance(default), Allowance { rate: 2.5, burst: 3 });
        assert_eq!(MethodLimits::default().allowance(default), default);
    }

    #[test]
    fn callers_are_counted_apart_and_system_callers_by_their_own_allowance() {
        let config = LimitsConfig {
            per_method: Allowance { rate: 1.0, burst: 2 },
            per_caller: Allowance { rate: 1.0, burst: 3 },
            system: Allowance { rate: 1.0, burst: 5 },
            ..LimitsConfig::default()
        };
        let limiters = Limiters::new(config);
        let alice = Key::Subject("alice".into());
        let bob = Key::Subject("bob".into());
        assert!(limiters.check(&alice, false, "a.S/M").is_ok());
        assert!(limiters.check(&alice, false, "a.S/M").is_ok());
        let (scope, wait) = limiters.check(&alice, false, "a.S/M").unwrap_err();
        assert!(matches!(scope, Scope::Method) && wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limiters.check(&bob, false, "a.S/M").is_ok(), "another caller is not affected");
        // The third call in all passes its method's limit but not the caller's.
        assert!(limiters.check(&alice, false, "a.S/Other").is_ok());
        assert!(matches!(limiters.check(&alice, false, "a.S/Third"), Err((Scope::Caller, _))));
        let system = Key::Subject("routing".into());
        for _ in 0..5 {
            assert!(limiters.check(&system, true, "a.S/M").is_ok());
        }
        assert!(limiters.check(&system, true, "a.S/M").is_err());
    }

    #[test]
    fn a_refusal_carries_its_reason_and_when_to_retry() {
        let status = exhausted(RATE_LIMITED, "too many calls", Duration::from_millis(1500));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(crate::error::reason(&status), RATE_LIMITED);
        let retry = status.get_details_retry_info().unwrap().retry_delay.unwrap();
        assert_eq!(retry, Duration::from_millis(1500));
    }
}
