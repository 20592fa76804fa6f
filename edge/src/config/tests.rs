//! Configuration: validation, environment overrides, secrets.

use super::*;
use std::collections::HashMap;

const STRONG: &str = "0123456789abcdef-current";
const OLDER: &str = "0123456789abcdef-older";

fn valid() -> EdgeConfig {
    let mut c = EdgeConfig::default();
    c.content.root = "/".into();
    c.signing.secrets = vec![STRONG.into()];
    c
}

fn problems(c: &EdgeConfig) -> Vec<String> {
    c.validate().expect_err("invalid").0
}

#[test]
fn refuses_to_start_without_secret_and_reports_everything() {
    let mut c = EdgeConfig::default();
    c.content.root = "/nonexistent-edge-root".into();
    c.content.prefix = "hls".into();
    c.server.listen = "nope".into();
    let err = problems(&c);
    assert_eq!(err.len(), 4, "{err:#?}");
    assert!(err.iter().any(|e| e.contains("HLS_SIGNING_SECRET")));
}

#[test]
fn env_overrides_and_secret_rotation() {
    let mut c = EdgeConfig::from_toml(&format!(
        "[signing]\nsecrets = [\"old-current-0123456789\", \"{OLDER}\"]\n[content]\nroot = \"/\"\n"
    ))
    .expect("parse");
    let env: HashMap<&str, &str> = HashMap::from([
        ("HLS_SIGNING_SECRET", STRONG),
        ("EDGE_LISTEN", "127.0.0.1:0"),
    ]);
    c.apply_env(&env);
    let secrets: Vec<&str> = c.signing.secrets.iter().map(|s| s.expose()).collect();
    assert_eq!(secrets, [STRONG, OLDER]);
    let s = c.validate().expect("valid");
    assert_eq!(s.listen, Some("127.0.0.1:0".parse().expect("addr")));
    assert_eq!(
        s.admin_listen,
        Some("127.0.0.1:9090".parse().expect("addr")),
        "admin stays local"
    );
    assert!(s.purge_token.is_none(), "purge is off by default");
    assert!(s.warnings.is_empty());
}

/// A number that does not parse is a problem reported with the others, not a log line before
/// logging exists (which let `edge check` call the configuration valid).
#[test]
fn unparsable_env_overrides_are_reported_with_every_other_problem() {
    let mut c = valid();
    c.server.listen = "nope".into();
    let env: HashMap<&str, &str> = HashMap::from([
        ("EDGE_CACHE_MAX_BYTES", "abc"),
        ("EDGE_CACHE_MAX_OBJECT_BYTES", "12MB"),
        ("EDGE_ALLOW_WEAK_SECRET", "maybe"),
    ]);
    c.apply_env(&env);
    let err = problems(&c);
    assert_eq!(err.len(), 4, "{err:#?}");
    for name in [
        "EDGE_CACHE_MAX_BYTES",
        "EDGE_CACHE_MAX_OBJECT_BYTES",
        "EDGE_ALLOW_WEAK_SECRET",
        "server.listen",
    ] {
        assert!(err.iter().any(|e| e.starts_with(name)), "{name}: {err:#?}");
    }
    assert_eq!(
        c.cache.max_bytes,
        CacheConfig::default().max_bytes,
        "kept as it was"
    );
    assert!(c.secure_link().is_err(), "`edge sign` refuses it too");

    let mut c = valid();
    c.apply_env(&HashMap::from([("EDGE_CACHE_MAX_BYTES", " 16777216 ")]));
    assert_eq!(c.validate().expect("valid").cache_max_bytes, 16 << 20);
}

#[test]
fn short_and_placeholder_secrets_are_refused_with_every_other_problem() {
    let mut c = valid();
    c.signing.secrets = vec!["fifteen-bytes!!".into(), OLDER.into(), "short".into()];
    c.content.prefix = "hls".into();
    let err = problems(&c);
    assert_eq!(err.len(), 3, "{err:#?}");
    assert!(err[0].contains("content.prefix"), "{err:#?}");
    assert!(err[1].contains("HLS_SIGNING_SECRET") && err[1].contains("15 bytes"));
    assert!(err[2].contains("signing.secrets[2]") && err[2].contains("5 bytes"));

    let mut c = valid();
    c.apply_env(&HashMap::from([(
        "HLS_SIGNING_SECRET",
        "CHANGE-ME-AT-LEAST-16-BYTES",
    )]));
    let err = problems(&c);
    assert!(
        err.len() == 1 && err[0].contains("HLS_SIGNING_SECRET") && err[0].contains("placeholder"),
        "{err:#?}"
    );
}

