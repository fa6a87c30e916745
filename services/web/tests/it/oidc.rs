//! Signing in through the identity provider, against the tests' own provider (`idp.rs`) and
//! the embedded platform: a sign-in lands in the right organization with the right roles, from
//! the ID token's claims or from the staff directory; a wrong state, a replayed answer, a wrong
//! nonce, a token signed by another key, an expired token, a token for another client and a
//! code redeemed with another sign-in's PKCE verifier are each refused with a Russian page and
//! an English log line; rotated keys are fetched again; a switched-off account loses its
//! session when its short-lived token is renewed. The browser test walks the same sign-in and
//! the sign-out at the provider in Chromium.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pos_e2e::{KAMCHATKA_CENTER, Mode, Platform};
use pos_platform::auth::Role;
use pos_platform::cache::MemoryCache;
use pos_platform::config::Secret;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_web::config::OidcConfig;
use pos_web::{App, WebConfig};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::idp::{CLIENT_ID, CLIENT_SECRET, Idp, Person, Tamper};

/// What the process logged, for the checks that refusals are logged (installed before the
/// platform's own quiet subscriber, which then stays out).
#[derive(Clone)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn get() -> Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs(Arc::new(Mutex::new(Vec::new())));
            let writer = logs.clone();
            tracing_subscriber::fmt()
                .with_env_filter("info,h2=off,hyper=off,tower=off")
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .try_init()
                .expect("the first subscriber of this test process");
            logs
        })
        .clone()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// What was logged after `from`.
    fn since(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()[from..]).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        std::io::stderr().write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The platform, the provider and a cabinet signing in through it.
struct Stand {
    platform: Platform,
    idp: Idp,
    base: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Stand {
    async fn start(token_minutes: u64) -> Stand {
        Logs::get();
        let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
        let idp = Idp::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let config = WebConfig {
            addr,
            grpc_endpoint: platform.endpoint.clone(),
            // Configured, and still off: the identity provider is.
            dev_sign_in: true,
            oidc: OidcConfig {
                issuer_url: idp.issuer.clone(),
                client_id: CLIENT_ID.into(),
                client_secret: Some(Secret::new(CLIENT_SECRET)),
                redirect_url: format!("{base}/cabinet/sign-in/callback"),
                token_minutes,
                ..OidcConfig::default()
            },
            ..WebConfig::default()
        };
        let app = App::try_new(
            config,
            platform.channel(),
            Arc::new(MemoryCache::new()),
            Some(testing::authenticator()),
            addr,
        )
        .expect("the cabinet's configuration works");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(pos_web::serve(app, listener, shutdown.clone()));
        Stand { platform, idp, base, shutdown, server }
    }

    /// Puts `subject` into the organization's staff directory, as its administrator would.
    async fn staff(&self, organization: &str, subject: &str, name: &str, roles: &[&str], active: bool) {
        let admin = testing::token("admin", organization, "41", &[Role::OrgAdmin]);
        let member = pb::StaffMember {
            subject: subject.into(),
            organization_id: organization.into(),
            full_name: name.into(),
            email: format!("{subject}@example.org"),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            active,
        };
        self.platform.ticketing().upsert_staff(outgoing(member, &admin)).await.expect("staff member saved");
    }

    async fn stop(self) {
        self.idp.stop();
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
        self.platform.stop().await.unwrap();
    }
}

/// A browser without a browser: follows no redirects by itself, keeps the cabinet's cookies.
struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    location: String,
    body: String,
}

