//! The form an organization embeds on its site: `/widget.js` inserts an iframe of `/widget`,
//! where a citizen picks what the appeal is about (category → subcategory → fact, with search),
//! the organization where the fact needs one, writes the text, attaches files (uploaded at once,
//! streamed to intake), leaves contacts, consents, and submits to intake's SubmitAppeal.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Offset, TimeZone, Utc};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use maud::{Markup, html};
use pos_platform::grpc::outgoing;
use pos_proto::v1 as pb;
use pos_proto::v1::intake_service_client::IntakeServiceClient;
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use serde::Deserialize;
use tonic_types::StatusExt;

use super::form_token::{FormToken, Refusal, proof_of_work_holds};
use super::{CitizenState, limits, pages};

/// The anonymous reader of the classifier and the directory.
const READER: &str = "widget";
/// How long a token minted for one call to the services lives.
const CALL_TOKEN_TTL: Duration = Duration::from_secs(300);
/// How many organizations a search shows.
const MAX_ORGANIZATIONS: usize = 30;
/// Bytes per message of an upload to intake.
const CHUNK_BYTES: usize = 64 * 1024;

/// The embed script: `<script src=".../widget.js" data-organization="<id>" async></script>`
/// (optionally `data-category`). It puts the form's iframe where the script stands and follows
/// the height the form reports, so the site shows no inner scroll bar.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            // Any site includes it.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
        ],
        WIDGET_JS,
    )
        .into_response()
}

const WIDGET_JS: &str = r#"(function () {
  'use strict';
  var script = document.currentScript;
  if (!script || !script.dataset.organization) { return; }
  var origin = new URL(script.src, document.baseURI).origin;
  var query = '?organization=' + encodeURIComponent(script.dataset.organization);
  if (script.dataset.category) { query += '&category=' + encodeURIComponent(script.dataset.category); }
  var frame = document.createElement('iframe');
  frame.src = origin + '/widget' + query;
  frame.title = script.dataset.title || 'Форма обращения в организацию';
  frame.setAttribute('style', 'display:block;width:100%;max-width:48rem;min-height:40rem;border:0;');
  frame.className = 'pos-widget';
  if (script.parentNode && script.parentNode !== document.head) {
    script.parentNode.insertBefore(frame, script);
  } else {
    document.body.appendChild(frame);
  }
  window.addEventListener('message', function (event) {
    if (event.origin !== origin || event.source !== frame.contentWindow) { return; }
    var data = event.data;
    if (data && data.type === 'pos-widget-height' && typeof data.height === 'number') {
      frame.style.height = Math.max(200, Math.ceil(data.height)) + 'px';
    }
  });
})();
"#;

#[derive(Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    organization: String,
    #[serde(default)]
    category: String,
}

/// The form, fresh.
pub async fn page(State(state): State<CitizenState>, Query(query): Query<PageQuery>) -> Response {
    let context = match Context::load(&state, &query.organization).await {
        Ok(context) => context,
        Err(response) => return response,
    };
    let token = state.forms.issue(now_ms());
    let values = Values { category_id: query.category, ..Values::default() };
    form_page(&state, &context, &token, &values, &Errors::default(), StatusCode::OK)
}

/// What the form is built from: the organization that embeds it and the classifier.
struct Context {
    organization: pb::Organization,
    classifier: pb::Classifier,
    /// The regions to choose from when the organization has none (a federal body answers
    /// every region): the citizen says where they live.
    regions: Vec<pb::Region>,
}

impl Context {
    async fn load(state: &CitizenState, organization_id: &str) -> Result<Context, Response> {
        if organization_id.trim().is_empty() || organization_id.len() > 128 {
            return Err(not_found());
        }
        let token = state.applicant_token(READER, "", CALL_TOKEN_TTL).ok_or_else(pages::unavailable)?;
        let mut routing = RoutingServiceClient::new(state.app.channel.clone());
        let request = pb::GetOrganizationRequest { id: organization_id.to_owned() };
        let organization = match routing.get_organization(outgoing(request, &token)).await {
            Ok(organization) => organization.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Err(not_found()),
            Err(status) => {
                tracing::warn!(code = ?status.code(), "widget: organization unavailable");
                return Err(pages::unavailable());
            }
        };
        let classifier = match routing.list_classifier(outgoing(pb::ListClassifierRequest {}, &token)).await {
            Ok(classifier) => classifier.into_inner(),
            Err(status) => {
                tracing::warn!(code = ?status.code(), "widget: classifier unavailable");
                return Err(pages::unavailable());
            }
        };
        let regions = if organization.region_code.is_empty() {
            match routing.list_regions(outgoing(pb::ListRegionsRequest {}, &token)).await {
                Ok(regions) => regions.into_inner().regions,
                Err(status) => {
                    tracing::warn!(code = ?status.code(), "widget: regions unavailable");
                    return Err(pages::unavailable());
                }
            }
        } else {
            Vec::new()
        };
        Ok(Context { organization, classifier, regions })
    }
}

