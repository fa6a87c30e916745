//! Configuration files as an operator writes them, read the way the processes read them (the
//! platform's settings and the services' own sections): nothing panics, and a secret that loads
//! never shows in the configuration's debug output (which startup logs print).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use pos_platform::config::PlatformConfig;

static FILE: LazyLock<PathBuf> =
    LazyLock::new(|| std::env::temp_dir().join(format!("pos-fuzz-config-{}.toml", std::process::id())));

fuzz_target!(|text: &str| {
    let file = FILE.as_path();
    std::fs::write(file, text).expect("the scratch file");
    if let Ok(config) = PlatformConfig::load(Some(file)) {
        let printed = format!("{config:?}");
        // What prints without any secret: a secret that happens to equal other text is not a leak.
        let mut bare = config.clone();
        (bare.database_url, bare.amqp_url, bare.redis_url, bare.auth.hs256_secret) = (None, None, None, None);
        let bare = format!("{bare:?}");
        for secret in [&config.database_url, &config.amqp_url, &config.redis_url, &config.auth.hs256_secret]
            .into_iter()
            .flatten()
        {
            let secret = secret.expose();
            if secret.len() >= 8 && !bare.contains(secret) {
                assert!(!printed.contains(secret), "a secret shows in the configuration's debug output");
            }
        }
    }
    let _ = pos_intake::config::IntakeConfig::load(Some(file));
    let _ = pos_sla::config::SlaConfig::load(Some(file));
});
