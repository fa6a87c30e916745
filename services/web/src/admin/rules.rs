//! Автоправила: the organization's auto-rules (routing ListAutoRules / UpsertAutoRule /
//! DeleteAutoRule) — messages of a fact, or with certain words, go straight to an executor of the
//! organization or down to one of its subordinates, without waiting for the coordinator.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::HeaderMap;
use maud::{Markup, html};
use pos_platform::auth::Role;
use pos_proto::v1 as pb;

use super::{FieldErrors, Fields, Refused, Section, csrf, done_text, reader, writer};
use crate::App;
use crate::cabinet::{Api, WebError};
use crate::session::Session;

const SECTION: Section = Section::AutoRules;

/// The rules, and the names their ids stand for.
struct Loaded {
    rules: Vec<pb::AutoRule>,
    classifier: pb::Classifier,
    staff: Vec<pb::StaffMember>,
    /// The organization itself and its subordinates: where a rule may send messages.
    targets: Vec<pb::Organization>,
}

impl Loaded {
    fn fact_name(&self, id: &str) -> String {
        if id.is_empty() {
            return "Любой".to_owned();
        }
        self.classifier.facts.iter().find(|f| f.id == id).map_or_else(|| id.to_owned(), |f| f.name.clone())
    }

    fn executor_name(&self, subject: &str) -> String {
        if subject.is_empty() {
            return "—".to_owned();
        }
        self.staff.iter().find(|m| m.subject == subject).map_or_else(|| subject.to_owned(), |m| m.full_name.clone())
    }

    fn organization_name(&self, id: &str) -> String {
        self.targets.iter().find(|o| o.id == id).map_or_else(|| id.to_owned(), |o| o.short_name.clone())
    }
}

async fn load(app: &App, session: &Session) -> Result<Loaded, WebError> {
    let api = Api::new(app, session);
    let organization_id = session.organization_id.clone();
    let (mut rules_client, mut staff_client, mut own_client, mut subordinates_client) =
        (api.routing(), api.ticketing(), api.routing(), api.routing());
    let (rules, classifier, staff, own, subordinates) = tokio::join!(
        rules_client
            .list_auto_rules(api.request(pb::ListAutoRulesRequest { organization_id: organization_id.clone() })),
        api.classifier(),
        staff_client.list_staff(
            api.request(pb::ListStaffRequest { organization_id: organization_id.clone(), role: String::new() })
        ),
        own_client.get_organization(api.request(pb::GetOrganizationRequest { id: organization_id.clone() })),
        subordinates_client.list_subordinates(api.request(pb::ListSubordinatesRequest { organization_id })),
    );
    let rules = rules.map_err(|status| WebError::from_status(&status, false))?.into_inner().rules;
    // Without names the rules still stand, with ids in their place.
    let part = |what: &str, status: &tonic::Status| tracing::warn!(code = ?status.code(), what, "auto-rules page part unavailable");
    let classifier = classifier.inspect_err(|s| part("classifier", s)).unwrap_or_default();
    let staff = staff.map(|r| r.into_inner().staff).inspect_err(|s| part("staff", s)).unwrap_or_default();
    let mut targets: Vec<pb::Organization> =
        own.map(|r| vec![r.into_inner()]).inspect_err(|s| part("organization", s)).unwrap_or_default();
    targets.extend(
        subordinates.map(|r| r.into_inner().organizations).inspect_err(|s| part("subordinates", s)).unwrap_or_default(),
    );
    Ok(Loaded { rules, classifier, staff, targets })
}

pub async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let session = reader(&app, &headers, SECTION).await?;
    let loaded = load(&app, &session).await?;
    let editing = query.get("edit").and_then(|id| loaded.rules.iter().find(|r| &r.id == id)).cloned();
    let form = editing.unwrap_or_else(|| pb::AutoRule { active: true, ..Default::default() });
    let main = render(&session, &loaded, &form, &FieldErrors::default());
    super::page(&app, &session, SECTION, done_text(query.get("done")), main).await
}

pub async fn save(
    State(app): State<App>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let session = writer(&app, &headers, SECTION).await?;
    let fields = Fields::new(fields);
    let rule = pb::AutoRule {
        id: fields.get("id"),
        organization_id: session.organization_id.clone(),
        priority: fields.get("priority").parse().unwrap_or(0),
        fact_id: fields.get("fact"),
        keywords: fields
            .get("keywords")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect(),
        target_organization_id: fields.get("target"),
        target_executor_id: fields.get("executor"),
        active: fields.checked("active"),
    };
    let api = Api::new(&app, &session);
    let errors = match api.routing().upsert_auto_rule(api.request(rule.clone())).await {
        Ok(_) => return Ok(Redirect::to("/cabinet/admin/rules?done=saved").into_response()),
        Err(status) => match Refused::from_status(&status, word) {
            Refused::Fields(errors) => errors,
            Refused::Page(error) => return Err(error),
        },
    };
    let loaded = load(&app, &session).await?;
    let main = render(&session, &loaded, &rule, &errors);
    super::page(&app, &session, SECTION, None, main).await
}

