//! The citizen pages' frame: plain, in Russian, with their own stylesheet and script; and the
//! short pages that only say something (refusals, limits, errors).

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use crate::assets;

/// A citizen page. `script`: the form's script (the widget and the appeal page use one).
pub fn layout(title: &str, script: bool, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="ru" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href=(assets::url("modern-normalize.css"));
                link rel="stylesheet" href=(assets::url("citizen.css"));
                @if script {
                    script src=(assets::url("sha256.min.js")) defer {}
                    script src=(assets::url("citizen.js")) defer {}
                }
            }
            body.citizen {
                main #main { (main) }
            }
        }
    }
}

/// A page that only says something, with `status`.
pub fn message(status: StatusCode, heading: &str, text: &str) -> Response {
    let body = layout(
        &format!("{heading} — Платформа обратной связи"),
        // The script reports the page's height to the site that embeds the widget.
        true,
        html! {
            div.notice role="alert" {
                h1 { (heading) }
                p { (text) }
            }
        },
    );
    (status, body).into_response()
}

/// The services could not be reached, or answered what a citizen cannot act on.
pub fn unavailable() -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Сервис временно недоступен",
        "Не удалось обработать запрос. Повторите попытку через несколько минут.",
    )
}
