//! Masking of SNILS and passport numbers over any text: nothing panics, only ASCII digits ever
//! change (to `*`), and a SNILS written in its own shape between spaces is always masked,
//! whatever surrounds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pos_intake::masking::mask;

const SNILS: &str = "112-233-445 95";

fuzz_target!(|text: &str| {
    let masked = mask(text);
    assert_eq!(masked.len(), text.len(), "masking keeps the text's length");
    for (before, after) in text.chars().zip(masked.chars()) {
        assert!(before == after || (before.is_ascii_digit() && after == '*'), "masking changed {before:?} to {after:?}");
    }

    let middle = text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(at, _)| at);
    let with_snils = format!("{} {SNILS} {}", &text[..middle], &text[middle..]);
    let inserted = middle + 1..middle + 1 + SNILS.len();
    let masked = mask(&with_snils);
    assert!(!masked[inserted].contains(|c: char| c.is_ascii_digit()), "a written SNILS survived masking: {masked:?}");
});