fn not_found() -> Response {
    pages::message(
        StatusCode::NOT_FOUND,
        "Форма не настроена",
        "Организация, для которой встроена эта форма, не найдена. Сообщите об этом администратору сайта.",
    )
}

/// What the citizen entered, kept when the form comes back with errors.
#[derive(Clone, Debug, Default)]
struct Values {
    region_code: String,
    category_id: String,
    subcategory_id: String,
    fact_id: String,
    picked_organization_id: String,
    text: String,
    full_name: String,
    email: String,
    phone: String,
    consent: bool,
    /// Uploaded files: id and name.
    attachments: Vec<(String, String)>,
}

impl Values {
    fn from_fields(fields: &[(String, String)]) -> Values {
        let one =
            |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).unwrap_or_default();
        Values {
            region_code: one("region_code"),
            category_id: one("category_id"),
            subcategory_id: one("subcategory_id"),
            fact_id: one("fact_id"),
            picked_organization_id: one("picked_organization_id"),
            // The text keeps its own spacing.
            text: fields.iter().find(|(k, _)| k == "text").map(|(_, v)| v.clone()).unwrap_or_default(),
            full_name: one("full_name"),
            email: one("email"),
            phone: one("phone"),
            consent: one("consent") == "yes",
            attachments: fields
                .iter()
                .filter(|(k, _)| k == "attachment")
                .filter_map(|(_, v)| v.split_once(':'))
                .map(|(id, name)| (id.to_owned(), name.to_owned()))
                .collect(),
        }
    }
}

/// Field errors by the form's field id, and errors of the form as a whole.
#[derive(Debug, Default)]
struct Errors {
    fields: BTreeMap<&'static str, String>,
    general: Vec<String>,
}

impl Errors {
    fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_empty()
    }

    fn field(&self, id: &str) -> Option<&str> {
        self.fields.get(id).map(String::as_str)
    }
}

/// The form's fields in the order they are shown, with the names the error summary uses.
const FIELDS: [(&str, &str); 11] = [
    ("region", "Регион"),
    ("category", "Категория"),
    ("subcategory", "Подкатегория"),
    ("fact", "Тема обращения"),
    ("picked", "Организация"),
    ("text", "Текст обращения"),
    ("files", "Файлы"),
    ("full_name", "Фамилия, имя, отчество"),
    ("email", "Электронная почта"),
    ("phone", "Телефон"),
    ("consent", "Согласие на обработку персональных данных"),
];

/// Intake's field violations as the form's fields and Russian words.
fn intake_errors(violations: &[tonic_types::FieldViolation], config: &super::CitizenConfig) -> Errors {
    let mut errors = Errors::default();
    for violation in violations {
        let (field, message): (&'static str, String) = match violation.field.as_str() {
            "region_code" => ("region", "Выберите регион из списка.".into()),
            "category_id" => ("category", "Выберите категорию из списка.".into()),
            "subcategory_id" => ("subcategory", "Выберите подкатегорию из списка.".into()),
            "fact_id" => ("fact", "Выберите тему обращения из списка.".into()),
            "picked_organization_id" => ("picked", "Выберите организацию нужного типа из списка.".into()),
            "text" if violation.description.contains("longer") => {
                ("text", "Текст слишком длинный: сократите его.".into())
            }
            "text" => ("text", "Опишите, что случилось.".into()),
            "applicant.full_name" if violation.description.contains("longer") => {
                ("full_name", "Слишком длинное имя.".into())
            }
            "applicant.full_name" | "applicant" => ("full_name", "Укажите фамилию, имя и отчество.".into()),
            "applicant.email" => ("email", "Проверьте адрес электронной почты: например, ivanova@mail.ru.".into()),
            "applicant.phone" => {
                ("phone", "Проверьте номер телефона: только цифры, можно с +, скобками, дефисами и пробелами.".into())
            }
            field if field.starts_with("attachment_ids") => {
                ("files", format!("Файл не принят: приложите его снова (до {} файлов).", config.max_files))
            }
            _ => {
                errors.general.push("Не удалось принять обращение. Проверьте поля и отправьте ещё раз.".into());
                continue;
            }
        };
        errors.fields.entry(field).or_insert(message);
    }
    errors
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The human name of an organization type, in the accusative of "Выберите …".
fn type_to_pick(kind: i32) -> &'static str {
    match pb::OrganizationType::try_from(kind).unwrap_or(pb::OrganizationType::Unspecified) {
        pb::OrganizationType::School => "школу",
        pb::OrganizationType::College => "колледж или техникум",
        pb::OrganizationType::Clinic => "поликлинику",
        pb::OrganizationType::MunicipalEducationDepartment => "муниципальный орган управления образованием",
        pb::OrganizationType::RegionalMinistry => "министерство",
        pb::OrganizationType::RegionalCenter => "региональный центр",
        pb::OrganizationType::RegionalCabinet | pb::OrganizationType::FederalAgency => "орган власти",
        pb::OrganizationType::Other | pb::OrganizationType::Unspecified => "организацию",
    }
}

