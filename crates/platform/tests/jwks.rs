//! Tokens of an identity provider, verified with the keys it publishes (`auth.jwks_url`): a
//! provider of the test's own serves `/jwks.json` over real HTTP, and the test rotates its keys.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pos_platform::auth::{AuthFailure, AuthLayer, Authenticated, Authenticator, Role, authorize};
use pos_platform::config::AuthConfig;
use pos_platform::testing::eventually;
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.test/realms/pos";
const AUDIENCE: &str = "pos-api";

// ---------------------------------------------------------------------------------------------
// Keys.

/// A private key the provider signs with, and the public half it publishes.
#[derive(Clone)]
struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    public: Value,
}

impl SigningKey {
    /// RSA, one per test binary: generating 2048-bit keys takes a while in a debug build.
    fn rsa(kid: &str, algorithm: Algorithm) -> SigningKey {
        static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
        let private = KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key"));
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let der = private.to_pkcs1_der().expect("PKCS#1");
        SigningKey {
            kid: kid.to_owned(),
            algorithm,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            public: json!({
                "kty": "RSA", "use": "sig", "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
            }),
        }
    }

    fn es256(kid: &str) -> SigningKey {
        use p256::pkcs8::EncodePrivateKey as _;
        let private = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&private.public_key(), false);
        SigningKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(private.to_pkcs8_der().expect("PKCS#8").as_bytes()),
            public: json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
            }),
        }
    }

    fn eddsa(kid: &str) -> SigningKey {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let private = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        SigningKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(private.to_pkcs8_der().expect("PKCS#8").as_bytes()),
            public: json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(private.verifying_key().to_bytes()),
            }),
        }
    }

    /// A token for `subject` with the provider's usual claims, `change` applied to them.
    fn token(&self, subject: &str, change: impl FnOnce(&mut Value)) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "sub": subject, "org": "41-kcioko", "region": "41", "roles": ["coordinator"],
            "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300,
        });
        change(&mut claims);
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("sign")
    }

    fn valid_token(&self, subject: &str) -> String {
        self.token(subject, |_| {})
    }
}

// ---------------------------------------------------------------------------------------------
// The identity provider.

#[derive(Default)]
struct Published {
    keys: Mutex<Vec<Value>>,
    cache_control: Mutex<Option<&'static str>>,
    failing: AtomicBool,
    fetches: AtomicUsize,
}

struct Provider {
    published: Arc<Published>,
    url: String,
}

impl Provider {
    async fn start(keys: &[&SigningKey]) -> Provider {
        let published = Arc::new(Published::default());
        let provider = Provider { url: String::new(), published: published.clone() };
        provider.publish(keys);
        let app = axum::Router::new().route("/jwks.json", axum::routing::get(jwks)).with_state(published);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Provider { url, ..provider }
    }

    /// Replaces the published set.
    fn publish(&self, keys: &[&SigningKey]) {
        *self.published.keys.lock().unwrap() = keys.iter().map(|k| k.public.clone()).collect();
    }

    fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }

    fn config(&self, min_refresh_secs: u64) -> AuthConfig {
        AuthConfig {
            jwks_url: Some(self.url.clone()),
            jwks_min_refresh_secs: min_refresh_secs,
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            ..AuthConfig::default()
        }
    }

    fn authenticator(&self, min_refresh_secs: u64) -> Arc<Authenticator> {
        Arc::new(Authenticator::for_process(&self.config(min_refresh_secs), false).expect("authenticator"))
    }
}

