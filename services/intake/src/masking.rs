//! Masking of the numbers the law on personal data (152-FZ) protects in an appeal's text: SNILS
//! and passport numbers. What leaves intake — events, the public view, logs — carries `*` for
//! each of their digits; separators are kept so the text still reads naturally. Other numbers —
//! phone numbers above all, which a coordinator searches by and calls back on — stay as written.
//!
//! Masked:
//! - A SNILS written as one: `123-456-789 01`, `123-456-789-01`, `123 456 789 01`, whatever its
//!   check digits (the shape is SNILS's own).
//! - A bare run of 11 digits that is a valid SNILS: its last two digits are the public SNILS
//!   check number of the first nine (for numbers above 001-001-998), unless it is written as a
//!   phone number (see below).
//! - A bare run of 11 digits right after the word "СНИЛС"/"SNILS" (any case, within 40
//!   characters, no other digit in between), whatever its check digits.
//! - A passport written as one: `1234 123456`, `12 34 123456`, `1234 № 123456`, `1234№123456`.
//! - A bare run of 10 digits right after the word "паспорт"/"passport" (the same closeness).
//!
//! Not masked:
//! - Phone numbers: `+7` or `8` followed by 10 digits, with or without spaces, hyphens and
//!   brackets between them (`+7 (914) 123-45-67`, `8 914 123 45 67`, `89141234567`,
//!   `8 4152 123456`), and `7` followed by 10 digits without separators. A passport shape or a
//!   valid SNILS checksum inside a phone number is not enough: it is masked there only when its
//!   word stands right before it. A number in SNILS's own written shape is masked even if it
//!   could also be read as a phone number.
//! - Any other number: 11 digits that are neither a valid SNILS nor preceded by the word, 10
//!   digits without the word "паспорт", dates, postal codes, the platform's appeal numbers.
//!
//! A candidate only counts when no digit touches it on either side, so longer numbers (an
//! account number) are not cut into pieces.

use std::sync::LazyLock;

use regex::Regex;

/// SNILS in its own written shape.
static SNILS_WRITTEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d{3}-\d{3}-\d{3}[ \-]\d{2}|\d{3} \d{3} \d{3} \d{2}").expect("valid SNILS pattern"));

static BARE_ELEVEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d{11}").expect("valid pattern"));

static PASSPORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d{2} ?\d{2} (?:№ ?)?\d{6}|\d{4}№ ?\d{6}").expect("valid passport pattern"));

static BARE_TEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d{10}").expect("valid pattern"));

/// A Russian phone number: the country prefix (`+7`, or the trunk prefix `8`) and 10 digits, a
/// separator or two (space, hyphen, bracket) allowed before each digit; or `7` and 10 digits
/// written together.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\+ ?7(?:[ \-()]{0,2}\d){10}|8(?:[ \-()]{0,2}\d){10}|7\d{10}").expect("valid phone pattern")
});

/// How far before a bare number its word ("СНИЛС", "паспорт") may stand, in characters.
const WORD_WINDOW: usize = 40;

const SNILS_WORDS: [&str; 2] = ["снилс", "snils"];
const PASSPORT_WORDS: [&str; 2] = ["паспорт", "passport"];

