//! An OpenID Connect provider of the tests' own, on loopback: discovery, JWKS with RSA keys,
//! `/authorize` that sends the configured person straight back with a code, `/token` that
//! checks the client and the PKCE verifier and answers with a signed ID token, and an
//! end-session endpoint. It stands in for the external identity provider, and can be told to
//! misbehave (a wrong nonce, a foreign key, an expired token) or to rotate its keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

pub const CLIENT_ID: &str = "pos-cabinet";
pub const CLIENT_SECRET: &str = "cabinet-secret-for-tests";

/// Who signs in at the provider, and the claims it adds about them.
#[derive(Clone, Debug)]
pub struct Person {
    pub subject: String,
    pub name: String,
    /// More claims of the ID token (`org`, `roles`, …).
    pub claims: Value,
}

/// How the provider misbehaves in the next ID token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    None,
    /// A nonce of another sign-in.
    Nonce,
    /// Signed with a key that is not the provider's, under the provider's key id.
    ForeignKey,
    /// Expired ten minutes ago.
    Expired,
    /// Issued for another client.
    Audience,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl Key {
    fn load(kid: &str, file: &str) -> Key {
        let pem = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/keys").join(file))
            .expect("test key");
        let encoding = EncodingKey::from_rsa_pem(&pem).expect("an RSA key");
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).expect("a JWK");
        jwk.common.key_id = Some(kid.to_owned());
        Key { kid: kid.to_owned(), encoding, jwk: serde_json::to_value(jwk).expect("JWK as JSON") }
    }
}

struct Grant {
    person: Person,
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

struct Inner {
    issuer: String,
    /// The keys the JWKS lists.
    published: Vec<Key>,
    /// Keys that sign without being listed (yet): the next key, the intruder's.
    unpublished: Vec<Key>,
    /// The key id ID tokens are signed with.
    signing: String,
    person: Option<Person>,
    tamper: Tamper,
    codes: HashMap<String, Grant>,
    authorizations: usize,
    key_fetches: usize,
    end_sessions: Vec<HashMap<String, String>>,
}

#[derive(Clone)]
pub struct Idp {
    pub issuer: String,
    inner: Arc<Mutex<Inner>>,
    shutdown: CancellationToken,
}

impl Idp {
    pub async fn start() -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner {
            issuer: issuer.clone(),
            published: vec![Key::load("provider-1", "provider.pem")],
            unpublished: vec![Key::load("provider-2", "rotated.pem"), Key::load("provider-1", "intruder.pem")],
            signing: "provider-1".into(),
            person: None,
            tamper: Tamper::None,
            codes: HashMap::new(),
            authorizations: 0,
            key_fetches: 0,
            end_sessions: Vec::new(),
        }));
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", axum::routing::get(discovery))
            .route("/jwks", axum::routing::get(jwks))
            .route("/authorize", axum::routing::get(authorize))
            .route("/token", axum::routing::post(token))
            .route("/logout", axum::routing::get(logout))
            .with_state(inner.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await.unwrap();
        });
        Idp { issuer, inner, shutdown }
    }

    /// The person the next `/authorize` signs in.
    pub fn sign_in_as(&self, person: Person) {
        self.inner.lock().unwrap().person = Some(person);
    }

    pub fn tamper(&self, tamper: Tamper) {
        self.inner.lock().unwrap().tamper = tamper;
    }

    /// Signs from now on with the key `kid` (listed or not).
    pub fn sign_with(&self, kid: &str) {
        self.inner.lock().unwrap().signing = kid.to_owned();
    }

    /// Lists the rotated key (`provider-2`) in the JWKS.
    pub fn publish_rotated_key(&self) {
        let mut inner = self.inner.lock().unwrap();
        let position = inner.unpublished.iter().position(|key| key.kid == "provider-2").expect("the rotated key");
        let key = inner.unpublished.remove(position);
        inner.published.push(key);
    }

    pub fn authorizations(&self) -> usize {
        self.inner.lock().unwrap().authorizations
    }

    pub fn key_fetches(&self) -> usize {
        self.inner.lock().unwrap().key_fetches
    }

    /// The queries the end-session endpoint received.
    pub fn end_sessions(&self) -> Vec<HashMap<String, String>> {
        self.inner.lock().unwrap().end_sessions.clone()
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

type Shared = Arc<Mutex<Inner>>;

async fn discovery(State(inner): State<Shared>) -> Json<Value> {
    let issuer = inner.lock().unwrap().issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        // The secret comes in the form: the cabinet must notice that Basic is not offered.
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "scopes_supported": ["openid", "profile", "email"],
    }))
}

