//! Templates with the placeholders DOMAIN.md names, validated when saved so that a message
//! never goes out with a placeholder left in it.

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
}

enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

fn parse(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        pieces.push(Piece::Text(&rest[..open]));
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| TemplateError::Unclosed(after.chars().take(20).collect()))?;
        let name = after[..close].trim();
        if !PLACEHOLDERS.iter().any(|(known, _)| *known == name) {
            return Err(TemplateError::Unknown(name.to_owned()));
        }
        pieces.push(Piece::Placeholder(name));
        rest = &after[close + 1..];
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

/// Checks a template as the admin saves it.
pub fn validate(template: &str) -> Result<(), TemplateError> {
    if template.trim().is_empty() {
        return Err(TemplateError::Empty);
    }
    parse(template).map(|_| ())
}

/// The values of one message; a value notify does not know renders as "—", never as a gap.
#[derive(Clone, Debug, Default)]
pub struct Values(BTreeMap<&'static str, String>);

impl Values {
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.0.insert(name, value.into());
    }

    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty()).unwrap_or("—")
    }
}

/// Fills a template; an invalid template (saved before validation existed) renders as is.
pub fn render(template: &str, values: &Values) -> String {
    match parse(template) {
        Ok(pieces) => pieces
            .into_iter()
            .map(|piece| match piece {
                Piece::Text(text) => text,
                Piece::Placeholder(name) => values.get(name),
            })
            .collect(),
        Err(_) => template.to_owned(),
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
}