/// The organization type a fact needs the applicant to pick; none when the addressee is fixed.
fn picked_type(fact: &pb::Fact) -> Option<i32> {
    fact.addressee.as_ref().filter(|a| a.kind == pb::AddresseeKind::Picked as i32).map(|a| a.organization_type)
}

/// The classifier as the page's script reads it (active entries only).
fn classifier_json(classifier: &pb::Classifier) -> String {
    let categories: Vec<_> = classifier
        .categories
        .iter()
        .filter(|c| c.active)
        .map(|c| serde_json::json!({ "id": c.id, "name": c.name }))
        .collect();
    let subcategories: Vec<_> = classifier
        .subcategories
        .iter()
        .filter(|s| s.active)
        .map(|s| serde_json::json!({ "id": s.id, "category": s.category_id, "name": s.name }))
        .collect();
    let facts: Vec<_> = classifier
        .facts
        .iter()
        .filter(|f| f.active)
        .map(|f| {
            let kind = picked_type(f);
            serde_json::json!({
                "id": f.id, "subcategory": f.subcategory_id, "name": f.name,
                "pickedType": kind, "pickedLabel": kind.map(type_to_pick),
            })
        })
        .collect();
    serde_json::json!({ "categories": categories, "subcategories": subcategories, "facts": facts }).to_string()
}

fn described_by(hint: Option<&str>, id: &str, errors: &Errors) -> Option<String> {
    let error = errors.field(id).map(|_| format!("{id}-error"));
    let ids: Vec<String> = hint.map(str::to_owned).into_iter().chain(error).collect();
    (!ids.is_empty()).then(|| ids.join(" "))
}

fn error_of(id: &str, errors: &Errors) -> Markup {
    html! {
        @if let Some(message) = errors.field(id) {
            p.field-error id={ (id) "-error" } { (message) }
        }
    }
}