impl Visitor {
    fn new(base: &str) -> Visitor {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Visitor { http, base: base.to_owned(), cookies: HashMap::new() }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder, url: &str) -> Page {
        let to_cabinet = url.starts_with(&self.base);
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let request = if to_cabinet && !cookie.is_empty() { request.header("cookie", cookie) } else { request };
        let response = request.send().await.expect("an answer");
        if to_cabinet {
            for set in response.headers().get_all("set-cookie") {
                let set = set.to_str().unwrap();
                let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
                let (name, value) = pair.split_once('=').unwrap();
                if attributes.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        let status = response.status().as_u16();
        let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        Page { status, location, body: response.text().await.unwrap_or_default() }
    }

    async fn get(&mut self, url: &str) -> Page {
        let request = self.http.get(url);
        self.send(request, url).await
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(url).form(form);
        self.send(request, url).await
    }

    /// Starts a sign-in: the provider's authorization URL.
    async fn begin(&mut self) -> String {
        let start = format!("{}/cabinet/sign-in/start", self.base);
        let page = self.get(&start).await;
        assert_eq!(page.status, 303, "the sign-in starts with a redirect to the provider: {}", page.body);
        assert!(self.cookies.contains_key("pos_pending"), "the pending sign-in has its cookie");
        page.location
    }

    /// The provider signs the person in: where it sends them back.
    async fn at_provider(&mut self, authorize: &str) -> String {
        let page = self.get(authorize).await;
        assert_eq!(page.status, 303, "the provider sends the person back: {}", page.body);
        assert!(page.location.starts_with(&format!("{}/cabinet/sign-in/callback?", self.base)), "{}", page.location);
        page.location
    }

    async fn sign_in(&mut self) -> Page {
        let authorize = self.begin().await;
        let callback = self.at_provider(&authorize).await;
        self.get(&callback).await
    }
}

fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v).unwrap_or_default()
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let (path, query) = url.split_once('?').unwrap();
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    for pair in &mut pairs {
        if pair.0 == name {
            pair.1 = value.to_owned();
        }
    }
    format!("{path}?{}", serde_urlencoded::to_string(pairs).unwrap())
}

fn coordinator() -> Person {
    Person {
        subject: "esia-1000123".into(),
        name: "Смирнова Ольга Петровна".into(),
        claims: json!({ "org": KAMCHATKA_CENTER, "roles": ["coordinator", "offline_access"] }),
    }
}

