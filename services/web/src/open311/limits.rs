//! A rate limit per client on the machine doors (Open311, the JSON API), on the citizen form's
//! limiter and client-IP rules (`citizen::limits`): the public reads need no key, and each one
//! costs the services a call. A partner's server is one client, so its quota is the partner's.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use http::{HeaderValue, header};

use crate::App;
use crate::citizen::limits::{self, Limiter};

pub struct DoorLimiter {
    limiter: Limiter<IpAddr>,
    trusted_proxies: Vec<IpAddr>,
}

impl DoorLimiter {
    pub fn new(app: &App) -> Arc<DoorLimiter> {
        let config = &app.config.open311;
        Arc::new(DoorLimiter {
            limiter: Limiter::new(limits::per_minute(config.per_minute, config.burst)),
            trusted_proxies: app.config.citizen.trusted_proxies.clone(),
        })
    }

    /// `Err(wait)` when the request's client is over its quota. Without connect info (an
    /// in-process call) there is no client to count.
    pub fn check(&self, request: &Request) -> Result<(), Duration> {
        let peer = limits::peer(request.extensions());
        match limits::client_ip(peer, request.headers(), &self.trusted_proxies) {
            Some(ip) => self.limiter.check(&ip),
            None => Ok(()),
        }
    }
}

/// `Retry-After` in whole seconds, at least one.
pub fn retry_after(wait: Duration) -> HeaderValue {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
}

/// Sets `Retry-After` on a 429.
pub fn with_retry_after(mut response: axum::response::Response, wait: Duration) -> axum::response::Response {
    response.headers_mut().insert(header::RETRY_AFTER, retry_after(wait));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after(Duration::from_millis(1)), "1");
        assert_eq!(retry_after(Duration::from_millis(2100)), "3");
        assert_eq!(retry_after(Duration::ZERO), "1");
    }
}