fn form_page(
    state: &CitizenState,
    context: &Context,
    token: &str,
    values: &Values,
    errors: &Errors,
    status: StatusCode,
) -> Response {
    let config = &state.config;
    let organization = &context.organization;
    let classifier = &context.classifier;
    let category = if classifier.categories.iter().any(|c| c.id == values.category_id && c.active) {
        values.category_id.as_str()
    } else {
        ""
    };
    let subcategories: Vec<&pb::Subcategory> =
        classifier.subcategories.iter().filter(|s| s.active && s.category_id == category).collect();
    let subcategory = subcategories.iter().find(|s| s.id == values.subcategory_id).map_or("", |s| s.id.as_str());
    let facts: Vec<&pb::Fact> =
        classifier.facts.iter().filter(|f| f.active && f.subcategory_id == subcategory).collect();
    let fact = facts.iter().find(|f| f.id == values.fact_id).copied();
    let needs_pick = fact.and_then(picked_type);
    let picked = if values.picked_organization_id.is_empty() && needs_pick == Some(organization.r#type) {
        organization.id.as_str()
    } else {
        values.picked_organization_id.as_str()
    };
    let nonce = token.split('.').nth(1).unwrap_or_default();
    let extensions = config.file_extensions.join(", ");
    let accept = config.file_extensions.iter().map(|e| format!(".{e}")).collect::<Vec<_>>().join(",");
    let megabytes = config.max_file_bytes as f64 / (1024.0 * 1024.0);
    let size_limit = if megabytes >= 1.0 {
        format!("{} МБ", (megabytes * 10.0).round() / 10.0).replace('.', ",")
    } else {
        format!("{} КБ", config.max_file_bytes / 1024)
    };
    let invalid = |id: &str| errors.field(id).map(|_| "true");
    let body = pages::layout(
        &format!("Обращение — {}", organization.short_name),
        true,
        html! {
            h1 { "Обращение в организацию" }
            p.lead { "Адресат по умолчанию: " strong { (organization.short_name) } ". Поля со звёздочкой (*) обязательны." }
            @if !errors.is_empty() {
                div.error-summary #error-summary role="alert" tabindex="-1" aria-labelledby="error-summary-title" {
                    h2 #error-summary-title { "Обращение не отправлено" }
                    @for message in &errors.general { p { (message) } }
                    @if !errors.fields.is_empty() {
                        ul {
                            @for (id, label) in FIELDS {
                                @if let Some(message) = errors.field(id) {
                                    li { a href={ "#" (id) } { (label) ": " (message) } }
                                }
                            }
                        }
                    }
                }
            }
            form #appeal-form method="post" action="/widget"
                data-classifier=(classifier_json(classifier))
                data-pow-bits=(config.pow_bits)
                data-max-file-bytes=(config.max_file_bytes)
                data-max-files=(config.max_files)
                data-extensions=(config.file_extensions.join(","))
                data-region=(organization.region_code)
                data-default-organization=(organization.id)
                data-default-organization-name=(organization.short_name)
                data-default-organization-type=(organization.r#type) {
                input type="hidden" name="token" value=(token);
                input type="hidden" name="request_id" value=(nonce);
                input type="hidden" name="pow" #pow value="";
                input type="hidden" name="organization" value=(organization.id);
                @if context.regions.is_empty() {
                    input type="hidden" name="region_code" value=(organization.region_code);
                } @else {
                    div.field {
                        label for="region" { "Ваш регион *" }
                        select #region name="region_code" required aria-invalid=[invalid("region")]
                            aria-describedby=[described_by(None, "region", errors)] {
                            option value="" { "— выберите —" }
                            @for region in &context.regions {
                                option value=(region.code) selected[region.code == values.region_code] { (region.name) }
                            }
                        }
                        (error_of("region", errors))
                    }
                }
                fieldset {
                    legend { "О чём обращение" }
                    div.field.search {
                        label for="topic-search" { "Найти тему" }
                        input #topic-search type="search" autocomplete="off" aria-describedby="topic-search-hint"
                            aria-controls="topic-results";
                        p.hint #topic-search-hint { "Введите слово, например «дневник» или «питание», и выберите тему из найденных." }
                        ul #topic-results.results aria-label="Найденные темы" hidden {}
                        p #topic-status.visually-hidden aria-live="polite" {}
                    }
                    div.field {
                        label for="category" { "Категория *" }
                        select #category name="category_id" required aria-invalid=[invalid("category")]
                            aria-describedby=[described_by(None, "category", errors)] {
                            option value="" { "— выберите —" }
                            @for c in classifier.categories.iter().filter(|c| c.active) {
                                option value=(c.id) selected[c.id == category] { (c.name) }
                            }
                        }
                        (error_of("category", errors))
                    }
                    div.field {
                        label for="subcategory" { "Подкатегория *" }
                        select #subcategory name="subcategory_id" required aria-invalid=[invalid("subcategory")]
                            aria-describedby=[described_by(None, "subcategory", errors)] {
                            option value="" { "— выберите —" }
                            @for s in &subcategories {
                                option value=(s.id) selected[s.id == subcategory] { (s.name) }
                            }
                        }
                        (error_of("subcategory", errors))
                    }
                    div.field {
                        label for="fact" { "Тема обращения *" }
                        select #fact name="fact_id" required aria-invalid=[invalid("fact")]
                            aria-describedby=[described_by(None, "fact", errors)] {
                            option value="" { "— выберите —" }
                            @for f in &facts {
                                option value=(f.id) selected[Some(f.id.as_str()) == fact.map(|f| f.id.as_str())] { (f.name) }
                            }
                        }
                        (error_of("fact", errors))
                    }
                }
                fieldset #organization-field hidden[needs_pick.is_none()] {
                    legend #organization-legend {
                        "Выберите " (needs_pick.map_or("организацию", type_to_pick)) " *"
                    }
                    div.field.search {
                        label for="organization-search" { "Найти по названию" }
                        input #organization-search type="search" autocomplete="off" aria-describedby="organization-hint";
                        p.hint #organization-hint { "Список — организации вашего региона нужного типа." }
                    }
                    div.field {
                        label for="picked" { "Организация *" }
                        select #picked name="picked_organization_id" aria-invalid=[invalid("picked")]
                            aria-describedby=[described_by(None, "picked", errors)] {
                            option value="" { "— выберите —" }
                            @if !picked.is_empty() {
                                option value=(picked) selected {
                                    @if picked == organization.id { (organization.short_name) } @else { (picked) }
                                }
                            }
                        }
                        (error_of("picked", errors))
                    }
                }
                div.field {
                    label for="text" { "Текст обращения *" }
                    textarea #text name="text" rows="8" required maxlength="10000" aria-invalid=[invalid("text")]
                        aria-describedby=[described_by(Some("text-hint"), "text", errors)] { (values.text) }
                    p.hint #text-hint { "Опишите, что случилось, где и когда. Не пишите номера паспорта и СНИЛС." }
                    (error_of("text", errors))
                }
                div.field {
                    label for="files" { "Файлы" }
                    p.hint #files-hint {
                        "До " (config.max_files) " файлов, каждый до " (size_limit) ". Типы: " (extensions) "."
                    }
                    input #files type="file" multiple accept=(accept) aria-invalid=[invalid("files")]
                        aria-describedby=[described_by(Some("files-hint files-status"), "files", errors)];
                    p #files-status aria-live="polite" {}
                    (error_of("files", errors))
                    ul #file-list.files {
                        @for (id, name) in &values.attachments {
                            li {
                                input type="hidden" name="attachment" value={ (id) ":" (name) };
                                span { (name) }
                                " "
                                button.link type="button" data-remove-file { "Удалить" span.visually-hidden { " файл " (name) } }
                            }
                        }
                    }
                }
                fieldset {
                    legend { "Как с вами связаться" }
                    div.field {
                        label for="full_name" { "Фамилия, имя, отчество *" }
                        input #full_name name="full_name" type="text" required autocomplete="name" maxlength="300" value=(values.full_name)
                            aria-invalid=[invalid("full_name")] aria-describedby=[described_by(None, "full_name", errors)];
                        (error_of("full_name", errors))
                    }
                    div.field {
                        label for="email" { "Электронная почта" }
                        input #email name="email" type="email" autocomplete="email" maxlength="320" value=(values.email)
                            aria-invalid=[invalid("email")] aria-describedby=[described_by(Some("contact-hint"), "email", errors)];
                        (error_of("email", errors))
                    }
                    div.field {
                        label for="phone" { "Телефон" }
                        input #phone name="phone" type="tel" autocomplete="tel" maxlength="40" value=(values.phone)
                            aria-invalid=[invalid("phone")] aria-describedby=[described_by(Some("contact-hint"), "phone", errors)];
                        (error_of("phone", errors))
                    }
                    p.hint #contact-hint { "Укажите почту или телефон. На почту придут номер обращения, ссылка на его страницу и ответ." }
                }
                // The honeypot: people never see or reach it; a robot that fills every field is refused.
                div.hp aria-hidden="true" {
                    label for="website" { "Сайт (не заполняйте)" }
                    input #website name="website" type="text" tabindex="-1" autocomplete="off" value="";
                }
                div.field.consent {
                    input #consent type="checkbox" name="consent" value="yes" required checked[values.consent]
                        aria-invalid=[invalid("consent")] aria-describedby=[described_by(None, "consent", errors)];
                    label for="consent" {
                        "Я согласен(на) на обработку моих персональных данных для рассмотрения обращения (152-ФЗ) *"
                    }
                    (error_of("consent", errors))
                }
                button #submit type="submit" { "Отправить обращение" }
                p #submit-status aria-live="polite" {}
            }
        },
    );
    (status, body).into_response()
}

