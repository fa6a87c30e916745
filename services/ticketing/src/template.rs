//! Answer templates: `{{placeholder}}` names from DOMAIN.md, checked when a template is saved so
//! that a typo is the author's error then, not a broken answer at sending.

/// The placeholders an answer template may use.
pub const PLACEHOLDERS: [&str; 8] = [
    "applicant_name",
    "user_name",
    "message_number",
    "organization_name",
    "category",
    "created_date",
    "registration_number",
    "registration_date",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// `{{name}}` that is not in [`PLACEHOLDERS`].
    Unknown(String),
    /// `{{` without its `}}`.
    Unclosed,
    Empty,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::Unknown(name) => {
                write!(f, "unknown placeholder {{{{{name}}}}}; known: {}", PLACEHOLDERS.join(", "))
            }
            TemplateError::Unclosed => write!(f, "a placeholder opened with {{{{ is not closed"),
            TemplateError::Empty => write!(f, "the template is empty"),
        }
    }
}

/// Splits a body into text and placeholder names, rejecting unknown or unclosed placeholders.
fn parse(body: &str) -> Result<Vec<Part<'_>>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find("{{") {
        parts.push(Part::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or(TemplateError::Unclosed)?;
        let name = after[..close].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(TemplateError::Unknown(name.to_owned()));
        }
        parts.push(Part::Placeholder(name));
        rest = &after[close + 2..];
    }
    parts.push(Part::Text(rest));
    Ok(parts)
}

enum Part<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Checks a template before it is saved.
pub fn check(body: &str) -> Result<(), TemplateError> {
    if body.trim().is_empty() {
        return Err(TemplateError::Empty);
    }
    parse(body).map(|_| ())
}

/// Fills the placeholders; `value` answers each name (a saved template only has known ones).
pub fn render(body: &str, value: impl Fn(&str) -> String) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(body.len());
    for part in parse(body)? {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Placeholder(name) => out.push_str(&value(name)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_placeholders_pass_and_render() {
        let body =
            "Уважаемый(ая) {{applicant_name}}! По обращению № {{ message_number }} от {{created_date}} сообщаем…";
        assert_eq!(check(body), Ok(()));
        let text = render(body, |name| match name {
            "applicant_name" => "Иван Иванович".into(),
            "message_number" => "1501".into(),
            "created_date" => "25.01.2025".into(),
            other => panic!("unexpected {other}"),
        })
        .unwrap();
        assert_eq!(text, "Уважаемый(ая) Иван Иванович! По обращению № 1501 от 25.01.2025 сообщаем…");
    }

    #[test]
    fn unknown_and_broken_placeholders_are_errors_at_saving() {
        assert_eq!(check("Hello {{applicant}}"), Err(TemplateError::Unknown("applicant".into())));
        assert_eq!(check("Hello {{applicant_name"), Err(TemplateError::Unclosed));
        assert_eq!(check("   "), Err(TemplateError::Empty));
        assert_eq!(check("no placeholders at all"), Ok(()));
        for name in PLACEHOLDERS {
            assert_eq!(check(&format!("{{{{{name}}}}}")), Ok(()));
        }
    }
}
