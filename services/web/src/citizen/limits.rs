//! Abuse limits of the citizen form: keyed rate limiters (governor's GCRA) per client IP and
//! per contact (e-mail, phone), the client's IP as far as it can be believed, and the polite
//! 429 page with `Retry-After`.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::Quota;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::CitizenState;

/// A keyed limiter that forgets idle keys now and then (the gRPC server's too).
pub use pos_platform::limits::KeyedLimiter as Limiter;

fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("at least 1")
}

/// `per_minute` requests a minute, `burst` of them at once.
pub fn per_minute(per_minute: u32, burst: u32) -> Quota {
    Quota::per_minute(non_zero(per_minute)).allow_burst(non_zero(burst))
}

/// `per_hour` requests an hour, `burst` of them at once.
pub fn per_hour(per_hour: u32, burst: u32) -> Quota {
    Quota::per_hour(non_zero(per_hour)).allow_burst(non_zero(burst))
}

/// The client: the socket's peer, or, when the peer is a trusted proxy, the last address in
/// `X-Forwarded-For` that is not one of the trusted proxies (the one the first trusted proxy
/// saw). A header from anyone else is ignored, so nobody picks their own key.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    Some(forwarded.iter().rev().find(|ip| !trusted.contains(ip)).copied().unwrap_or(peer))
}

/// The peer of the request's connection, when the server was started with connect info.
pub fn peer(request_extensions: &http::Extensions) -> Option<IpAddr> {
    request_extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
}

/// A contact as one key: an e-mail in lower case; a phone by its last ten digits (+7 and 8
/// prefixes are one number).
pub fn contact_keys(email: &str, phone: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let email = email.trim().to_lowercase();
    if !email.is_empty() {
        keys.push(format!("email:{email}"));
    }
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() >= 5 {
        keys.push(format!("phone:{}", &digits[digits.len().saturating_sub(10)..]));
    }
    keys
}

/// Per-IP limit on the widget's writes (uploads and submissions).
pub async fn per_ip(State(state): State<CitizenState>, request: Request, next: Next) -> Response {
    let ip = client_ip(peer(request.extensions()), request.headers(), &state.config.trusted_proxies);
    // Without connect info (an in-process call) there is no client to count.
    if let Some(ip) = ip
        && let Err(wait) = state.ip_limiter.check(&ip)
    {
        metrics::counter!("pos_web_citizen_limited_total", "by" => "ip").increment(1);
        tracing::info!(target: "security", path = %request.uri().path(), "citizen form rate limited by ip");
        return too_many(wait);
    }
    next.run(request).await
}

/// 429 with `Retry-After` (whole seconds, rounded up) and a page saying when to try again.
pub fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let minutes = seconds.div_ceil(60);
    let when = if seconds < 60 { format!("{seconds} с") } else { format!("{minutes} мин") };
    let mut response = super::pages::message(
        StatusCode::TOO_MANY_REQUESTS,
        "Слишком много обращений",
        &format!(
            "С этого адреса или с этими контактами недавно отправлено много обращений. \
             Повторите попытку через {when}. Если вопрос срочный, позвоните в организацию."
        ),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citizen_client_ip_believes_only_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.1.1.1, 203.0.113.9".parse().unwrap());
        let from_proxy = client_ip(Some(proxy), &headers, &[proxy]);
        assert_eq!(from_proxy, Some("203.0.113.9".parse().unwrap()), "the hop the proxy saw, not a spoofed first");
        let direct: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(client_ip(Some(direct), &headers, &[proxy]), Some(direct), "the header of a stranger is ignored");
        assert_eq!(client_ip(Some(proxy), &HeaderMap::new(), &[proxy]), Some(proxy));
        assert_eq!(client_ip(None, &headers, &[proxy]), None);
    }

    #[test]
    fn citizen_contacts_are_one_key_however_written() {
        assert_eq!(contact_keys(" Maria@Example.org ", ""), ["email:maria@example.org"]);
        assert_eq!(contact_keys("", "+7 (914) 000-00-01"), contact_keys("", "8 914 000 00 01"));
        assert!(contact_keys("", "12").is_empty());
    }

    #[test]
    fn citizen_limiter_refuses_past_the_burst_with_a_wait() {
        let limiter: Limiter<String> = Limiter::new(per_hour(5, 2));
        let key = "email:a@b.c".to_owned();
        assert!(limiter.check(&key).is_ok() && limiter.check(&key).is_ok());
        let wait = limiter.check(&key).unwrap_err();
        assert!(wait > Duration::from_secs(60) && wait <= Duration::from_secs(12 * 60), "{wait:?}");
        assert!(limiter.check(&"email:other@b.c".to_owned()).is_ok(), "another contact is not affected");
        let response = too_many(wait);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = response.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!(retry >= wait.as_secs());
    }
}
