//! The store block: validation, environment, credentials, keys.

use std::collections::HashMap;

use super::*;

const CREDS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "edge-reader"),
    ("AWS_SECRET_ACCESS_KEY", "reader-secret-0123456789"),
];

fn env(extra: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
    CREDS.iter().chain(extra).copied().collect()
}

fn parse(toml_text: &str) -> StoreConfig {
    toml::from_str(toml_text).expect("parses")
}

fn problems(c: &StoreConfig) -> Vec<String> {
    let mut p = Vec::new();
    assert!(c.validate("storage", &mut p).is_none(), "invalid");
    p
}

#[test]
fn a_bucket_and_credentials_from_the_environment_are_enough() {
    let mut c = parse("bucket = \"media\"\nprefix = \"hls\"\n");
    c.apply_env(&env(&[]));
    let mut p = Vec::new();
    let s = c.validate("storage", &mut p).expect("valid");
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(s.prefix, "hls/");
    assert_eq!(s.region, "us-east-1");
    assert!(!s.virtual_hosted_style, "path-style by default");
    assert_eq!(s.endpoint, None);
    assert_eq!(s.credentials.access_key_id.expose(), "edge-reader");
    let shown = format!("{c:?} {s:?}");
    assert!(!shown.contains("reader-secret"), "{shown}");
}

#[test]
fn env_overrides_win_and_bad_values_are_problems() {
    let mut c = parse("bucket = \"media\"\nendpoint = \"https://x.example\"\n");
    c.apply_env(&env(&[
        ("S3_BUCKET", "other"),
        ("S3_ENDPOINT", "http://127.0.0.1:8333/"),
        ("S3_REGION", "auto"),
        ("S3_PREFIX", "/abs"),
        ("S3_ALLOW_HTTP", "perhaps"),
        ("S3_ETAGS_ARE_MD5", "mostly"),
    ]));
    assert_eq!((c.bucket.as_str(), c.region.as_str()), ("other", "auto"));
    let p = problems(&c);
    assert_eq!(p.len(), 4, "{p:#?}");
    assert!(p[0].starts_with("S3_ALLOW_HTTP"), "{p:#?}");
    assert!(p[1].starts_with("S3_ETAGS_ARE_MD5"), "{p:#?}");
    assert!(p[2].contains("storage.prefix"), "{p:#?}");
    assert!(
        p[3].contains("plain http") && p[3].contains("allow_http"),
        "{p:#?}"
    );

    let mut c = parse("bucket = \"media\"\n");
    c.apply_env(&env(&[
        ("S3_ENDPOINT", "http://127.0.0.1:8333/"),
        ("S3_ALLOW_HTTP", "true"),
        ("S3_ETAGS_ARE_MD5", "false"),
    ]));
    let s = c.validate("storage", &mut Vec::new()).expect("valid");
    assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
    assert!(!s.etags_are_md5);
}

#[test]
fn credentials_in_the_file_are_refused_and_named() {
    let mut c = parse(
        "bucket = \"media\"\naccess_key_id = \"AKIA0000\"\nsecret_access_key = \"shh-0123456789abcdef\"\n",
    );
    c.apply_env(&env(&[]));
    let p = problems(&c);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[0].contains("storage.access_key_id") && p[0].contains("AWS_ACCESS_KEY_ID"));
    assert!(p[1].contains("storage.secret_access_key") && p[1].contains("AWS_SECRET_ACCESS_KEY"));
    assert!(!format!("{c:?}").contains("shh-0123"), "never printed");
}

#[test]
fn missing_or_half_credentials_and_bad_buckets_are_reported_together() {
    let c = parse("bucket = \"Bad_Bucket\"\nconnect_timeout_secs = 0\n");
    let p = problems(&c);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p[0].contains("storage.bucket"));
    assert!(p[1].contains("connect_timeout_secs"));
    assert!(p[2].contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"));

    let mut c = parse("bucket = \"media\"\n");
    c.apply_env(&HashMap::from([("AWS_ACCESS_KEY_ID", "x")]));
    let p = problems(&c);
    assert_eq!(
        p,
        ["AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"]
    );
}

#[test]
fn unknown_keys_are_errors() {
    assert!(toml::from_str::<StoreConfig>("buckett = \"x\"\n").is_err());
}

#[test]
fn keys_live_under_the_prefix_and_never_escape_it() {
    let o = Objects::new(
        std::sync::Arc::new(object_store::memory::InMemory::new()),
        "hls",
        "memory",
    );
    assert_eq!(o.prefix(), "hls/");
    assert_eq!(
        o.key("v/720p/segment_000.ts")
            .map(|k| k.to_string())
            .as_deref(),
        Some("hls/v/720p/segment_000.ts")
    );
    assert_eq!(
        o.key("/v/a.ts").map(|k| k.to_string()).as_deref(),
        Some("hls/v/a.ts")
    );
    for bad in ["", "../x", "v/../x", "v//x", "v/./x", "v/a\n.ts", "v/"] {
        assert!(o.key(bad).is_none(), "{bad:?}");
    }
    assert_eq!(
        o.prefix_path().map(|p| p.to_string()).as_deref(),
        Some("hls")
    );
}

#[test]
fn etags_carry_an_md5_only_for_single_part_uploads() {
    assert_eq!(
        etag_md5("\"d41d8cd98f00b204e9800998ecf8427e\""),
        Some([
            0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
            0x42, 0x7e
        ])
    );
    assert_eq!(etag_md5("\"d41d8cd98f00b204e9800998ecf8427e-3\""), None);
    assert_eq!(etag_md5("\"6553f100-14ad98\""), None);
    // A store configured as SSE-KMS (ETags that are not MD5s) promises nothing.
    let md5 = "\"d41d8cd98f00b204e9800998ecf8427e\"";
    let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    let plain = Objects::new(store.clone(), "", "memory");
    assert!(plain.etag_md5(Some(md5)).is_some());
    assert_eq!(plain.with_md5_etags(false).etag_md5(Some(md5)), None);
}