/// A field of a URL-encoded form.
fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

/// The appeal: checks, then intake's SubmitAppeal; the result page, or the form with errors.
pub async fn submit(State(state): State<CitizenState>, body: Bytes) -> Response {
    let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return refused();
    };
    let config = &state.config;
    let token = field(&fields, "token");
    let form = match state.forms.verify_timed(
        token,
        now_ms(),
        Duration::from_secs(config.min_fill_secs),
        Duration::from_secs(config.max_form_age_minutes.max(1) * 60),
    ) {
        Ok(form) => Some(form),
        Err(Refusal::Invalid) => {
            tracing::info!(target: "security", "widget form with an invalid token refused");
            return refused();
        }
        Err(Refusal::TooFast) => None,
        Err(Refusal::TooOld) => {
            // A fresh form with what was entered; the files were the old form's, so they go.
            let values = Values { attachments: Vec::new(), ..Values::from_fields(&fields) };
            let errors = Errors {
                general: vec![
                    "Форма была открыта слишком долго. Проверьте поля, заново приложите файлы и отправьте ещё раз."
                        .into(),
                ],
                ..Errors::default()
            };
            return again(&state, &fields, &state.forms.issue(now_ms()), &values, errors).await;
        }
    };
    let values = Values::from_fields(&fields);
    let Some(form) = form else {
        tracing::info!(target: "security", "widget form sent too fast refused");
        let errors = Errors {
            general: vec!["Форма отправлена слишком быстро. Проверьте поля и отправьте ещё раз.".into()],
            ..Errors::default()
        };
        return again(&state, &fields, token, &values, errors).await;
    };
    if !field(&fields, "website").is_empty() {
        tracing::info!(target: "security", "widget honeypot filled: refused");
        return refused();
    }
    if !proof_of_work_holds(token, field(&fields, "pow"), config.pow_bits) {
        let errors = Errors {
            general: vec![
                "Страница ещё готовит отправку (это защита от роботов, она занимает несколько секунд). Отправьте форму ещё раз."
                    .into(),
            ],
            ..Errors::default()
        };
        return again(&state, &fields, token, &values, errors).await;
    }
    let mut errors = Errors::default();
    if !values.consent {
        errors.fields.insert("consent", "Без согласия обращение не может быть рассмотрено: отметьте его.".into());
    }
    if values.email.is_empty() && values.phone.is_empty() {
        errors.fields.insert("email", "Укажите электронную почту или телефон: иначе ответ не дойдёт до вас.".into());
    }
    if !errors.is_empty() {
        return again(&state, &fields, token, &values, errors).await;
    }
    for key in limits::contact_keys(&values.email, &values.phone) {
        if let Err(wait) = state.contact_limiter.check(&key) {
            metrics::counter!("pos_web_citizen_limited_total", "by" => "contact").increment(1);
            tracing::info!(target: "security", "citizen form rate limited by contact");
            return limits::too_many(wait);
        }
    }
    registered(&state, &fields, &form, token, values).await
}

