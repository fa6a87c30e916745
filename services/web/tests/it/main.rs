//! The cabinet against the embedded platform: in a real browser, and signing in through an
//! identity provider of the tests' own; and the list page's server time over 100,000 tickets
//! (ignored: an explicit benchmark).

mod admin;
mod browser;
mod citizen;
mod idp;
mod incidents;
mod list_bench;
mod oidc;
mod onboarding;
mod open311;
mod openapi;
mod supervised_report;