async fn jwks(State(inner): State<Shared>) -> Json<Value> {
    let mut inner = inner.lock().unwrap();
    inner.key_fetches += 1;
    Json(json!({ "keys": inner.published.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() }))
}

fn refuse(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({ "error": error, "error_description": description }))).into_response()
}

async fn authorize(State(inner): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let field = |name: &str| query.get(name).cloned().unwrap_or_default();
    if field("response_type") != "code" || field("client_id") != CLIENT_ID {
        return refuse(StatusCode::BAD_REQUEST, "unauthorized_client", "unknown client or flow");
    }
    if field("code_challenge_method") != "S256" || field("code_challenge").is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "PKCE with S256 is required");
    }
    if !field("scope").split(' ').any(|scope| scope == "openid") || field("nonce").is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "openid scope and nonce are required");
    }
    let mut inner = inner.lock().unwrap();
    let Some(person) = inner.person.clone() else {
        return refuse(StatusCode::BAD_REQUEST, "login_required", "the test set nobody to sign in");
    };
    inner.authorizations += 1;
    let code = hex_token();
    let redirect_uri = field("redirect_uri");
    inner.codes.insert(
        code.clone(),
        Grant { person, nonce: field("nonce"), challenge: field("code_challenge"), redirect_uri: redirect_uri.clone() },
    );
    let state = field("state");
    let back = format!(
        "{redirect_uri}?{}",
        serde_urlencoded::to_string([("code", code.as_str()), ("state", state.as_str())]).unwrap()
    );
    Redirect::to(&back).into_response()
}

async fn token(State(inner): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    }
    if field("grant_type") != "authorization_code" {
        return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only authorization_code");
    }
    let mut inner = inner.lock().unwrap();
    // A code is redeemed once, whatever the outcome.
    let Some(grant) = inner.codes.remove(&field("code")) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or used code");
    };
    if grant.redirect_uri != field("redirect_uri") {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri differs");
    }
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(field("code_verifier").as_bytes()));
    if challenge != grant.challenge {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "PKCE verification failed");
    }
    let now = chrono::Utc::now().timestamp();
    let tamper = inner.tamper;
    let mut claims = json!({
        "iss": inner.issuer,
        "sub": grant.person.subject,
        "aud": if tamper == Tamper::Audience { "another-client" } else { CLIENT_ID },
        "iat": now - if tamper == Tamper::Expired { 1200 } else { 0 },
        "exp": now + if tamper == Tamper::Expired { -600 } else { 300 },
        "nonce": if tamper == Tamper::Nonce { "a-nonce-of-another-sign-in".to_owned() } else { grant.nonce },
        "name": grant.person.name,
    });
    if let (Some(claims), Some(more)) = (claims.as_object_mut(), grant.person.claims.as_object()) {
        claims.extend(more.clone());
    }
    let kid = inner.signing.clone();
    let key = if tamper == Tamper::ForeignKey {
        inner.unpublished.iter().find(|key| key.kid == "provider-1").expect("the intruder's key")
    } else {
        inner.published.iter().chain(&inner.unpublished).find(|key| key.kid == kid).expect("the signing key")
    };
    let header = Header { kid: Some(key.kid.clone()), ..Header::new(Algorithm::RS256) };
    let id_token = jsonwebtoken::encode(&header, &claims, &key.encoding).expect("ID token signed");
    Json(json!({
        "access_token": hex_token(),
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}

async fn logout(State(inner): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let back = query.get("post_logout_redirect_uri").cloned();
    inner.lock().unwrap().end_sessions.push(query);
    match back {
        Some(back) => Redirect::to(&back).into_response(),
        None => "signed out".into_response(),
    }
}

fn hex_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}
