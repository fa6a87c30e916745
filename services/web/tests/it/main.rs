//! The cabinet in a real browser, against the embedded platform.

mod browser;