/// Sends the appeal to intake; the result, or the form with intake's field errors.
async fn registered(
    state: &CitizenState,
    fields: &[(String, String)],
    form: &FormToken,
    token: &str,
    values: Values,
) -> Response {
    let organization_id = field(fields, "organization");
    let region_code = field(fields, "region_code");
    // The region is the organization's: the widget stands on a site of that region.
    let context = match Context::load(state, organization_id).await {
        Ok(context) => context,
        Err(response) => return response,
    };
    let region_code =
        if region_code.is_empty() { context.organization.region_code.clone() } else { region_code.to_owned() };
    let Some(applicant_token) = state.applicant_token(&form.subject(), &region_code, CALL_TOKEN_TTL) else {
        return pages::unavailable();
    };
    let request = pb::SubmitAppealRequest {
        request_id: form.nonce.clone(),
        source: pb::Source::SiteWidget as i32,
        applicant: Some(pb::Applicant {
            full_name: values.full_name.clone(),
            email: values.email.clone(),
            phone: values.phone.clone(),
            account_id: String::new(),
        }),
        region_code: region_code.clone(),
        category_id: values.category_id.clone(),
        subcategory_id: values.subcategory_id.clone(),
        fact_id: values.fact_id.clone(),
        picked_organization_id: values.picked_organization_id.clone(),
        text: values.text.clone(),
        attachment_ids: values.attachments.iter().map(|(id, _)| id.clone()).collect(),
        ..Default::default()
    };
    let mut intake = IntakeServiceClient::new(state.app.channel.clone());
    match intake.submit_appeal(outgoing(request, &applicant_token)).await {
        Ok(response) => {
            let response = response.into_inner();
            tracing::info!(appeal_id = %response.appeal_id, number = response.number, "appeal submitted through the widget");
            result_page(&response, &region_code)
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let violations = status.get_details_bad_request().map(|b| b.field_violations).unwrap_or_default();
            let mut errors = intake_errors(&violations, &state.config);
            if errors.is_empty() {
                errors.general.push("Не удалось принять обращение. Проверьте поля и отправьте ещё раз.".into());
            }
            form_page(state, &context, token, &values, &errors, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(status) => {
            tracing::warn!(code = ?status.code(), message = %status.message(), "widget submission failed");
            pages::unavailable()
        }
    }
}

/// The form again, with `errors`.
async fn again(
    state: &CitizenState,
    fields: &[(String, String)],
    token: &str,
    values: &Values,
    errors: Errors,
) -> Response {
    match Context::load(state, field(fields, "organization")).await {
        Ok(context) => form_page(state, &context, token, values, &errors, StatusCode::UNPROCESSABLE_ENTITY),
        Err(response) => response,
    }
}

fn refused() -> Response {
    pages::message(
        StatusCode::FORBIDDEN,
        "Форма не принята",
        "Форма устарела или отправлена не со страницы организации. Обновите страницу и заполните форму ещё раз.",
    )
}

/// `07.12.2026 14:05` and the zone as the citizen says it: `по местному времени (UTC+12)`.
pub fn local_moment(at: DateTime<Utc>, region_code: &str) -> String {
    let zone = pos_regions::zone(region_code).unwrap_or(chrono_tz::Europe::Moscow);
    let local = zone.from_utc_datetime(&at.naive_utc());
    let offset = local.offset().fix().local_minus_utc();
    let (hours, minutes) = (offset.abs() / 3600, offset.abs() % 3600 / 60);
    let sign = if offset < 0 { '-' } else { '+' };
    let utc = if minutes == 0 { format!("UTC{sign}{hours}") } else { format!("UTC{sign}{hours}:{minutes:02}") };
    format!("{} по местному времени ({utc})", local.format("%d.%m.%Y %H:%M"))
}

fn result_page(response: &pb::SubmitAppealResponse, region_code: &str) -> Response {
    let registered = response
        .registered_at
        .as_ref()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .unwrap_or_else(Utc::now);
    let body = pages::layout(
        "Обращение зарегистрировано — Платформа обратной связи",
        true,
        html! {
            div.notice.success role="status" {
                h1 { "Обращение зарегистрировано" }
                dl.facts {
                    dt { "Номер" }
                    dd #appeal-number { (response.number) }
                    dt { "Дата и время регистрации" }
                    dd #appeal-registered { (local_moment(registered, region_code)) }
                }
                p { "Если вы указали электронную почту, на неё придёт письмо с номером и ссылкой на страницу обращения: там видно, как оно рассматривается, и там же будет ответ." }
                p { "Срок ответа — не больше 30 дней, по некоторым темам короче." }
            }
        },
    );
    (StatusCode::OK, body).into_response()
}

#[derive(Deserialize)]
pub struct OrganizationsQuery {
    #[serde(default)]
    region: String,
    #[serde(default, rename = "type")]
    kind: i32,
    #[serde(default)]
    q: String,
}

/// The directory of the citizen's region, of the type the fact needs, as JSON for the form's
/// script: `[{"id", "name", "address"}]`.
pub async fn organizations(State(state): State<CitizenState>, Query(query): Query<OrganizationsQuery>) -> Response {
    if !pos_regions::is_known(&query.region) || query.q.chars().count() > 100 {
        return json(StatusCode::BAD_REQUEST, serde_json::json!([]));
    }
    let Some(token) = state.applicant_token(READER, &query.region, CALL_TOKEN_TTL) else {
        return json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!([]));
    };
    let request = pb::ListOrganizationsRequest {
        region_code: query.region,
        r#type: query.kind,
        query: query.q,
        ..Default::default()
    };
    let mut routing = RoutingServiceClient::new(state.app.channel.clone());
    match routing.list_organizations(outgoing(request, &token)).await {
        Ok(response) => {
            let found: Vec<_> = response
                .into_inner()
                .organizations
                .into_iter()
                .take(MAX_ORGANIZATIONS)
                .map(|o| serde_json::json!({ "id": o.id, "name": o.short_name, "address": o.address }))
                .collect();
            json(StatusCode::OK, serde_json::Value::Array(found))
        }
        Err(status) => {
            tracing::warn!(code = ?status.code(), "widget: directory unavailable");
            json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!([]))
        }
    }
}