#[test]
fn a_weak_secret_is_kept_only_when_allowed_and_then_warned_about() {
    let mut c = valid();
    c.signing.secrets = vec!["nginx-secret".into()];
    assert_eq!(problems(&c).len(), 1);
    c.apply_env(&HashMap::from([("EDGE_ALLOW_WEAK_SECRET", "true")]));
    let s = c.validate().expect("allowed");
    assert_eq!(s.warnings.len(), 1, "{:#?}", s.warnings);
    assert!(s.warnings[0].contains("HLS_SIGNING_SECRET"));
    let (_, warnings) = c.secure_link().expect("`edge sign` too");
    assert_eq!(warnings, s.warnings);

    c.signing.secrets = vec!["CHANGE-ME".into()];
    assert!(
        problems(&c)[0].contains("placeholder"),
        "a placeholder is never allowed"
    );
}

#[test]
fn the_purge_token_must_be_strong_when_set() {
    for (token, why) in [
        ("purge-secret", "12 bytes"),
        ("CHANGE-ME-PURGE-TOKEN-0000", "placeholder"),
    ] {
        let mut c = valid();
        c.signing.allow_weak_secret = true;
        c.apply_env(&HashMap::from([("EDGE_PURGE_TOKEN", token)]));
        let err = problems(&c);
        assert!(
            err.len() == 1 && err[0].contains("EDGE_PURGE_TOKEN") && err[0].contains(why),
            "{token}: {err:#?}"
        );
    }
    let mut c = valid();
    c.admin.purge_token = "purge-token-0123456789".into();
    let s = c.validate().expect("valid");
    assert_eq!(
        s.purge_token.as_ref().map(|t| t.expose()),
        Some("purge-token-0123456789")
    );
}

/// Config and settings are logged and printed in panics; neither may show a secret.
#[test]
fn debug_output_never_shows_a_secret() {
    let mut c = valid();
    c.signing.secrets.push(OLDER.into());
    c.admin.purge_token = "purge-token-0123456789".into();
    let settings = c.validate().expect("valid");
    for shown in [format!("{c:?}"), format!("{settings:?}")] {
        for secret in [STRONG, OLDER, "purge-token-0123456789"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}

#[test]
fn unknown_keys_are_errors() {
    assert!(EdgeConfig::from_toml("[server]\nlisen = \"x\"\n").is_err());
}

#[test]
fn example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/edge.toml");
    let text = std::fs::read_to_string(path).expect("config/edge.toml exists");
    let mut c = EdgeConfig::from_toml(&text).expect("parses");
    c.content.root = "/".into();
    c.signing.secrets = vec![STRONG.into()];
    c.validate().expect("valid apart from root and secret");
}

const READER_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "edge-reader"),
    ("AWS_SECRET_ACCESS_KEY", "edge-reader-secret-0123456789"),
];

