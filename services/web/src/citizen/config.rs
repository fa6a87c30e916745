//! The citizen side's settings (`[web.citizen]`, `POS_WEB__CITIZEN__*`): keys, abuse limits, the
//! form's files, and who may frame the widget.

use std::net::IpAddr;

use pos_platform::config::Secret;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct CitizenConfig {
    /// HMAC key of the widget's form tokens. Every replica of the web service needs the same
    /// one; unset: a random key per process (one replica, and forms open at a restart are
    /// refused politely).
    pub form_key: Option<Secret>,
    /// HMAC key of the applicants' links to their appeal's page, the same as notify's
    /// `notify.appeal_link_key`. Unset: derived from `auth.hs256_secret` as notify derives it
    /// (development, `pos up`); with neither, links are not accepted (the page says so).
    pub appeal_link_key: Option<Secret>,
    /// Peers whose `X-Forwarded-For` is believed (the load balancer, the ingress). Anyone else's
    /// header is ignored: the client is the socket's peer.
    pub trusted_proxies: Vec<IpAddr>,
    /// `frame-ancestors` of the widget's pages: the sites that may embed the form (`*`: any).
    pub frame_ancestors: String,
    /// A form sent sooner than this after it was shown is a robot's (the time-based honeypot).
    pub min_fill_secs: u64,
    /// A form older than this is refused (shown again with a fresh token), in minutes.
    pub max_form_age_minutes: u64,
    /// Leading zero bits of the proof of work the page computes before sending (SHA-256).
    pub pow_bits: u32,
    /// Requests to the widget's endpoints (uploads, submissions) per minute from one IP.
    pub ip_per_minute: u32,
    /// Of them at once.
    pub ip_burst: u32,
    /// Submissions per hour with one e-mail or phone.
    pub contact_per_hour: u32,
    /// Of them at once.
    pub contact_burst: u32,
    /// The largest file the form takes, in bytes (intake's `max_attachment_bytes`).
    pub max_file_bytes: u64,
    /// How many files one appeal may carry (intake's `max_attachments`).
    pub max_files: usize,
    /// The file types shown before upload (intake checks the content: `applicant_file_types`).
    pub file_extensions: Vec<String>,
}

impl Default for CitizenConfig {
    fn default() -> Self {
        CitizenConfig {
            form_key: None,
            appeal_link_key: None,
            trusted_proxies: Vec::new(),
            frame_ancestors: "*".into(),
            min_fill_secs: 3,
            max_form_age_minutes: 120,
            pow_bits: 16,
            ip_per_minute: 60,
            ip_burst: 20,
            contact_per_hour: 5,
            contact_burst: 3,
            max_file_bytes: 10 * 1024 * 1024,
            max_files: 10,
            file_extensions: [
                "txt", "odt", "ods", "odp", "odf", "xls", "xlsx", "ppt", "pptx", "doc", "docx", "rtf", "pdf", "jpeg",
                "jpg",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}
