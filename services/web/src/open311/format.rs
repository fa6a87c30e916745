//! Open311's two formats: every response is built once as JSON and written as JSON or XML, so
//! the two cannot say different things.
//!
//! GeoReport v2's XML wraps each list in an element named for the list with one element per
//! item (`<services><service>…</service></services>`); scalars are elements with text; nothing
//! is an attribute.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// The format of `file` named `stem.json` or `stem.xml`, and what precedes the extension.
    pub fn split(file: &str) -> Option<(&str, Format)> {
        if let Some(stem) = file.strip_suffix(".json") {
            Some((stem, Format::Json))
        } else {
            file.strip_suffix(".xml").map(|stem| (stem, Format::Xml))
        }
    }
}

/// `value` as a response in `format`; `root` names the XML document's element.
pub fn respond(format: Format, status: StatusCode, root: &str, value: &Value) -> Response {
    match format {
        Format::Json => {
            let body = serde_json::to_vec(value).unwrap_or_default();
            let mut response = (status, body).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
            response
        }
        Format::Xml => {
            let mut response = (status, to_xml(root, value)).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml; charset=utf-8"));
            response
        }
    }
}

/// Open311's error body: `[{"code": 403, "description": "..."}]`, one entry per problem.
pub fn errors(format: Format, status: StatusCode, descriptions: &[String]) -> Response {
    let list: Vec<Value> = descriptions
        .iter()
        .map(|description| serde_json::json!({ "code": status.as_u16(), "description": description }))
        .collect();
    respond(format, status, "errors", &Value::Array(list))
}

pub fn error(format: Format, status: StatusCode, description: &str) -> Response {
    errors(format, status, &[description.to_owned()])
}

/// The XML document of `value` under `root`.
pub fn to_xml(root: &str, value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    element(&mut out, root, value);
    out
}

/// What each item of a list is called.
fn item_name(list: &str) -> &'static str {
    match list {
        "services" => "service",
        "service_requests" => "request",
        "attributes" => "attribute",
        "values" => "value",
        "errors" => "error",
        "endpoints" => "endpoint",
        "formats" => "format",
        _ => "item",
    }
}

fn element(out: &mut String, name: &str, value: &Value) {
    out.push('<');
    out.push_str(name);
    match value {
        Value::Null => {
            out.push_str("/>");
            return;
        }
        Value::Object(fields) => {
            out.push('>');
            for (key, value) in fields {
                element(out, key, value);
            }
        }
        Value::Array(items) => {
            out.push('>');
            let item = item_name(name);
            for value in items {
                element(out, item, value);
            }
        }
        Value::String(text) => {
            out.push('>');
            escape(out, text);
        }
        Value::Bool(flag) => {
            out.push('>');
            out.push_str(if *flag { "true" } else { "false" });
        }
        Value::Number(number) => {
            out.push('>');
            out.push_str(&number.to_string());
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Text content escaped; characters XML 1.0 cannot carry at all (most controls) are dropped.
fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_become_elements_per_item_and_text_is_escaped() {
        let value = serde_json::json!([
            // Keys in order: serde_json may keep them sorted or as written.
            { "group": null, "metadata": true, "service_code": "a.b", "service_name": "Школа <№ 1> & \"Ко\"\u{1}" }
        ]);
        assert_eq!(
            to_xml("services", &value),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<services><service><group/><metadata>true</metadata>\
             <service_code>a.b</service_code><service_name>Школа &lt;№ 1&gt; &amp; &quot;Ко&quot;</service_name>\
             </service></services>"
        );
    }

    #[test]
    fn files_name_their_format() {
        assert_eq!(Format::split("services.json"), Some(("services", Format::Json)));
        assert_eq!(Format::split("123.xml"), Some(("123", Format::Xml)));
        assert_eq!(Format::split("123.html"), None);
    }
}