#[test]
fn an_s3_upstream_takes_the_store_block_and_credentials_from_the_environment() {
    let mut c = EdgeConfig::from_toml(
        "[upstream]\nkind = \"s3\"\nbucket = \"media\"\nprefix = \"hls\"\n\
         endpoint = \"https://acct.r2.cloudflarestorage.com\"\nregion = \"auto\"\n\
         cache_max_bytes = 1048576\n",
    )
    .expect("parses");
    c.content.root = "/".into();
    c.signing.secrets = vec![STRONG.into()];
    c.apply_env(&HashMap::from(READER_ENV));
    let s = c.validate().expect("valid");
    let u = s.upstream.expect("an upstream");
    assert_eq!(u.cache_max_bytes, 1 << 20);
    match u.source {
        upstream::SourceSettings::S3(store) => {
            assert_eq!(
                (store.bucket.as_str(), store.prefix.as_str()),
                ("media", "hls/")
            );
            assert_eq!(store.region, "auto");
            assert_eq!(store.credentials.access_key_id.expose(), "edge-reader");
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{c:?}").contains("edge-reader-secret"));
}

#[test]
fn upstream_problems_are_reported_with_every_other_one() {
    let mut c = EdgeConfig::from_toml(
        "[upstream]\nkind = \"s3\"\nbucket = \"media\"\nsecret_access_key = \"in-the-file-0123456789\"\n",
    )
    .expect("parses");
    c.content.root = "/".into();
    c.signing.secrets = vec![STRONG.into()];
    c.server.listen = "nope".into();
    c.apply_env(&HashMap::from([("S3_ALLOW_HTTP", "maybe")]));
    let err = problems(&c);
    assert_eq!(err.len(), 4, "{err:#?}");
    assert!(err.iter().any(|e| e.starts_with("server.listen")));
    assert!(err.iter().any(|e| e.starts_with("S3_ALLOW_HTTP")));
    assert!(err.iter().any(|e| e.contains("upstream.secret_access_key")));
    assert!(err
        .iter()
        .any(|e| e.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")));

    // No upstream: the S3 environment of a shared host is not this edge's business.
    let mut c = valid();
    c.apply_env(&HashMap::from([("S3_ALLOW_HTTP", "maybe")]));
    assert!(c.validate().expect("valid").upstream.is_none());
}

#[test]
fn an_http_upstream_needs_a_base_url_and_no_bucket() {
    let mut c =
        EdgeConfig::from_toml("[upstream]\nkind = \"http\"\nurl = \"http://shield:8080/hls\"\n")
            .expect("parses");
    c.content.root = "/".into();
    c.signing.secrets = vec![STRONG.into()];
    let u = c.validate().expect("valid").upstream.expect("an upstream");
    assert!(
        matches!(&u.source, upstream::SourceSettings::Http { url, .. } if url == "http://shield:8080/hls/")
    );
    for (toml, why) in [
        ("kind = \"http\"\nurl = \"ftp://x/\"\n", "upstream.url"),
        (
            "kind = \"http\"\nurl = \"http://x/\"\nbucket = \"media\"\n",
            "kind = \"s3\"",
        ),
        ("url = \"http://x/\"\n", "upstream.kind"),
        (
            "kind = \"http\"\nurl = \"http://x/\"\nlock_timeout_secs = 0\n",
            "lock_timeout_secs",
        ),
        (
            "kind = \"http\"\nurl = \"http://u:pw@x/hls/\"\n",
            "a user or password",
        ),
        (
            "kind = \"http\"\nurl = \"https://u@x:8443/\"\n",
            "a user or password",
        ),
        (
            "kind = \"http\"\nurl = \"http://x/\"\nplaylist_ttl_secs = 86401\n",
            "at most 86400",
        ),
    ] {
        let mut c = EdgeConfig::from_toml(&format!("[upstream]\n{toml}")).expect("parses");
        c.content.root = "/".into();
        c.signing.secrets = vec![STRONG.into()];
        let err = problems(&c);
        assert!(err.len() == 1 && err[0].contains(why), "{toml}: {err:#?}");
    }
    // An @ in the path is a path.
    let mut c = EdgeConfig::from_toml("[upstream]\nkind = \"http\"\nurl = \"http://x/a@b/\"\n")
        .expect("parses");
    c.content.root = "/".into();
    c.signing.secrets = vec![STRONG.into()];
    assert!(c.validate().is_ok(), "{:#?}", problems(&c));
    assert!(EdgeConfig::from_toml("[upstream]\nkind = \"ftp\"\n").is_err());
    assert!(
        EdgeConfig::from_toml("[upstream]\nbuckett = \"x\"\n").is_err(),
        "typos fail"
    );
}

/// HTTP/2's per-stream send timeout cannot tell a slow upstream from a client that stopped
/// reading: with TLS (where HTTP/2 is offered) the upstream's timeout must run out first.
#[test]
fn the_send_timeout_outlasts_the_upstreams_over_tls() {
    let toml = "[server]\nsend_timeout_secs = 60\n\
                [upstream]\nkind = \"http\"\nurl = \"http://x/\"\ntimeout_secs = 60\n";
    let mut c = EdgeConfig::from_toml(toml).expect("parses");
    c.content.root = "/".into();
    c.signing.secrets = vec![STRONG.into()];
    assert!(
        c.validate().is_ok(),
        "plain HTTP/1.1 only: no HTTP/2 stream waits"
    );
    // Validation only checks that the certificate and key are files.
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    c.tls.listen = "127.0.0.1:0".into();
    (c.tls.cert, c.tls.key) = (file.into(), file.into());
    let err = problems(&c);
    assert!(
        err.len() == 1 && err[0].contains("send_timeout_secs (60)"),
        "{err:#?}"
    );
    c.server.send_timeout_secs = 61;
    assert!(c.validate().is_ok());
}

#[test]
fn ktls_is_auto_unless_turned_off() {
    assert_eq!(EdgeConfig::default().tls.ktls, KtlsMode::Auto);
    let c = EdgeConfig::from_toml("[tls]\nktls = \"off\"\n").expect("parse");
    assert_eq!(c.tls.ktls, KtlsMode::Off);
    assert!(EdgeConfig::from_toml("[tls]\nktls = \"on\"\n").is_err());

    let mut c = valid();
    c.apply_env(&HashMap::from([("EDGE_TLS_KTLS", "off")]));
    assert_eq!(c.tls.ktls, KtlsMode::Off);
    let mut c = valid();
    c.apply_env(&HashMap::from([("EDGE_TLS_KTLS", "sometimes")]));
    let err = problems(&c);
    assert!(
        err.iter().any(|e| e.starts_with("EDGE_TLS_KTLS")),
        "{err:#?}"
    );
}