fn upload_error(status: StatusCode, message: &str) -> Response {
    json(status, serde_json::json!({ "error": message }))
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], value.to_string()).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// One file of the form, streamed to intake's UploadAttachment as it arrives, under the form's
/// anonymous applicant. The form token and its proof of work come in headers (`X-Form-Token`,
/// `X-Proof`), the file's name percent-encoded in `X-File-Name`; the body is the file.
pub async fn upload(State(state): State<CitizenState>, request: Request) -> Response {
    let config = &state.config;
    let (parts, body) = request.into_parts();
    let token = header_str(&parts.headers, "x-form-token");
    let form = match state.forms.verify_timed(
        token,
        now_ms(),
        Duration::ZERO,
        Duration::from_secs(config.max_form_age_minutes.max(1) * 60),
    ) {
        Ok(form) => form,
        Err(Refusal::Invalid | Refusal::TooFast) => {
            return upload_error(StatusCode::FORBIDDEN, "Форма устарела: обновите страницу.");
        }
        Err(Refusal::TooOld) => return upload_error(StatusCode::FORBIDDEN, "Форма устарела: обновите страницу."),
    };
    if !proof_of_work_holds(token, header_str(&parts.headers, "x-proof"), config.pow_bits) {
        return upload_error(StatusCode::FORBIDDEN, "Страница ещё готовит отправку: подождите несколько секунд.");
    }
    let name = percent_decode(header_str(&parts.headers, "x-file-name"));
    let name: String = name.chars().filter(|c| !c.is_control()).take(255).collect();
    if name.trim().is_empty() {
        return upload_error(StatusCode::BAD_REQUEST, "У файла нет имени.");
    }
    let declared: Option<u64> = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let max = config.max_file_bytes;
    let too_large =
        format!("Файл больше {} МБ: уменьшите его или разделите.", max / (1024 * 1024)).replace(" 0 МБ", " 1 МБ");
    let Some(size) = declared else {
        return upload_error(StatusCode::LENGTH_REQUIRED, "Не удалось прочитать размер файла.");
    };
    if size > max {
        return upload_error(StatusCode::PAYLOAD_TOO_LARGE, &too_large);
    }
    let Some(applicant_token) = state.applicant_token(&form.subject(), "", CALL_TOKEN_TTL) else {
        return upload_error(StatusCode::SERVICE_UNAVAILABLE, "Сервис временно недоступен.");
    };
    let meta = pb::UploadAttachmentRequest {
        part: Some(pb::upload_attachment_request::Part::Meta(pb::AttachmentMeta {
            file_name: name.clone(),
            size: size as i64,
        })),
    };
    let chunks = chunked(body, size);
    let stream = futures::stream::once(async move { meta }).chain(chunks);
    let mut intake = IntakeServiceClient::new(state.app.channel.clone());
    match intake.upload_attachment(outgoing(stream, &applicant_token)).await {
        Ok(response) => {
            let response = response.into_inner();
            json(
                StatusCode::OK,
                serde_json::json!({ "id": response.attachment_id, "name": name, "size": response.size }),
            )
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let description = status
                .get_details_bad_request()
                .and_then(|b| b.field_violations.first().map(|v| v.description.clone()))
                .unwrap_or_default();
            let message = if description.contains("type") || description.contains("content") {
                format!("Такой тип файла не принимается. Можно: {}.", config.file_extensions.join(", "))
            } else if description.contains("limit") || description.contains("large") || description.contains("exceed") {
                too_large
            } else {
                "Файл не принят: проверьте его и приложите снова.".to_owned()
            };
            upload_error(StatusCode::UNPROCESSABLE_ENTITY, &message)
        }
        Err(status) => {
            tracing::warn!(code = ?status.code(), message = %status.message(), "widget upload failed");
            upload_error(StatusCode::SERVICE_UNAVAILABLE, "Не удалось загрузить файл: попробуйте ещё раз.")
        }
    }
}

