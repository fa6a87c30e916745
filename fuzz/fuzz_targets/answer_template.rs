//! Answer templates as a head types them: the check on save and the rendering agree (a template
//! that passes the check always renders; one that fails, unless only for being blank, never
//! does), and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pos_ticketing::template::{check, render};

fuzz_target!(|body: &str| {
    let checked = check(body);
    let rendered = render(body, |name| format!("<{name}>"));
    let blank = body.trim().is_empty();
    assert_eq!(checked.is_ok() || blank, rendered.is_ok(), "check and render disagree on {body:?}");
});
