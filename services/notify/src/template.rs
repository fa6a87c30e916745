//! Templates with the placeholders DOMAIN.md names, validated when saved so that a message
//! never goes out with a placeholder left in it.
//!
//! Two grammars share the engine. An admin's template may use [`PLACEHOLDERS`] only. notify's
//! own texts ([`crate::texts`]) may also use the event's words (a comment, an answer) and
//! optional parts, `{if name}…{end}`, written only when `name` has a value.
//!
//! An appeal fact notify does not know renders as "—" beside facts it knows; a line whose every
//! fact is unknown is left out, so a message never says "Плановый срок: —".

use std::collections::BTreeMap;

/// Every placeholder a template may use, with its Russian label for error messages.
pub const PLACEHOLDERS: [(&str, &str); 12] = [
    ("number", "номер сообщения"),
    ("category", "категория сообщения"),
    ("subcategory", "подкатегория сообщения"),
    ("fact", "факт"),
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

/// The values of one message. An appeal fact notify does not know yet renders as "—" (or its
/// line is left out, see [`render_with`]); the event's own words render as given, empty included.
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

    pub fn has(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|value| !value.is_empty())
    }
}

/// Fills an admin's template; an invalid one (saved before validation existed) renders as is.
pub fn render(template: &str, values: &Values) -> String {
    render_with(template, values, Grammar::ADMIN)
}

/// Fills a template of `grammar`; an invalid one renders as is. A line whose facts are all
/// unknown (and that has at least one) is left out with its line break.
pub fn render_with(template: &str, values: &Values, grammar: Grammar<'_>) -> String {
    match parse(template, grammar) {
        Ok(pieces) => {
            let mut filled = Vec::new();
            fill(&pieces, values, &mut filled);
            assemble(&filled, template.len())
        }
        Err(_) => template.to_owned(),
    }
}

/// A filled piece: text, or a fact with its value or without one.
enum Filled<'a> {
    Text(&'a str),
    Known(&'a str),
    Unknown,
}

fn fill<'a>(pieces: &[Piece<'a>], values: &'a Values, out: &mut Vec<Filled<'a>>) {
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push(Filled::Text(text)),
            Piece::Placeholder(name) if is_fact(name) => match values.has(name) {
                true => out.push(Filled::Known(values.get(name))),
                false => out.push(Filled::Unknown),
            },
            // The event's own words: text, even when empty.
            Piece::Placeholder(name) => out.push(Filled::Text(values.get(name))),
            Piece::Optional(condition, inside) => {
                if values.has(condition) {
                    fill(inside, values, out);
                }
            }
        }
    }
}

/// Joins the filled pieces line by line, leaving out the lines that say nothing known.
fn assemble(filled: &[Filled<'_>], capacity: usize) -> String {
    /// The line being written: its text and whether it has facts known and unknown.
    #[derive(Default)]
    struct Line {
        text: String,
        known: bool,
        unknown: bool,
    }
    impl Line {
        fn end(&mut self, out: &mut String) {
            if self.known || !self.unknown {
                out.push_str(&self.text);
            }
            *self = Line::default();
        }
    }
    let mut out = String::with_capacity(capacity);
    let mut line = Line::default();
    for piece in filled {
        match piece {
            Filled::Known(value) => {
                line.text.push_str(value);
                line.known = true;
            }
            Filled::Unknown => {
                line.text.push('—');
                line.unknown = true;
            }
            Filled::Text(text) => {
                let mut rest = *text;
                while let Some(end) = rest.find('\n') {
                    line.text.push_str(&rest[..=end]);
                    line.end(&mut out);
                    rest = &rest[end + 1..];
                }
                line.text.push_str(rest);
            }
        }
    }
    line.end(&mut out);
    out
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
    fn a_line_with_nothing_known_is_left_out() {
        let mut values = Values::default();
        values.set("number", "42");
        let template = "Номер: {number}\nПлановый срок: {deadline}\nСрок исполнения: {execution_due}.\nКонец";
        assert_eq!(render(template, &values), "Номер: 42\nКонец");
        assert_eq!(render("Срок: {deadline}", &values), "");
        // A line without placeholders stays, blank ones included.
        assert_eq!(render("А\n\n{number}: {deadline}\n", &values), "А\n\n42: —\n");
        values.set("deadline", "25.01.2025 23:59");
        assert_eq!(render(template, &values), "Номер: 42\nПлановый срок: 25.01.2025 23:59\nКонец");
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
