//! Форма обращений на сайт: the snippet that puts pos's appeal form on the organization's own
//! site — a script that draws it, or an iframe — optionally opened on one category of the
//! classifier. Only the snippet is here; the form itself is served at `/widget`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Response;
use http::HeaderMap;
use maud::{Markup, html};
use pos_proto::v1 as pb;

use super::{Section, reader};
use crate::App;
use crate::cabinet::{Api, WebError};

const SECTION: Section = Section::Widget;

/// The two ways to embed the form: `(script, iframe)`. Ids go into URLs and attributes, so
/// they are percent-encoded (the page escapes the whole snippet as text again).
pub fn snippets(base: &str, organization_id: &str, category_id: &str) -> (String, String) {
    let organization = encode(organization_id);
    let category = if category_id.is_empty() { String::new() } else { encode(category_id) };
    let data_category = if category.is_empty() { String::new() } else { format!(r#" data-category="{category}""#) };
    let script =
        format!(r#"<script src="{base}/widget.js" data-organization="{organization}"{data_category} async></script>"#);
    let query = if category.is_empty() { String::new() } else { format!("&category={category}") };
    let iframe = format!(
        r#"<iframe src="{base}/widget?organization={organization}{query}" title="Обращение в организацию" width="100%" height="720" style="border:0" loading="lazy"></iframe>"#
    );
    (script, iframe)
}

fn encode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)]).map(|s| s.trim_start_matches('=').to_owned()).unwrap_or_default()
}

pub async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let session = reader(&app, &headers, SECTION).await?;
    let api = Api::new(&app, &session);
    let classifier = api
        .classifier()
        .await
        .inspect_err(|status| tracing::warn!(code = ?status.code(), "classifier unavailable for the widget snippet"))
        .unwrap_or_default();
    let category = query
        .get("category")
        .filter(|id| classifier.categories.iter().any(|c| &c.id == *id))
        .cloned()
        .unwrap_or_default();
    let (script, iframe) = snippets(&app.config.public_base(), &session.organization_id, &category);
    let main = render(&classifier, &category, &script, &iframe);
    super::page(&app, &session, SECTION, None, main).await
}

fn render(classifier: &pb::Classifier, category: &str, script: &str, iframe: &str) -> Markup {
    html! {
        p.hint { "Разместите форму на сайте организации: граждане отправят сообщение прямо в ваш кабинет. \
                   Скопируйте один из фрагментов в код страницы сайта." }
        form.filters method="get" action="/cabinet/admin/widget" aria-label="Категория формы" {
            div.field {
                label for="widget-category" { "Категория (необязательно)" }
                select #widget-category name="category" {
                    option value="" { "Любая — заявитель выберет сам" }
                    @for c in classifier.categories.iter().filter(|c| c.active) {
                        option value=(c.id) selected[c.id == category] { (c.name) }
                    }
                }
            }
            div.actions { button.primary type="submit" { "Показать фрагменты" } }
        }
        section.panel aria-labelledby="widget-script-h" {
            h3 #widget-script-h { "Скрипт (рекомендуется)" }
            p.hint { "Форма подстраивается под ширину страницы." }
            pre.answer-text tabindex="0" aria-labelledby="widget-script-h" { code #widget-script { (script) } }
        }
        section.panel aria-labelledby="widget-iframe-h" {
            h3 #widget-iframe-h { "Встроенный фрейм (iframe)" }
            p.hint { "Для сайтов, где нельзя подключать скрипты." }
            pre.answer-text tabindex="0" aria-labelledby="widget-iframe-h" { code #widget-iframe { (iframe) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_name_the_organization_and_the_category_if_chosen() {
        let (script, iframe) = snippets("https://pos.example.ru", "41-kcioko", "");
        assert_eq!(
            script,
            r#"<script src="https://pos.example.ru/widget.js" data-organization="41-kcioko" async></script>"#
        );
        assert!(
            iframe.starts_with(r#"<iframe src="https://pos.example.ru/widget?organization=41-kcioko" "#),
            "{iframe}"
        );
        let (script, iframe) = snippets("https://pos.example.ru", "41-kcioko", "education");
        assert!(script.contains(r#"data-category="education""#), "{script}");
        assert!(iframe.contains("widget?organization=41-kcioko&category=education"), "{iframe}");
        let (_, iframe) = snippets("https://pos.example.ru", "a&b", "");
        assert!(iframe.contains("organization=a%26b"), "{iframe}");
    }
}
