//! The web service's own section of the configuration (`[web]`, `POS_WEB__*`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct WebConfig {
    /// Where the cabinet listens (`POS_WEB__ADDR`).
    pub addr: SocketAddr,
    /// The platform's gRPC endpoint: any process of it, or a load balancer (every process is a
    /// front door).
    pub grpc_endpoint: String,
    /// The development sign-in: pick a development user, whose token is minted with
    /// `auth.hs256_secret`. Never on in production, where people sign in through the identity
    /// provider.
    pub dev_sign_in: bool,
    /// How long a session lasts without signing in again, in minutes.
    pub session_minutes: u64,
    /// Cookies marked `Secure`. Unset: secure unless the cabinet listens on loopback, where a
    /// browser has no TLS to talk to in development.
    pub secure_cookies: Option<bool>,
    /// How often an open list asks for new messages, in seconds.
    pub live_poll_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc_endpoint: "http://127.0.0.1:50051".into(),
            dev_sign_in: false,
            session_minutes: 8 * 60,
            secure_cookies: None,
            live_poll_secs: 15,
        }
    }
}

impl WebConfig {
    /// Whether cookies carry `Secure` for a cabinet listening on `addr`.
    pub fn secure_cookies_for(&self, addr: SocketAddr) -> bool {
        self.secure_cookies.unwrap_or(!addr.ip().is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_secure_except_on_loopback_unless_configured() {
        let config = WebConfig::default();
        assert!(!config.secure_cookies_for("127.0.0.1:8080".parse().unwrap()));
        assert!(config.secure_cookies_for("0.0.0.0:8080".parse().unwrap()));
        let forced = WebConfig { secure_cookies: Some(true), ..WebConfig::default() };
        assert!(forced.secure_cookies_for("127.0.0.1:8080".parse().unwrap()));
    }
}
