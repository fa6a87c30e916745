//! Masking of passport and SNILS numbers (152-FZ): what leaves intake — events, the public
//! view, logs — carries `***-***-*** **` where the applicant wrote a number.
//!
//! Rules (digits are replaced by `*`, separators are kept so the text still reads naturally):
//! - SNILS: `123-456-789 01` (also with a hyphen or a space before the check digits, or all
//!   groups separated by spaces) and any run of exactly 11 digits. The last rule also masks
//!   11-digit phone numbers written without separators; a phone number is personal data too,
//!   and a false positive costs less than a leaked SNILS.
//! - Passport: `1234 123456`, `12 34 123456` (also with `№` before the number), and a run of
//!   exactly 10 digits when the word "паспорт"/"passport" occurs shortly before it.
//!
//! A candidate only counts when no digit touches it on either side, so longer numbers (an
//! account number, a phone with a country code) are not cut into pieces.

use std::sync::LazyLock;

use regex::Regex;

static SNILS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\d{3}-\d{3}-\d{3}[ \-]\d{2}|\d{3} \d{3} \d{3} \d{2}|\d{11}").expect("valid SNILS pattern")
});

static PASSPORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d{2} ?\d{2} (?:№ ?)?\d{6}|\d{4}№ ?\d{6}").expect("valid passport pattern"));

static BARE_TEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d{10}").expect("valid pattern"));

/// How far before a bare 10-digit number the word "паспорт" may stand, in characters.
const PASSPORT_WORD_WINDOW: usize = 40;

/// The text with passport and SNILS numbers masked.
pub fn mask(text: &str) -> String {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    collect(&SNILS, text, &mut spans, |_, _| true);
    collect(&PASSPORT, text, &mut spans, |_, _| true);
    collect(&BARE_TEN, text, &mut spans, passport_word_before);
    if spans.is_empty() {
        return text.to_owned();
    }
    let mut masked = text.as_bytes().to_vec();
    for (start, end) in spans {
        for byte in &mut masked[start..end] {
            if byte.is_ascii_digit() {
                *byte = b'*';
            }
        }
    }
    // Only ASCII digits were replaced by an ASCII byte, so the bytes are still UTF-8.
    String::from_utf8(masked).unwrap_or_else(|_| text.to_owned())
}

/// Whether `text` contains something [`mask`] would change.
pub fn contains_personal_numbers(text: &str) -> bool {
    mask(text) != text
}

/// Adds the matches of `pattern` that no digit touches and that `accept` allows. A rejected
/// candidate moves the search on by one character only, so an overlapping number behind it is
/// still found.
fn collect(pattern: &Regex, text: &str, spans: &mut Vec<(usize, usize)>, accept: impl Fn(&str, usize) -> bool) {
    let mut from = 0;
    while from <= text.len() {
        let Some(found) = pattern.find_at(text, from) else {
            break;
        };
        let (start, end) = (found.start(), found.end());
        let digit_before = text[..start].chars().next_back().is_some_and(|c| c.is_ascii_digit());
        let digit_after = text[end..].chars().next().is_some_and(|c| c.is_ascii_digit());
        if !digit_before && !digit_after && accept(text, start) {
            spans.push((start, end));
            from = end;
        } else {
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
}

fn passport_word_before(text: &str, start: usize) -> bool {
    let before = &text[..start];
    let from = before.char_indices().rev().nth(PASSPORT_WORD_WINDOW - 1).map_or(0, |(index, _)| index);
    let window = before[from..].to_lowercase();
    window.contains("паспорт") || window.contains("passport")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_examples_from_the_domain() {
        assert_eq!(mask("123-345-678 90"), "***-***-*** **");
        assert_eq!(mask("1234 123456"), "**** ******");
        assert_eq!(
            mask("Мой СНИЛС 123-345-678 90, паспорт 1234 123456, прошу помочь."),
            "Мой СНИЛС ***-***-*** **, паспорт **** ******, прошу помочь."
        );
    }

    #[test]
    fn masks_other_spellings_of_snils() {
        assert_eq!(mask("снилс: 12345678901."), "снилс: ***********.");
        assert_eq!(mask("снилс 123-456-789-01"), "снилс ***-***-***-**");
        assert_eq!(mask("снилс 123 456 789 01"), "снилс *** *** *** **");
    }

    #[test]
    fn masks_other_spellings_of_passports() {
        assert_eq!(mask("паспорт 12 34 123456 выдан"), "паспорт ** ** ****** выдан");
        assert_eq!(mask("Паспорт серии 1234 № 567890"), "Паспорт серии **** № ******");
        assert_eq!(mask("ПАСПОРТ: 1234123456"), "ПАСПОРТ: **********");
        assert_eq!(mask("passport 1234123456"), "passport **********");
    }

    #[test]
    fn leaves_other_numbers_alone() {
        // The platform number, dates, a postal code, a school number.
        let text = "Обращение 251819982 от 15.01.2025, индекс 683000, школа № 12, дом 1234";
        assert_eq!(mask(text), text);
        // Ten digits without the word "паспорт" nearby: an order number, not a passport.
        assert_eq!(mask("заказ 1234123456"), "заказ 1234123456");
        // Longer runs of digits are not cut into a SNILS-sized piece.
        assert_eq!(mask("счёт 40817810099910004312"), "счёт 40817810099910004312");
        assert!(!contains_personal_numbers("ничего личного"));
    }

    #[test]
    fn finds_a_number_right_after_a_rejected_candidate() {
        // The passport pattern first meets "12345", which a digit touches, and must move on
        // by one character rather than skip past the real passport behind it.
        assert_eq!(mask("12345 1234 123456"), "12345 **** ******");
        assert_eq!(mask("x123-345-678 90y"), "x***-***-*** **y");
    }

    #[test]
    fn keeps_non_ascii_text_intact() {
        assert_eq!(mask("ёжик 1234 123456 ёлка"), "ёжик **** ****** ёлка");
        assert_eq!(mask("№12345678901№"), "№***********№");
    }
}