/// The text with SNILS and passport numbers masked.
pub fn mask(text: &str) -> String {
    let mut phones: Vec<(usize, usize)> = Vec::new();
    collect(&PHONE, text, &mut phones, |_, _| true);
    let in_phone = |start: usize, end: usize| phones.iter().any(|&(from, to)| start < to && from < end);
    let mut spans: Vec<(usize, usize)> = Vec::new();
    collect(&SNILS_WRITTEN, text, &mut spans, |_, _| true);
    collect(&BARE_ELEVEN, text, &mut spans, |start, end| {
        word_before(text, start, &SNILS_WORDS) || (!in_phone(start, end) && snils_checksum_holds(&text[start..end]))
    });
    collect(&PASSPORT, text, &mut spans, |start, end| {
        !in_phone(start, end) || word_before(text, start, &PASSPORT_WORDS)
    });
    collect(&BARE_TEN, text, &mut spans, |start, _| word_before(text, start, &PASSPORT_WORDS));
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

/// Adds the matches of `pattern` that no digit touches and that `accept` (given the match's
/// byte range) allows. A rejected candidate moves the search on by one character only, so an
/// overlapping number behind it is still found.
fn collect(pattern: &Regex, text: &str, spans: &mut Vec<(usize, usize)>, accept: impl Fn(usize, usize) -> bool) {
    let mut from = 0;
    while from <= text.len() {
        let Some(found) = pattern.find_at(text, from) else {
            break;
        };
        let (start, end) = (found.start(), found.end());
        let digit_before = text[..start].chars().next_back().is_some_and(|c| c.is_ascii_digit());
        let digit_after = text[end..].chars().next().is_some_and(|c| c.is_ascii_digit());
        if !digit_before && !digit_after && accept(start, end) {
            spans.push((start, end));
            from = end;
        } else {
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
}

/// Whether one of `words` stands within [`WORD_WINDOW`] characters before `start` with no digit
/// between it and the number: "СНИЛС 123-456-789 01, телефон 89141234567" names the first
/// number, not the phone.
fn word_before(text: &str, start: usize, words: &[&str]) -> bool {
    let before = &text[..start];
    let from = before.char_indices().rev().nth(WORD_WINDOW - 1).map_or(0, |(index, _)| index);
    let window = before[from..].to_lowercase();
    words
        .iter()
        .any(|word| window.rfind(word).is_some_and(|at| !window[at + word.len()..].chars().any(|c| c.is_ascii_digit())))
}

/// The public SNILS check: the first nine digits weighted 9 down to 1 and summed; below 100 the
/// sum is the check number, 100 and 101 give 00, above that the sum modulo 101 (100 again
/// giving 00). Numbers up to 001-001-998 have no check number, so they never pass.
fn snils_checksum_holds(digits: &str) -> bool {
    let digits: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    let [body @ .., tens, ones] = digits.as_slice() else {
        return false;
    };
    if digits.len() != 11 || body.iter().fold(0u32, |n, d| n * 10 + d) <= 1_001_998 {
        return false;
    }
    let sum: u32 = body.iter().zip((1..=9).rev()).map(|(d, weight)| d * weight).sum();
    let check = match sum {
        0..100 => sum,
        100 | 101 => 0,
        _ => sum % 101 % 100,
    };
    check == tens * 10 + ones
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
    fn masks_snils_in_every_written_form() {
        // 112-233-445 95 is a valid SNILS: 1·9+1·8+2·7+2·6+3·5+3·4+4·3+4·2+5·1 = 95.
        assert_eq!(mask("СНИЛС 112-233-445 95"), "СНИЛС ***-***-*** **");
        assert_eq!(mask("снилс 112-233-445-95"), "снилс ***-***-***-**");
        assert_eq!(mask("снилс 112 233 445 95"), "снилс *** *** *** **");
        // Bare: the check digits alone are enough, no word needed.
        assert_eq!(mask("номер 11223344595, прошу"), "номер ***********, прошу");
        // Written as a SNILS, it is masked whatever its check digits.
        assert_eq!(mask("123-456-789 00"), "***-***-*** **");
        // After the word, whatever its check digits, even when it could be dialled.
        assert_eq!(mask("снилс: 12345678901."), "снилс: ***********.");
        assert_eq!(mask("SNILS 81234567890"), "SNILS ***********");
        assert_eq!(mask("Мой СНИЛС — 12345678901"), "Мой СНИЛС — ***********");
    }

    #[test]
    fn keeps_phone_numbers() {
        for phone in [
            "+7 (914) 123-45-67",
            "+7 914 123 45 67",
            "+79141234567",
            "+7-914-123-45-67",
            "8 (914) 123-45-67",
            "8 914 123 45 67",
            "8-914-123-45-67",
            "89141234567",
            "79141234567",
            "8 (4152) 12-34-56",
            // A Kamchatka landline: after the prefix it has a passport's shape.
            "8 4152 123456",
            "+7 4152 123456",
            // Phones that happen to pass the SNILS check: 8,1,2,…,8 weighted gives 192 ≡ 91.
            "81234567891",
            "+7 81234567891",
        ] {
            let text = format!("Мой телефон {phone}, перезвоните");
            assert_eq!(mask(&text), text, "{phone}");
        }
        // The word names the number right after it, not a phone further on.
        assert_eq!(mask("СНИЛС 112-233-445 95, телефон 89141234567"), "СНИЛС ***-***-*** **, телефон 89141234567");
        assert_eq!(mask("паспорт 1234 123456, тел. 8 4152 123456"), "паспорт **** ******, тел. 8 4152 123456");
    }

    #[test]
    fn masks_passports_in_every_written_form() {
        assert_eq!(mask("паспорт 12 34 123456 выдан"), "паспорт ** ** ****** выдан");
        assert_eq!(mask("Паспорт серии 1234 № 567890"), "Паспорт серии **** № ******");
        assert_eq!(mask("серия и номер 1234№567890"), "серия и номер ****№******");
        assert_eq!(mask("выдан 1234 567890 в 2010"), "выдан **** ****** в 2010");
        // Bare ten digits after the word.
        assert_eq!(mask("ПАСПОРТ: 1234123456"), "ПАСПОРТ: **********");
        assert_eq!(mask("passport 1234123456"), "passport **********");
        assert_eq!(mask("паспорт серия и номер 4510123456"), "паспорт серия и номер **********");
        // A Kamchatka landline code is also a passport series: with the word it is a passport.
        assert_eq!(mask("паспорт 4152 123456"), "паспорт **** ******");
    }

    #[test]
    fn leaves_other_numbers_alone() {
        // The platform number, dates, a postal code, a school number.
        let text = "Обращение 251819982 от 15.01.2025, индекс 683000, школа № 12, дом 1234";
        assert_eq!(mask(text), text);
        // Ten digits without the word "паспорт" nearby: an order number, not a passport.
        assert_eq!(mask("заказ 1234123456"), "заказ 1234123456");
        // Eleven digits that are not a valid SNILS, without the word: not a SNILS.
        assert_eq!(mask("договор 12345678901"), "договор 12345678901");
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
        assert_eq!(mask("№11223344595№"), "№***********№");
    }
}
