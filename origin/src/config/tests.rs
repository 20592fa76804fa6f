//! Configuration: defaults, every problem at once, secrets, roles.

use super::*;
use shared::secure_link::{Secret, SecureLink};
use std::collections::HashMap;

const JWT: &str = "0123456789abcdef0123";
const EDGE: &str = "edge-secret-0123456789";

fn base() -> OriginConfig {
    let mut c = OriginConfig::default();
    c.server.listen = "127.0.0.1:0".into();
    c.playback.edge_base_url = "http://127.0.0.1:8080".into();
    c
}

fn with_env(pairs: &[(&str, &str)]) -> OriginConfig {
    let mut c = base();
    c.apply_env(&pairs.iter().copied().collect::<HashMap<&str, &str>>());
    c
}

#[test]
fn no_default_secrets_and_every_problem_reported() {
    let mut c = OriginConfig::default();
    c.server.listen = "nope".into();
    let errors = c.serve().expect_err("invalid").0;
    assert!(
        errors.iter().any(|e| e.contains("JWT_SECRET")),
        "{errors:#?}"
    );
    assert!(errors.iter().any(|e| e.contains("server.listen")));
    assert!(errors.iter().any(|e| e.contains("edge_base_url")));
    assert!(errors.iter().any(|e| e.contains("HLS_SIGNING_SECRET")));
}

#[test]
fn signing_secret_derived_only_in_dev_mode() {
    let mut c = with_env(&[("JWT_SECRET", JWT)]);
    assert!(c.serve().is_err(), "production refuses to derive");
    c.server.dev = true;
    let s = c.serve().expect("dev derives");
    assert!(s.dev);
    let s = with_env(&[("JWT_SECRET", JWT), ("HLS_SIGNING_SECRET", EDGE)])
        .serve()
        .expect("valid");
    assert_eq!(
        s.playback.link.sign("/hls/a", 10, ""),
        SecureLink::new(vec![Secret::new(EDGE)])
            .expect("link")
            .sign("/hls/a", 10, "")
    );
}

#[test]
fn dev_mode_only_on_loopback() {
    let mut c = with_env(&[("JWT_SECRET", JWT), ("HLS_SIGNING_SECRET", EDGE)]);
    c.server.dev = true;
    c.server.listen = "0.0.0.0:8000".into();
    let errors = c.serve().expect_err("refused").0;
    assert!(errors[0].contains("loopback"), "{errors:?}");
    c.server.listen = "[::1]:8000".into();
    c.serve().expect("loopback is fine");
}

#[test]
fn weak_signing_secret_only_when_allowed() {
    let c = with_env(&[("JWT_SECRET", JWT), ("HLS_SIGNING_SECRET", "nginx-secret")]);
    let errors = c.serve().expect_err("weak").0;
    assert!(
        errors[0].contains("HLS_SIGNING_SECRET is 12 bytes"),
        "{errors:?}"
    );
    let c = with_env(&[
        ("JWT_SECRET", JWT),
        ("HLS_SIGNING_SECRET", "nginx-secret"),
        ("ORIGIN_ALLOW_WEAK_SECRET", "true"),
    ]);
    c.serve().expect("kept on purpose");
    let c = with_env(&[
        ("JWT_SECRET", JWT),
        ("HLS_SIGNING_SECRET", "CHANGE-ME"),
        ("ORIGIN_ALLOW_WEAK_SECRET", "1"),
    ]);
    assert!(c.serve().is_err(), "a placeholder never");
}

#[test]
fn env_values_that_do_not_parse_are_problems() {
    let c = with_env(&[
        ("JWT_SECRET", JWT),
        ("HLS_SIGNING_SECRET", EDGE),
        ("ORIGIN_STORE", "postgres"),
        ("ORIGIN_DEV", "maybe"),
    ]);
    let errors = c.serve().expect_err("invalid").0;
    assert!(
        errors.iter().any(|e| e.starts_with("ORIGIN_STORE=")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("ORIGIN_DEV=")),
        "{errors:?}"
    );
}