async fn jwks(State(published): State<Arc<Published>>) -> impl IntoResponse {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    if published.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, HeaderMap::new(), String::new());
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(value) = *published.cache_control.lock().unwrap() {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    // A provider publishes encryption keys beside the signing ones: they must not get in the way.
    let mut keys = published.keys.lock().unwrap().clone();
    keys.push(json!({"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "encryption", "n": "AQAB", "e": "AQAB"}));
    (StatusCode::OK, headers, json!({ "keys": keys }).to_string())
}

fn refusal(outcome: Result<pos_platform::auth::Caller, AuthFailure>) -> String {
    match outcome {
        Ok(caller) => panic!("accepted for {}", caller.subject),
        Err(AuthFailure::Invalid(reason)) => reason,
        Err(AuthFailure::Missing) => panic!("missing"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn rotation_keeps_the_old_key_until_the_set_drops_it_and_takes_the_new_one_on_first_sight() {
    let old = SigningKey::rsa("2024-old", Algorithm::RS256);
    let new = SigningKey::es256("2025-new");
    let provider = Provider::start(&[&old]).await;
    let auth = provider.authenticator(0);

    let caller = auth.verify(&old.valid_token("before")).await.expect("the published key verifies");
    assert_eq!(
        (caller.subject.as_str(), caller.organization_id.as_str(), caller.region_code.as_str()),
        ("before", "41-kcioko", "41")
    );
    assert!(caller.has(Role::Coordinator));
    assert_eq!(provider.fetches(), 1);

    // The provider publishes the new key beside the old one and signs with the new one: its first
    // token, with a key id not seen yet, makes the services fetch the set again.
    provider.publish(&[&old, &new]);
    auth.verify(&new.valid_token("after")).await.expect("the new key verifies after the refresh");
    assert_eq!(provider.fetches(), 2);
    auth.verify(&old.valid_token("during")).await.expect("the old key still verifies");

    // The provider withdraws the old key: it is accepted until a refresh drops it.
    provider.publish(&[&new]);
    auth.verify(&old.valid_token("cached")).await.expect("no refresh yet: the old key is still known");
    assert_eq!(provider.fetches(), 2, "a known key needs no fetch");
    let forged = SigningKey::es256("unknown");
    let reason = refusal(auth.verify(&forged.valid_token("forger")).await);
    assert!(reason.contains("not among"), "{reason}");
    assert_eq!(provider.fetches(), 3, "an unknown key id fetched the set again");
    let reason = refusal(auth.verify(&old.valid_token("withdrawn")).await);
    assert!(reason.contains("2024-old"), "{reason}");
    auth.verify(&new.valid_token("still")).await.expect("the new key stays");
}

#[tokio::test]
async fn concurrent_requests_share_one_fetch_and_unknown_key_ids_fetch_at_most_once_per_interval() {
    let key = SigningKey::es256("k1");
    let provider = Provider::start(&[&key]).await;
    let auth = provider.authenticator(30);

    // Nothing fetched yet: twenty requests at once wait for one fetch.
    let token = key.valid_token("crowd");
    let verifications = (0..20).map(|_| {
        let (auth, token) = (auth.clone(), token.clone());
        tokio::spawn(async move { auth.verify(&token).await })
    });
    for outcome in futures::future::join_all(verifications).await {
        outcome.unwrap().expect("verified");
    }
    assert_eq!(provider.fetches(), 1);

    // Within the interval, key ids nobody knows (forged or not yet seen) do not reach the provider.
    let next = SigningKey::es256("k2");
    provider.publish(&[&key, &next]);
    for attempt in 0..10 {
        let reason = refusal(auth.verify(&SigningKey::es256(&format!("forged-{attempt}")).valid_token("x")).await);
        assert!(reason.contains("not among"), "{reason}");
    }
    refusal(auth.verify(&next.valid_token("too soon")).await);
    assert_eq!(provider.fetches(), 1, "the rate limit held");
}

#[tokio::test]
async fn a_stale_set_is_fetched_again_after_max_age_and_an_unreachable_provider_leaves_the_last_set() {
    let old = SigningKey::es256("old");
    let new = SigningKey::eddsa("new");
    let provider = Provider::start(&[&old]).await;
    *provider.published.cache_control.lock().unwrap() = Some("public, max-age=1");
    let auth = provider.authenticator(0);
    auth.fetch_keys().await;
    assert_eq!(provider.fetches(), 1);

    // The provider is down: the set it published last stays in use.
    provider.published.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    auth.verify(&old.valid_token("a")).await.expect("the stale set serves while it is fetched again");
    eventually(Duration::from_secs(5), "the stale set is fetched again", || async { provider.fetches() >= 2 }).await;
    auth.verify(&old.valid_token("b")).await.expect("a failed fetch keeps the last set");

    // Back, with the old key withdrawn: the next periodic refresh drops it, no unknown key id needed.
    provider.published.failing.store(false, Ordering::SeqCst);
    provider.publish(&[&new]);
    eventually(Duration::from_secs(10), "the withdrawn key is refused", || async {
        auth.verify(&old.valid_token("c")).await.is_err()
    })
    .await;
    auth.verify(&new.valid_token("d")).await.expect("EdDSA keys of the set verify");
}

#[tokio::test]
async fn issuer_audience_expiry_and_not_before_are_checked_with_a_leeway() {
    let key = SigningKey::rsa("rsa", Algorithm::RS256);
    let pss = SigningKey { algorithm: Algorithm::PS256, ..key.clone() };
    let provider = Provider::start(&[&key]).await;
    let auth = provider.authenticator(0);
    let now = chrono::Utc::now().timestamp();

    auth.verify(&pss.valid_token("pss")).await.expect("PS256 with the same RSA key");
    auth.verify(&key.token("listed", |c| c["aud"] = json!(["account", AUDIENCE]))).await.expect("aud as a list");
    // Within the 30 s leeway either way.
    auth.verify(&key.token("late", |c| c["exp"] = json!(now - 10))).await.expect("expired within the leeway");
    auth.verify(&key.token("early", |c| c["nbf"] = json!(now + 10))).await.expect("not yet valid within the leeway");
    auth.verify(&key.token("valid", |c| c["nbf"] = json!(now - 10))).await.expect("already valid");

    let refused: Vec<(&str, String)> = vec![
        ("InvalidAudience", key.token("u", |c| c["aud"] = json!("another-api"))),
        ("InvalidIssuer", key.token("u", |c| c["iss"] = json!("https://other.test"))),
        ("ExpiredSignature", key.token("u", |c| c["exp"] = json!(now - 100))),
        ("ImmatureSignature", key.token("u", |c| c["nbf"] = json!(now + 100))),
        ("claim: exp", key.token("u", |c| drop(c.as_object_mut().unwrap().remove("exp")))),
        ("claim: aud", key.token("u", |c| drop(c.as_object_mut().unwrap().remove("aud")))),
        ("claim: iss", key.token("u", |c| drop(c.as_object_mut().unwrap().remove("iss")))),
    ];
    for (expected, token) in refused {
        let reason = refusal(auth.verify(&token).await);
        assert!(reason.contains(expected), "expected {expected}, refused for {reason}");
    }
    // The public key as an HMAC secret (algorithm confusion): no HS256 key is taken from a set.
    let public_as_secret = serde_json::to_vec(&key.public).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let confused = jsonwebtoken::encode(
        &header,
        &json!({"sub": "u", "roles": ["system"], "iss": ISSUER, "aud": AUDIENCE, "exp": now + 60}),
        &EncodingKey::from_secret(&public_as_secret),
    )
    .unwrap();
    refusal(auth.verify(&confused).await);
}

#[tokio::test]
async fn the_layer_verifies_before_the_service_and_no_key_set_means_unauthenticated() {
    let key = SigningKey::es256("k");
    let provider = Provider::start(&[&key]).await;
    let seen = |auth: Arc<Authenticator>| {
        tower::ServiceBuilder::new().layer(AuthLayer::new(auth)).service(tower::service_fn(
            |request: http::Request<()>| async move {
                Ok::<_, std::convert::Infallible>(request.extensions().get::<Authenticated>().cloned())
            },
        ))
    };
    let bearer = |token: &str| {
        http::Request::builder().header(http::header::AUTHORIZATION, format!("Bearer {token}")).body(()).unwrap()
    };
    let mut service = seen(provider.authenticator(0));
    let outcome = tower::ServiceExt::oneshot(&mut service, bearer(&key.valid_token("through"))).await.unwrap();
    assert_eq!(outcome.unwrap().0.expect("verified").subject, "through");
    let outcome = tower::ServiceExt::oneshot(&mut service, http::Request::new(())).await.unwrap();
    assert!(matches!(outcome.unwrap().0, Err(AuthFailure::Missing)));

    // A provider nobody answers at: no set was ever fetched, and calls are refused as
    // unauthenticated with the reason in the security log, not failed as internal errors.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let config = AuthConfig { jwks_url: Some(url), ..provider.config(30) };
    let unreachable = Arc::new(Authenticator::for_process(&config, false).expect("starts without the provider"));
    unreachable.fetch_keys().await;
    let mut service = seen(unreachable);
    let outcome = tower::ServiceExt::oneshot(&mut service, bearer(&key.valid_token("stranded"))).await.unwrap();
    let outcome = outcome.unwrap();
    match &outcome.0 {
        Err(AuthFailure::Invalid(reason)) => assert!(reason.contains("keys are unavailable"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let mut request = tonic::Request::new(());
    request.extensions_mut().insert(outcome);
    let status = tonic::Status::from(authorize(&request, "Test/Call", &[Role::Coordinator]).unwrap_err());
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn public_key_files_and_the_key_set_verify_side_by_side() {
    use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
    let published = SigningKey::es256("published");
    let provider = Provider::start(&[&published]).await;
    let file_key = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
    let dir = pos_platform::testing::TempDir::new();
    let pem = dir.0.join("web.pem");
    std::fs::write(&pem, file_key.public_key().to_public_key_pem(Default::default()).unwrap()).unwrap();
    let config = AuthConfig { public_key_files: vec![pem], ..provider.config(0) };
    let services = Authenticator::for_process(&config, false).unwrap();
    let web = services.clone().with_signing_key(file_key.to_pkcs8_pem(Default::default()).unwrap().as_bytes()).unwrap();
    let minted = web.mint("person", "41-kcioko", "41", &[Role::Executor], Duration::from_secs(60)).unwrap();
    assert!(services.verify(&minted).await.unwrap().has(Role::Executor));
    services.verify(&published.valid_token("idp")).await.expect("the provider's token");
}