pub async fn delete(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, WebError> {
    let session = writer(&app, &headers, SECTION).await?;
    let api = Api::new(&app, &session);
    match api.routing().delete_auto_rule(api.request(pb::DeleteAutoRuleRequest { id })).await {
        Ok(_) => Ok(Redirect::to("/cabinet/admin/rules?done=deleted").into_response()),
        Err(status) => Err(WebError::from_status(&status, false)),
    }
}

/// A field error of UpsertAutoRule in the person's words.
fn word(field: &str, _description: &str) -> String {
    match field {
        "target_executor_id" => "Правило, оставляющее сообщение в организации, должно назначать исполнителя.",
        "target_organization_id" => "Направлять можно только в свою организацию или в подведомственную.",
        "fact_id" => "Такого факта нет в классификаторе.",
        "priority" => "Приоритет — неотрицательное число.",
        "id" => "Правило не найдено, обновите страницу.",
        _ => "Проверьте заполнение формы.",
    }
    .to_owned()
}

fn render(session: &Session, loaded: &Loaded, form: &pb::AutoRule, errors: &FieldErrors) -> Markup {
    let editable = SECTION.editable(session);
    html! {
        p.hint { "Правило срабатывает, когда у сообщения указанный факт (или любой) и в тексте есть одно из слов (или любые). \
                   Из подходящих правил применяется правило с наименьшим приоритетом." }
        @if loaded.rules.is_empty() {
            p.empty { "Автоправил пока нет." }
        } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Автоправила" {
                table.tickets #rules {
                    thead {
                        tr {
                            th scope="col" { "Приоритет" }
                            th scope="col" { "Факт" }
                            th scope="col" { "Слова в тексте" }
                            th scope="col" { "Организация" }
                            th scope="col" { "Исполнитель" }
                            th scope="col" { "Действует" }
                            @if editable { th scope="col" { "Действия" } }
                        }
                    }
                    tbody {
                        @for rule in &loaded.rules {
                            tr data-rule=(rule.id) {
                                td { (rule.priority) }
                                th scope="row" { (loaded.fact_name(&rule.fact_id)) }
                                td { @if rule.keywords.is_empty() { "Любые" } @else { (rule.keywords.join(", ")) } }
                                td { (loaded.organization_name(&rule.target_organization_id)) }
                                td.executor { (loaded.executor_name(&rule.target_executor_id)) }
                                td { @if rule.active { "Да" } @else { "Нет" } }
                                @if editable {
                                    td.nowrap {
                                        a href={ "/cabinet/admin/rules?edit=" (rule.id) "#rule-form" } { "Изменить" }
                                        " "
                                        form.inline method="post" action={ "/cabinet/admin/rules/" (rule.id) "/delete" } {
                                            (csrf(session))
                                            button type="submit" { "Удалить" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if editable { (edit_form(session, loaded, form, errors)) }
    }
}

fn edit_form(session: &Session, loaded: &Loaded, form: &pb::AutoRule, errors: &FieldErrors) -> Markup {
    let executors = loaded.staff.iter().filter(|m| m.active && m.roles.iter().any(|r| r == Role::Executor.as_str()));
    let target =
        if form.target_organization_id.is_empty() { &session.organization_id } else { &form.target_organization_id };
    let known = ["priority", "fact_id", "target_organization_id", "target_executor_id"];
    html! {
        section.panel #rule-form aria-labelledby="rule-form-h" {
            h3 #rule-form-h { @if form.id.is_empty() { "Новое автоправило" } @else { "Изменить автоправило" } }
            form method="post" action="/cabinet/admin/rules" data-form="rule" {
                (csrf(session))
                input type="hidden" name="id" value=(form.id);
                (errors.rest(&known))
                div.field {
                    label for="rule-priority" { "Приоритет (меньше — раньше)" }
                    input #rule-priority type="text" inputmode="numeric" name="priority" value=(form.priority)
                        aria-describedby=[errors.described_by("priority", "rule-priority")];
                    (errors.beside("priority", "rule-priority"))
                }
                div.field {
                    label for="rule-fact" { "Факт" }
                    select #rule-fact name="fact" aria-describedby=[errors.described_by("fact_id", "rule-fact")] {
                        option value="" { "Любой" }
                        @for category in &loaded.classifier.categories {
                            @for sub in loaded.classifier.subcategories.iter().filter(|s| s.category_id == category.id) {
                                optgroup label={ (category.name) " / " (sub.name) } {
                                    @for fact in loaded.classifier.facts.iter().filter(|f| f.subcategory_id == sub.id) {
                                        option value=(fact.id) selected[fact.id == form.fact_id] { (fact.name) }
                                    }
                                }
                            }
                        }
                    }
                    (errors.beside("fact_id", "rule-fact"))
                }
                div.field {
                    label for="rule-keywords" { "Слова в тексте (через запятую; пусто — любые)" }
                    input #rule-keywords type="text" name="keywords" value=(form.keywords.join(", "));
                }
                div.field {
                    label for="rule-target" { "Организация" }
                    select #rule-target name="target"
                        aria-describedby=[errors.described_by("target_organization_id", "rule-target")] {
                        @for org in &loaded.targets {
                            option value=(org.id) selected[&org.id == target] { (org.short_name) }
                        }
                    }
                    (errors.beside("target_organization_id", "rule-target"))
                }
                div.field {
                    label for="rule-executor" { "Исполнитель" }
                    select #rule-executor name="executor"
                        aria-describedby=[errors.described_by("target_executor_id", "rule-executor")] {
                        option value="" { "Не назначать" }
                        @for member in executors {
                            option value=(member.subject) selected[member.subject == form.target_executor_id] { (member.full_name) }
                        }
                    }
                    (errors.beside("target_executor_id", "rule-executor"))
                }
                div.field {
                    label.choice { input type="checkbox" name="active" checked[form.active]; " Действует" }
                }
                div.actions {
                    button.primary type="submit" { "Сохранить правило" }
                    @if !form.id.is_empty() { a href="/cabinet/admin/rules" { "Отмена" } }
                }
            }
        }
    }
}