#[test]
fn secrets_never_in_debug_output() {
    let c = with_env(&[
        ("JWT_SECRET", JWT),
        ("HLS_SIGNING_SECRET", EDGE),
        ("EDGE_PURGE_TOKEN", "purge-token-0123456789"),
        ("PLAYBACK_SECRET", "playback-secret-0123456789"),
        ("ORIGIN_STORE", "redis"),
        ("REDIS_URL", "redis://:redis/password@cache.internal:6379/2"),
    ]);
    let s = c.serve().expect("valid");
    for shown in [format!("{c:?}"), format!("{s:?}")] {
        assert!(
            shown.contains("redis://***@cache.internal:6379/2"),
            "{shown}"
        );
        for secret in [
            JWT,
            EDGE,
            "purge-token",
            "playback-secret",
            "redis/password",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}

#[test]
fn example_config_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/origin.toml"
    ))
    .expect("exists");
    let mut c = OriginConfig::from_toml(&text).expect("parses");
    c.auth.jwt_secret = JWT.into();
    c.playback.signing_secrets = vec![EDGE.into()];
    c.playback.edge_base_url = "https://edge.example.com".into();
    c.serve().expect("valid with secrets and the edge URL");
}

#[test]
fn webhook_problems_join_the_others() {
    let mut c =
        OriginConfig::from_toml("[webhooks]\nurl = \"http://hooks.local/in\"\n").expect("parses");
    c.server.listen = "nope".into();
    let errors = c.serve().expect_err("invalid").0;
    assert!(
        errors.iter().any(|e| e.contains("WEBHOOK_SECRET")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("server.listen")),
        "{errors:#?}"
    );
    let c = with_env(&[
        ("JWT_SECRET", JWT),
        ("HLS_SIGNING_SECRET", EDGE),
        ("ORIGIN_WEBHOOK_URL", "https://hooks.example.com/video"),
        ("WEBHOOK_SECRET", "whsec-0123456789abcdef"),
    ]);
    let s = c.serve().expect("valid");
    let w = s.worker.webhooks.expect("enabled");
    assert_eq!(
        (w.target.host.as_str(), w.target.port),
        ("hooks.example.com", 443)
    );
    assert!(base().webhooks.url.is_empty(), "off by default");
}

#[test]
fn a_worker_needs_no_api_secrets() {
    let c = OriginConfig::default();
    let w = c
        .worker(None)
        .expect("a worker needs no JWT, signing secret or edge URL");
    assert_eq!(w.store, StoreSettings::Embedded);
    assert!(w.admin_listen.is_none());
    assert!(c.serve().is_err(), "the API does");
    let c = with_env(&[("ORIGIN_STORE", "postgres")]);
    let errors = c.worker(Some("nope")).expect_err("invalid").0;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(c.media().is_err(), "env problems are every role's problems");
}

#[test]
fn a_ladder_and_timeouts_that_could_never_work_are_refused() {
    use crate::transcode::ladder::RungSpec;
    let mut c = OriginConfig::default();
    let rung = |name: &str, short_side, video_kbps| RungSpec {
        name: name.into(),
        short_side,
        video_kbps,
        audio_kbps: 64,
    };
    c.transcode.ladder = vec![
        rung("720p", 720, 3000),
        rung("720p", 720, 2000),
        rung("../x", 480, 1000),
        rung("subs_u1", 360, 800),
        rung("tiny", 0, 100),
        rung("free", 240, 0),
    ];
    c.transcode.stall_timeout_secs = 0;
    c.server.max_upload_bytes = 0;
    let errors = c.serve().expect_err("invalid").0;
    for expected in [
        "ladder[1]: the name \"720p\" is used",
        "ladder[2]: the name \"../x\" must be",
        "ladder[3]: the name \"subs_u1\" starts like",
        "ladder[4]: short_side",
        "ladder[5]: video_kbps",
        "stall_timeout_secs",
        "max_upload_bytes",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected}: {errors:#?}"
        );
    }
    assert!(
        !errors.iter().any(|e| e.contains("ladder[0]")),
        "{errors:#?}"
    );
    assert!(
        c.worker(None).is_err(),
        "a worker encodes with the ladder too"
    );
}
