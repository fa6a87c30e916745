//! Bearer tokens as any caller may send them: verifying arbitrary text never panics, a token the
//! platform minted verifies to exactly the caller it was minted for, and any change to one of its
//! bytes is refused.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use pos_platform::auth::{Authenticator, Role};
use pos_platform::config::{AuthConfig, Secret};

static AUTH: LazyLock<Authenticator> = LazyLock::new(|| {
    let config = AuthConfig { hs256_secret: Some(Secret::new("fuzzing secret")), ..AuthConfig::default() };
    Authenticator::from_config(&config).expect("an HS256 authenticator")
});

fuzz_target!(|input: (&str, String, String, Vec<u8>, u16)| {
    let (text, subject, organization, role_picks, flip) = input;
    let _ = block_on(AUTH.verify(text));

    let roles: Vec<Role> = role_picks.iter().take(4).map(|&pick| Role::ALL[pick as usize % Role::ALL.len()]).collect();
    let token = AUTH.mint(&subject, &organization, "41", &roles, Duration::from_secs(60)).expect("minted");
    let caller = block_on(AUTH.verify(&token)).expect("a minted token verifies");
    assert_eq!(caller.subject, subject);
    assert_eq!(caller.organization_id, organization);
    assert!(roles.iter().all(|role| caller.roles.contains(role)));

    let mut tampered = token.into_bytes();
    let at = flip as usize % tampered.len();
    // Another base64url character, so the token still parses and only the signature can object.
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    if let Ok(tampered) = String::from_utf8(tampered)
        && let Ok(forged) = block_on(AUTH.verify(&tampered))
    {
        // Flipping a bit of base64 padding can leave the decoded bytes as they were.
        assert_eq!(forged.subject, caller.subject, "a changed token verified as someone else");
        assert_eq!(forged.organization_id, caller.organization_id, "a changed token verified for another organization");
    }
});
