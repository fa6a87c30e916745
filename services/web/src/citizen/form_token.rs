//! The widget's signed form token: its CSRF protection (the widget has no cookies), its
//! time-based honeypot, its idempotency key and the challenge of its proof of work.
//!
//! A token is `<issued_ms>.<nonce>.<mac>`: the time the form was shown (Unix milliseconds), 128
//! random bits (hex), and the HMAC-SHA256 of both with the server's form key (hex). The nonce
//! is the appeal's request id and names the anonymous applicant (`widget-<nonce>`) whose token
//! uploads the files and submits the appeal, so a double click or a reload of the same form
//! creates one appeal, and the files belong to that form only.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// A verified form token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormToken {
    pub issued_ms: i64,
    pub nonce: String,
}

impl FormToken {
    /// The anonymous applicant this form speaks for.
    pub fn subject(&self) -> String {
        format!("widget-{}", self.nonce)
    }
}

/// Why a form token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token of ours (forged, from another key, or garbled).
    Invalid,
    /// Sent sooner after the form was shown than a person can fill it.
    TooFast,
    /// The form was shown too long ago.
    TooOld,
}

pub struct FormKeys {
    key: Vec<u8>,
}

impl FormKeys {
    pub fn new(key: &[u8]) -> FormKeys {
        FormKeys { key: key.to_vec() }
    }

    fn mac(&self, issued_ms: i64, nonce: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("hmac accepts any key length");
        mac.update(format!("widget-form.{issued_ms}.{nonce}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A fresh token for a form shown at `now_ms`.
    pub fn issue(&self, now_ms: i64) -> String {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        format!("{now_ms}.{nonce}.{}", self.mac(now_ms, &nonce))
    }

    /// The token's contents when its MAC matches (in constant time); no timing checks.
    pub fn verify(&self, token: &str) -> Result<FormToken, Refusal> {
        let mut parts = token.split('.');
        let (Some(issued), Some(nonce), Some(mac), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Invalid);
        };
        let issued_ms: i64 = issued.parse().map_err(|_| Refusal::Invalid)?;
        if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refusal::Invalid);
        }
        let expected = self.mac(issued_ms, nonce);
        if !crate::session::same_secret(&expected, mac) {
            return Err(Refusal::Invalid);
        }
        Ok(FormToken { issued_ms, nonce: nonce.to_owned() })
    }

    /// [`FormKeys::verify`], and the form must have been open between `min` and `max`.
    pub fn verify_timed(&self, token: &str, now_ms: i64, min: Duration, max: Duration) -> Result<FormToken, Refusal> {
        let form = self.verify(token)?;
        let age = now_ms - form.issued_ms;
        if age < min.as_millis() as i64 {
            return Err(Refusal::TooFast);
        }
        if age > max.as_millis() as i64 {
            return Err(Refusal::TooOld);
        }
        Ok(form)
    }
}

/// Whether `answer` proves `bits` of work on `token`: SHA-256 of `<token>:<answer>` starts with
/// that many zero bits. The page finds the answer (assets/widget-form.js); checking costs one
/// hash.
pub fn proof_of_work_holds(token: &str, answer: &str, bits: u32) -> bool {
    if answer.is_empty() || answer.len() > 20 || !answer.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let digest = Sha256::digest(format!("{token}:{answer}").as_bytes());
    leading_zero_bits(&digest) >= bits
}

fn leading_zero_bits(bytes: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in bytes {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// Finds a proof of work as the page does; for tests and tools.
pub fn solve(token: &str, bits: u32) -> String {
    (0u64..).map(|n| n.to_string()).find(|n| proof_of_work_holds(token, n, bits)).expect("a proof exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(3);
    const MAX: Duration = Duration::from_secs(7200);

    #[test]
    fn citizen_form_token_is_ours_and_timed() {
        let keys = FormKeys::new(b"key");
        let token = keys.issue(1_000_000);
        let form = keys.verify(&token).unwrap();
        assert_eq!(form.issued_ms, 1_000_000);
        assert_eq!(form.subject(), format!("widget-{}", form.nonce));
        assert_eq!(keys.verify_timed(&token, 1_000_000 + 2_999, MIN, MAX), Err(Refusal::TooFast));
        assert!(keys.verify_timed(&token, 1_000_000 + 3_000, MIN, MAX).is_ok());
        assert_eq!(keys.verify_timed(&token, 1_000_000 + 7_200_001, MIN, MAX), Err(Refusal::TooOld));
        assert_eq!(FormKeys::new(b"other").verify(&token), Err(Refusal::Invalid));
        // A shifted time or another nonce breaks the MAC.
        let (_, rest) = token.split_once('.').unwrap();
        assert_eq!(keys.verify(&format!("1.{rest}")), Err(Refusal::Invalid));
        for junk in ["", "1.2", "1.zz.ff", "a.b.c.d"] {
            assert_eq!(keys.verify(junk), Err(Refusal::Invalid), "{junk:?}");
        }
        assert_ne!(keys.issue(1), keys.issue(1), "each form has its own nonce");
    }

    #[test]
    fn citizen_proof_of_work_is_checked_with_one_hash() {
        let token = FormKeys::new(b"key").issue(5);
        let answer = solve(&token, 12);
        assert!(proof_of_work_holds(&token, &answer, 12));
        assert!(!proof_of_work_holds(&token, "", 0));
        assert!(!proof_of_work_holds(&token, "12a", 0));
        assert!(!proof_of_work_holds(&token, &answer, 256), "no answer has a hash of zeros");
        assert_eq!(leading_zero_bits(&[0, 0b0001_0000]), 11);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
    }
}