/// The body as intake's chunk messages, stopping at `limit` bytes: a body longer than it
/// declared is cut, and intake refuses the size mismatch.
fn chunked(body: Body, limit: u64) -> impl futures::Stream<Item = pb::UploadAttachmentRequest> + Send + 'static {
    let mut seen = 0u64;
    body.into_data_stream()
        .take_while(|chunk| std::future::ready(chunk.is_ok()))
        .filter_map(|chunk| std::future::ready(chunk.ok()))
        .flat_map(|bytes: Bytes| {
            let pieces: Vec<Bytes> = (0..bytes.len())
                .step_by(CHUNK_BYTES)
                .map(|i| bytes.slice(i..(i + CHUNK_BYTES).min(bytes.len())))
                .collect();
            futures::stream::iter(pieces)
        })
        .take_while(move |piece| {
            seen += piece.len() as u64;
            std::future::ready(seen <= limit)
        })
        .map(|piece| pb::UploadAttachmentRequest {
            part: Some(pb::upload_attachment_request::Part::Chunk(piece.to_vec())),
        })
}

/// `%XX` sequences decoded as UTF-8 (what `encodeURIComponent` writes).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let byte = (high * 16 + low) as u8;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citizen_file_names_are_percent_decoded() {
        assert_eq!(percent_decode("%D1%81%D0%BA%D0%B0%D0%BD.pdf"), "скан.pdf");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn citizen_times_are_local_to_the_region() {
        let at = DateTime::<Utc>::from_timestamp(1_736_943_480, 0).unwrap(); // 2025-01-15 12:18 UTC
        assert_eq!(local_moment(at, "41"), "16.01.2025 00:18 по местному времени (UTC+12)");
        assert_eq!(local_moment(at, "77"), "15.01.2025 15:18 по местному времени (UTC+3)");
    }

    #[test]
    fn citizen_intake_violations_land_beside_their_fields() {
        let violation = |field: &str, description: &str| tonic_types::FieldViolation::new(field, description);
        let errors = intake_errors(
            &[
                violation("applicant.phone", "not a phone number"),
                violation("attachment_ids[1]", "no such attachment"),
                violation("region_code", "unknown region"),
                violation("source", "required"),
            ],
            &super::super::CitizenConfig::default(),
        );
        assert!(errors.field("phone").unwrap().contains("номер телефона"));
        assert!(errors.field("files").is_some());
        assert_eq!(errors.field("region"), Some("Выберите регион из списка."));
        assert_eq!(errors.general.len(), 1);
    }
}