/// Asserts a refused sign-in: the page says `russian`, the log says why with `english`, and no
/// session was made.
fn assert_refused(visitor: &Visitor, page: &Page, russian: &str, logs: &Logs, from: usize, english: &str) {
    assert!((400..600).contains(&page.status), "refused, not {}: {}", page.status, page.body);
    assert!(page.body.contains("Вход не выполнен") && page.body.contains(russian), "{russian:?} in {}", page.body);
    assert!(page.body.contains("lang=\"ru\""));
    assert!(!visitor.cookies.contains_key("pos_session"), "no session after a refusal");
    assert!(!visitor.cookies.contains_key("pos_pending"), "the pending sign-in is spent");
    let logged = logs.since(from);
    let line = logged
        .lines()
        .find(|line| line.contains("sign-in through the identity provider refused"))
        .unwrap_or_else(|| panic!("no refusal logged; the log was:\n{logged}"));
    assert!(line.contains(english), "{english:?} in the log line {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_the_identity_provider_and_its_refusals() {
    // Every request renews the one-minute platform token: renewal is on every page below.
    let stand = Stand::start(1).await;
    let logs = Logs::get();
    let base = stand.base.clone();

    // The sign-in page offers the provider only: the development sign-in is off.
    let mut visitor = Visitor::new(&base);
    let page = visitor.get(&format!("{base}/cabinet/sign-in")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/cabinet/sign-in/start") && !page.body.contains("name=\"role\""), "{}", page.body);
    // Even a well-formed development sign-in, with its CSRF cookie, is refused.
    let csrf = "c".repeat(64);
    visitor.cookies.insert("pos_sign_in".into(), csrf.clone());
    let form = [("csrf", csrf.as_str()), ("role", "head"), ("organization", KAMCHATKA_CENTER)];
    let refused = visitor.post(&format!("{base}/cabinet/sign-in"), &form).await;
    assert_eq!(refused.status, 403, "no development sign-in beside the provider");
    assert!(refused.body.contains("Вход для разработки выключен"), "{}", refused.body);
    visitor.cookies.clear();

    // Organization and roles from the ID token's claims.
    stand.idp.sign_in_as(coordinator());
    let authorize = visitor.begin().await;
    for (name, expected) in [("response_type", "code"), ("code_challenge_method", "S256"), ("client_id", CLIENT_ID)] {
        assert_eq!(query_param(&authorize, name), expected);
    }
    assert!(query_param(&authorize, "scope").split(' ').any(|s| s == "openid"));
    assert!(query_param(&authorize, "state").len() >= 16 && query_param(&authorize, "nonce").len() >= 16);
    let callback = visitor.at_provider(&authorize).await;
    let landed = visitor.get(&callback).await;
    assert_eq!((landed.status, landed.location.as_str()), (303, "/cabinet"), "{}", landed.body);
    assert!(visitor.cookies.contains_key("pos_session") && !visitor.cookies.contains_key("pos_pending"));
    let cabinet = visitor.get(&format!("{base}/cabinet")).await;
    assert_eq!(cabinet.status, 200, "{}", cabinet.body);
    assert!(cabinet.body.contains("КАМЧАТСКИЙ ЦЕНТР ИНФОРМАТИЗАЦИИ"), "the organization's name in the header");
    assert!(cabinet.body.contains("Смирнова Ольга Петровна · Координатор"), "{}", cabinet.body);
    assert!(logs.since(0).contains("signed in through the identity provider"));

    // The answer cannot be used twice.
    let mut replay = Visitor::new(&base);
    let from = logs.len();
    let page = replay.get(&callback).await;
    assert_refused(
        &replay,
        &page,
        "не относится ко входу, начатому в этом браузере",
        &logs,
        from,
        "no pending sign-in",
    );

    // A state that is not the sign-in's.
    let mut visitor = Visitor::new(&base);
    let callback = {
        let authorize = visitor.begin().await;
        visitor.at_provider(&authorize).await
    };
    let from = logs.len();
    let page = visitor.get(&with_param(&callback, "state", "forged-state")).await;
    assert_refused(&visitor, &page, "не относится ко входу", &logs, from, "state does not match");

    // An ID token whose nonce is another sign-in's, signed by another key, expired, or issued
    // for another client.
    for (tamper, russian, english) in [
        (Tamper::Nonce, "выдано для другого входа", "Invalid nonce"),
        (Tamper::ForeignKey, "подписано не ключом службы входа", "Signature verification failed"),
        (Tamper::Expired, "просрочено", "Expired"),
        (Tamper::Audience, "выдано не для этого кабинета", "Invalid audiences"),
    ] {
        stand.idp.tamper(tamper);
        let mut visitor = Visitor::new(&base);
        let from = logs.len();
        let page = visitor.sign_in().await;
        assert_refused(&visitor, &page, russian, &logs, from, english);
    }
    stand.idp.tamper(Tamper::None);

    // Another sign-in's code, redeemed with this sign-in's PKCE verifier (a code injected into
    // someone else's browser): the provider refuses it.
    let mut victim = Visitor::new(&base);
    let mut attacker = Visitor::new(&base);
    let stolen = {
        let authorize = attacker.begin().await;
        attacker.at_provider(&authorize).await
    };
    let own = {
        let authorize = victim.begin().await;
        victim.at_provider(&authorize).await
    };
    let injected = with_param(&own, "code", &query_param(&stolen, "code"));
    let from = logs.len();
    let page = victim.get(&injected).await;
    assert_refused(&victim, &page, "код входа не принят", &logs, from, "PKCE verification failed");

    // The provider rotates its keys: a token under a key id the cabinet has not seen makes it
    // fetch the keys again; until the key is published, the token is refused.
    let fetches = stand.idp.key_fetches();
    stand.idp.sign_with("provider-2");
    let mut visitor = Visitor::new(&base);
    let from = logs.len();
    let page = visitor.sign_in().await;
    assert_refused(&visitor, &page, "подписано не ключом службы входа", &logs, from, "No matching key found");
    assert_eq!(stand.idp.key_fetches(), fetches + 1, "the keys were fetched again once");
    stand.idp.publish_rotated_key();
    let page = visitor.sign_in().await;
    assert_eq!((page.status, page.location.as_str()), (303, "/cabinet"), "{}", page.body);
    assert_eq!(stand.idp.key_fetches(), fetches + 2);

    // No organization or roles in the token: the staff directory says where and who.
    stand.staff(KAMCHATKA_CENTER, "esia-2000456", "Петров Иван Сергеевич", &["executor"], true).await;
    stand
        .idp
        .sign_in_as(Person { subject: "esia-2000456".into(), name: "Иван Петров".into(), claims: json!({}) });
    let mut executor = Visitor::new(&base);
    let page = executor.sign_in().await;
    assert_eq!((page.status, page.location.as_str()), (303, "/cabinet"), "{}", page.body);
    let cabinet = executor.get(&format!("{base}/cabinet")).await;
    assert_eq!(cabinet.status, 200);
    assert!(cabinet.body.contains("КАМЧАТСКИЙ ЦЕНТР ИНФОРМАТИЗАЦИИ"));
    assert!(cabinet.body.contains("Петров Иван Сергеевич · Исполнитель"), "the directory's name and roles");

    // Switched off in the directory: the next token is not minted and the session ends.
    stand.staff(KAMCHATKA_CENTER, "esia-2000456", "Петров Иван Сергеевич", &["executor"], false).await;
    let from = logs.len();
    let page = executor.get(&format!("{base}/cabinet")).await;
    assert_eq!((page.status, page.location.as_str()), (303, "/cabinet/sign-in"));
    assert!(logs.since(from).contains("session ended on renewal"));
    let mut executor = Visitor::new(&base);
    let from = logs.len();
    let page = executor.sign_in().await;
    assert_refused(&executor, &page, "отключена администратором", &logs, from, "switched off");

    // Known to no organization's directory and without claims: refused.
    stand.idp.sign_in_as(Person { subject: "esia-3000789".into(), name: "Некто".into(), claims: json!({}) });
    let mut stranger = Visitor::new(&base);
    let from = logs.len();
    let page = stranger.sign_in().await;
    assert_refused(&stranger, &page, "не числится среди сотрудников", &logs, from, "no organization's staff directory");

    // Claims naming an organization the directory does not have, or no cabinet role.
    for (claims, russian, english) in [
        (json!({ "org": "99-nowhere", "roles": "coordinator" }), "нет в справочнике", "not in the directory"),
        (json!({ "org": KAMCHATKA_CENTER, "roles": ["operator", "system"] }), "нет ни одной роли", "no cabinet role"),
    ] {
        stand.idp.sign_in_as(Person { subject: "esia-4000000".into(), name: "Иванов".into(), claims });
        let mut visitor = Visitor::new(&base);
        let from = logs.len();
        let page = visitor.sign_in().await;
        assert_refused(&visitor, &page, russian, &logs, from, english);
    }

    stand.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_out_through_the_identity_provider_in_chromium() {
    let chromium = std::env::var("POS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "no Chromium at {chromium}: deploy/local/tools.sh installs Debian's");
    crate::browser::ensure_node_modules();
    let stand = Stand::start(15).await;
    stand.idp.sign_in_as(coordinator());
    let screenshots = crate::browser::screenshots_dir();

    let mut node = tokio::process::Command::new("node")
        .arg("oidc.mjs")
        .current_dir(crate::browser::browser_dir())
        .env("BASE_URL", &stand.base)
        .env("IDP_URL", &stand.idp.issuer)
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdout = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut output = Vec::new();
    let story = async {
        while let Some(line) = stdout.next_line().await.expect("node's output") {
            println!("browser: {line}");
            output.push(line);
        }
        node.wait().await.expect("node exits")
    };
    let status = tokio::time::timeout(Duration::from_secs(120), story).await.expect("the browser finishes in time");
    assert!(status.success(), "the browser's sign-in failed: {status}");
    assert_eq!(output.last().map(String::as_str), Some("DONE"));
    assert_eq!(stand.idp.authorizations(), 1, "one trip to the provider");

    // Signing out went on to the provider's end-session endpoint, saying who and where back.
    let ended = stand.idp.end_sessions();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert!(ended[0].get("id_token_hint").is_some_and(|hint| hint.split('.').count() == 3));
    assert_eq!(
        ended[0].get("post_logout_redirect_uri").map(String::as_str),
        Some(format!("{}/cabinet/sign-in?signed_out=1", stand.base).as_str())
    );
    stand.stop().await;
}
