//! The type of an uploaded file is decided from its bytes, as they arrive in chunks of any size:
//! nothing panics, the decision on the whole file does not depend on how it was cut, and the
//! UTF-8 check across chunk boundaries agrees with the standard library on the whole text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pos_intake::attachments::{Utf8Check, clean_file_name, detect};

fuzz_target!(|input: (Vec<u8>, Vec<u8>, String)| {
    let (bytes, cuts, name) = input;
    let _ = detect(&bytes, false);
    let _ = detect(&bytes, true);

    let mut check = Utf8Check::default();
    let mut rest = bytes.as_slice();
    let mut ok = true;
    for &cut in &cuts {
        let at = (cut as usize).min(rest.len());
        let (chunk, tail) = rest.split_at(at);
        ok &= check.feed(chunk);
        rest = tail;
    }
    ok &= check.feed(rest);
    let whole = std::str::from_utf8(&bytes).is_ok() && !bytes.contains(&0);
    assert_eq!(ok && check.finish(), whole, "chunked UTF-8 check disagrees with the whole text");

    if let Ok(clean) = clean_file_name(&name) {
        assert!(!clean.contains(['/', '\\']), "a cleaned name keeps a path separator");
        assert!(!clean.chars().any(char::is_control), "a cleaned name keeps a control character");
        assert!(clean != "." && clean != "..", "a cleaned name is a directory reference");
    }
});
