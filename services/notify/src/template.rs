//! Templates with the placeholders DOMAIN.md names, validated when saved so that a message
//! never goes out with a placeholder left in it.
//!
//! Two grammars share the engine. An admin's template may use [`PLACEHOLDERS`] only. notify's
//! own texts ([`crate::texts`]) may also use the event's words (a comment, an answer) and
//! optional parts, `{if name}…{end}`, written only when `name` has a value.

use std::collections::BTreeMap;

/// Every placeholder a template may use, with its Russian label for error messages.
pub const PLACEHOLDERS: [(&str, &str); 10] = [
    ("number", "номер сообщения"),
    ("category", "категория сообщения"),
    ("organization", "наименование текущего ЛКО"),
    ("created_at", "дата и время создания сообщения"),
    ("deadline", "плановый срок рассмотрения"),
    ("status", "текущий статус сообщения"),
    ("execution_due", "срок исполнения"),
    ("applicant_name", "имя заявителя"),
    ("registration_number", "регистрационный номер"),
    ("registration_date", "дата регистрации"),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unknown placeholder {{{0}}}")]
    Unknown(String),
    #[error("unclosed placeholder after {0:?}")]
    Unclosed(String),
    #[error("template is empty")]
    Empty,
    #[error("{{if {0}}} without its {{end}}")]
    UnclosedPart(String),
    #[error("{{end}} without an {{if …}}")]
    UnopenedEnd,
}

/// What a template may contain.
#[derive(Clone, Copy)]
pub struct Grammar<'g> {
    /// Placeholders beyond [`PLACEHOLDERS`].
    pub words: &'g [&'g str],
    /// Whether `{if name}…{end}` is allowed.
    pub optional_parts: bool,
}

impl Grammar<'_> {
    /// What an organization's admin may write.
    pub const ADMIN: Grammar<'static> = Grammar { words: &[], optional_parts: false };

    fn knows(&self, name: &str) -> bool {
        is_fact(name) || self.words.contains(&name)
    }
}

fn is_fact(name: &str) -> bool {
    PLACEHOLDERS.iter().any(|(known, _)| *known == name)
}

enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
    /// `{if name}…{end}`: written only when `name` has a value.
    Optional(&'a str, Vec<Piece<'a>>),
}

fn parse<'a>(template: &'a str, grammar: Grammar<'_>) -> Result<Vec<Piece<'a>>, TemplateError> {
    let mut pieces = Vec::new();
    // The optional parts open around the current position, each with the pieces before it.
    let mut open: Vec<(&'a str, Vec<Piece<'a>>)> = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        pieces.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 1..];
        let close = after.find('}').ok_or_else(|| TemplateError::Unclosed(after.chars().take(20).collect()))?;
        let name = after[..close].trim();
        rest = &after[close + 1..];
        if grammar.optional_parts {
            if let Some(condition) = name.strip_prefix("if ") {
                let condition = condition.trim();
                if !grammar.knows(condition) {
                    return Err(TemplateError::Unknown(condition.to_owned()));
                }
                open.push((condition, std::mem::take(&mut pieces)));
                continue;
            }
            if name == "end" {
                let (condition, before) = open.pop().ok_or(TemplateError::UnopenedEnd)?;
                let inside = std::mem::replace(&mut pieces, before);
                pieces.push(Piece::Optional(condition, inside));
                continue;
            }
        }
        if !grammar.knows(name) {
            return Err(TemplateError::Unknown(name.to_owned()));
        }
        pieces.push(Piece::Placeholder(name));
    }
    if let Some((condition, _)) = open.pop() {
        return Err(TemplateError::UnclosedPart(condition.to_owned()));
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

/// Checks a template as the admin saves it.
pub fn validate(template: &str) -> Result<(), TemplateError> {
    validate_with(template, Grammar::ADMIN)
}

/// Checks a template against `grammar`.
pub fn validate_with(template: &str, grammar: Grammar<'_>) -> Result<(), TemplateError> {
    if template.trim().is_empty() {
        return Err(TemplateError::Empty);
    }
    parse(template, grammar).map(|_| ())
}

/// The values of one message. An appeal fact notify does not know yet renders as "—", never
/// as a gap; the event's own words render as given, empty included.
#[derive(Clone, Debug, Default)]
pub struct Values(BTreeMap<&'static str, String>);

impl Values {
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.0.insert(name, value.into());
    }

    pub fn get(&self, name: &str) -> &str {
        match self.0.get(name).map(String::as_str).filter(|v| !v.is_empty()) {
            Some(value) => value,
            None if is_fact(name) => "—",
            None => "",
        }
    }

    fn has(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|value| !value.is_empty())
    }
}

/// Fills an admin's template; an invalid one (saved before validation existed) renders as is.
pub fn render(template: &str, values: &Values) -> String {
    render_with(template, values, Grammar::ADMIN)
}

/// Fills a template of `grammar`; an invalid one renders as is.
pub fn render_with(template: &str, values: &Values, grammar: Grammar<'_>) -> String {
    match parse(template, grammar) {
        Ok(pieces) => {
            let mut out = String::with_capacity(template.len());
            fill(&pieces, values, &mut out);
            out
        }
        Err(_) => template.to_owned(),
    }
}

fn fill(pieces: &[Piece<'_>], values: &Values, out: &mut String) {
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Placeholder(name) => out.push_str(values.get(name)),
            Piece::Optional(condition, inside) => {
                if values.has(condition) {
                    fill(inside, values, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_placeholder() {
        let mut values = Values::default();
        values.set("number", "42");
        values.set("status", "В работе");
        assert_eq!(render("№{number}: { status }, {deadline}", &values), "№42: В работе, —");
    }

    #[test]
    fn rejects_unknown_and_unclosed() {
        assert_eq!(validate("{nomber}"), Err(TemplateError::Unknown("nomber".into())));
        assert!(matches!(validate("{number"), Err(TemplateError::Unclosed(_))));
        assert_eq!(validate("  "), Err(TemplateError::Empty));
        assert!(validate("Сообщение {number} от {created_at}").is_ok());
    }

    #[test]
    fn admins_write_no_optional_parts() {
        assert_eq!(validate("{if number}№{number}{end}"), Err(TemplateError::Unknown("if number".into())));
    }

    #[test]
    fn optional_parts_show_only_with_a_value() {
        let grammar = Grammar { words: &["comment"], optional_parts: true };
        let template = "Здравствуйте{if applicant_name}, {applicant_name}{end}!{if comment} {comment}{end}";
        let mut values = Values::default();
        assert_eq!(render_with(template, &values, grammar), "Здравствуйте!");
        values.set("applicant_name", "Иван");
        values.set("comment", "Уточните");
        assert_eq!(render_with(template, &values, grammar), "Здравствуйте, Иван! Уточните");
        assert_eq!(validate_with("{if comment}x", grammar), Err(TemplateError::UnclosedPart("comment".into())));
        assert_eq!(validate_with("x{end}", grammar), Err(TemplateError::UnopenedEnd));
        assert_eq!(validate_with("{if nothing}x{end}", grammar), Err(TemplateError::Unknown("nothing".into())));
    }
}
