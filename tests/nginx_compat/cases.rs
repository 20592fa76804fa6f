//! The request cases of the compatibility suite, one function per row category of the spec
//! (`docs/nginx-secure-link.md`).
//!
//! Every case is a raw request whose Host header (and absolute-form authority) is the
//! placeholder [`AUTHORITY`], filled in per server. Cases that reproduce a numbered row of the
//! spec carry that row's status so the nginx harness itself can be checked against the spec.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, UNIX_EPOCH};

use e2e::content::{ContentTree, EntryKind, SEGMENT, SEGMENT_SIZE, VIDEO_ID};
use e2e::{future_expires, past_expires, signer, unix_now, Request, PREFIX, TEST_SECRET};
use shared::secure_link::{encode_path, Secret, SecureLink, Template};

/// Placeholder for `host:port` of the server a case is sent to.
pub const AUTHORITY: &str = "{authority}";

/// base64url alphabet, to derive tampered tokens.
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// One request sent to both servers.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique, human-readable name (what the allow-list refers to).
    pub name: String,
    /// The raw request with [`AUTHORITY`] placeholders.
    pub request: String,
    /// The status the spec recorded for this exact case, when it is one of its rows.
    pub spec_status: Option<u16>,
}

impl Case {
    /// The path of the request target (without query), as sent.
    pub fn path(&self) -> &str {
        let target = self.request.split(' ').nth(1).unwrap_or_default();
        target.split(['?', '#']).next().unwrap_or_default()
    }

    /// The bytes to send to the server at `authority`.
    pub fn render(&self, authority: &str) -> Vec<u8> {
        self.request.replace(AUTHORITY, authority).into_bytes()
    }
}

/// Signs like the origin does, plus the odd tokens the cases need.
pub struct Signing {
    link: SecureLink,
    /// A comfortably future expiry: links with it are valid for the whole run.
    pub expires: i64,
    /// An expiry in the past.
    pub past: i64,
}

impl Signing {
    fn new() -> Self {
        Self {
            link: signer(),
            expires: future_expires(),
            past: past_expires(),
        }
    }

    /// The token for `uri` with `expires_text` taken literally (it may be `abc`, `00123`, ...),
    /// computed by the shared crate with a template whose expires part is that literal text.
    pub fn md5_for_text(&self, uri: &str, expires_text: &str) -> String {
        assert!(
            !expires_text.contains('$'),
            "the text becomes a template literal"
        );
        let template: Template = format!("{expires_text}$uri$secret")
            .parse()
            .expect("literal + $uri + $secret is a valid template");
        SecureLink::with_options(vec![Secret::new(TEST_SECRET)], template, "md5", "expires")
            .expect("valid signing options")
            .sign(uri, 0, "")
            .md5
    }

    /// The token for `uri` valid until `expires`.
    pub fn md5(&self, uri: &str, expires: i64) -> String {
        self.link.sign(uri, expires, "").md5
    }

    /// `md5=..&expires=..` valid for `uri`.
    pub fn query(&self, uri: &str) -> String {
        format!(
            "md5={}&expires={}",
            self.md5(uri, self.expires),
            self.expires
        )
    }

    /// `md5=..&expires=..` with a correct hash but an expiry in the past.
    pub fn expired_query(&self, uri: &str) -> String {
        format!("md5={}&expires={}", self.md5(uri, self.past), self.past)
    }
}

/// Collects cases and rejects duplicate names, so allow-list entries are unambiguous.
struct Cases {
    cases: Vec<Case>,
    names: HashSet<String>,
}

impl Cases {
    fn add(&mut self, name: impl Into<String>, request: Request) -> &mut Case {
        self.add_raw(name, request.host(AUTHORITY).build())
    }

    /// Adds a request whose bytes are given whole (for requests without a Host header etc.).
    fn add_raw(&mut self, name: impl Into<String>, bytes: Vec<u8>) -> &mut Case {
        let name = name.into();
        assert!(
            self.names.insert(name.clone()),
            "duplicate case name {name:?}"
        );
        let request = String::from_utf8(bytes).expect("case requests are ASCII");
        self.cases.push(Case {
            name,
            request,
            spec_status: None,
        });
        self.cases.last_mut().expect("just pushed")
    }

    /// Adds a case that reproduces a row of the spec with its recorded status.
    fn spec(&mut self, status: u16, name: impl Into<String>, request: Request) {
        self.add(name, request).spec_status = Some(status);
    }
}

/// The validators of a file as nginx computes them.
struct Validators {
    etag: String,
    last_modified: String,
    mtime: i64,
}

fn validators(tree: &ContentTree, rel: &str) -> Validators {
    let meta = fs::metadata(tree.path(rel)).expect("stat content file");
    let mtime = meta.mtime();
    let seconds = u64::try_from(mtime).expect("mtime after 1970");
    Validators {
        etag: format!("\"{mtime:x}-{:x}\"", meta.size()),
        last_modified: httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(seconds)),
        mtime,
    }
}

fn http_date(unix: i64) -> String {
    let seconds = u64::try_from(unix).expect("date after 1970");
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Replaces the character at `index` of `token` with `with`.
fn replace_char(token: &str, index: usize, with: char) -> String {
    token
        .chars()
        .enumerate()
        .map(|(i, c)| if i == index { with } else { c })
        .collect()
}

/// The base64url character after `c` (wrapping).
fn next_base64url(c: char) -> char {
    let index = BASE64URL
        .iter()
        .position(|&b| char::from(b) == c)
        .expect("token characters are base64url");
    char::from(BASE64URL[(index + 1) % BASE64URL.len()])
}

/// `token` with the character at `index` replaced by the next base64url character.
fn tamper(token: &str, index: usize) -> String {
    let original = token.chars().nth(index).expect("index inside the token");
    replace_char(token, index, next_base64url(original))
}

/// Every case of the suite.
pub fn all(tree: &ContentTree) -> Vec<Case> {
    let signing = Signing::new();
    let mut cases = Cases {
        cases: Vec::new(),
        names: HashSet::new(),
    };
    basics(&mut cases, &signing);
    per_entry(&mut cases, &signing, tree);
    tampering(&mut cases, &signing);
    md5_format(&mut cases, &signing);
    expires_format(&mut cases, &signing);
    query_args(&mut cases, &signing);
    paths(&mut cases, &signing);
    traversal(&mut cases, &signing);
    methods(&mut cases, &signing);
    ranges(&mut cases, &signing, tree);
    conditionals(&mut cases, &signing, tree);
    protocol(&mut cases, &signing);
    outside_prefix(&mut cases, &signing);
    cases.cases
}

/// The segment's URI and a valid target for it.
fn segment(signing: &Signing) -> (String, String) {
    let uri = ContentTree::uri(SEGMENT);
    let target = format!("{uri}?{}", signing.query(&uri));
    (uri, target)
}

/// Spec rows 1-9: the basic outcomes.
fn basics(cases: &mut Cases, signing: &Signing) {
    let (uri, valid) = segment(signing);
    let token = signing.md5(&uri, signing.expires);
    let expires = signing.expires;
    cases.spec(200, "basic: valid signature", Request::get(&valid));
    let tampered = tamper(&token, 0);
    cases.spec(
        403,
        "basic: tampered md5 (first char)",
        Request::get(format!("{uri}?md5={tampered}&expires={expires}")),
    );
    cases.spec(
        410,
        "basic: valid md5, expires in the past",
        Request::get(format!("{uri}?{}", signing.expired_query(&uri))),
    );
    let past_token = signing.md5(&uri, signing.past);
    let past_tampered = tamper(&past_token, 0);
    cases.spec(
        403,
        "basic: tampered md5 and expired",
        Request::get(format!(
            "{uri}?md5={past_tampered}&expires={}",
            signing.past
        )),
    );
    cases.spec(
        410,
        "basic: expires=1 with valid md5",
        Request::get(format!("{uri}?md5={}&expires=1", signing.md5(&uri, 1))),
    );
    cases.spec(403, "basic: no query string", Request::get(&uri));
    cases.spec(
        403,
        "basic: md5 only (signed with empty expires)",
        Request::get(format!("{uri}?md5={}", signing.md5_for_text(&uri, ""))),
    );
    cases.spec(
        403,
        "basic: expires only",
        Request::get(format!("{uri}?expires={expires}")),
    );
    // A minute either side of now: far enough from the boundary not to depend on timing.
    let near = unix_now() + 60;
    cases.add(
        "basic: expires a minute ahead",
        Request::get(format!(
            "{uri}?md5={}&expires={near}",
            signing.md5(&uri, near)
        )),
    );
    let just_past = unix_now() - 60;
    cases.add(
        "basic: expires a minute ago",
        Request::get(format!(
            "{uri}?md5={}&expires={just_past}",
            signing.md5(&uri, just_past)
        )),
    );
    cases.add(
        "basic: empty query after ?",
        Request::get(format!("{uri}?")),
    );
}

/// For every path of the content tree: the outcomes a player meets.
fn per_entry(cases: &mut Cases, signing: &Signing, tree: &ContentTree) {
    let other_uri = ContentTree::uri("720p/segment_001.ts");
    for entry in tree.entries() {
        let uri = entry.uri();
        let path = encode_path(&uri);
        let label = if entry.rel.is_empty() {
            "video dir".to_owned()
        } else {
            entry.rel.to_owned()
        };
        if entry.kind == EntryKind::Directory {
            let slashed = format!("{uri}/");
            let slashed_path = format!("{path}/");
            cases.add(
                format!("{label}/: directory with slash, signed"),
                Request::get(format!("{slashed_path}?{}", signing.query(&slashed))),
            );
            cases.add(
                format!("{label}/: directory with slash, unsigned"),
                Request::get(&slashed_path),
            );
            cases.add(
                format!("{label}: directory without slash, signed"),
                Request::get(format!("{path}?{}", signing.query(&uri))),
            );
            cases.add(
                format!("{label}: directory without slash, HEAD"),
                Request::get(format!("{path}?{}", signing.query(&uri))).method("HEAD"),
            );
            continue;
        }
        let valid = format!("{path}?{}", signing.query(&uri));
        cases.add(format!("{label}: valid GET"), Request::get(&valid));
        cases.add(
            format!("{label}: valid HEAD"),
            Request::get(&valid).method("HEAD"),
        );
        let token = signing.md5(&uri, signing.expires);
        let tampered = tamper(&token, 5);
        cases.add(
            format!("{label}: tampered md5"),
            Request::get(format!("{path}?md5={tampered}&expires={}", signing.expires)),
        );
        cases.add(
            format!("{label}: expired"),
            Request::get(format!("{path}?{}", signing.expired_query(&uri))),
        );
        cases.add(format!("{label}: no signature"), Request::get(&path));
        cases.add(
            format!("{label}: signature of another file"),
            Request::get(format!("{path}?{}", signing.query(&other_uri))),
        );
        cases.add(
            format!("{label}: Range bytes=0-99"),
            Request::get(&valid).header("Range", "bytes=0-99"),
        );
        let slashed = format!("{uri}/");
        cases.add(
            format!("{label}: trailing slash, signed over it"),
            Request::get(format!("{path}/?{}", signing.query(&slashed))),
        );
        let validators = validators(tree, entry.rel);
        cases.add(
            format!("{label}: If-None-Match current ETag"),
            Request::get(&valid).header("If-None-Match", &validators.etag),
        );
        cases.add(
            format!("{label}: If-Modified-Since Last-Modified"),
            Request::get(&valid).header("If-Modified-Since", &validators.last_modified),
        );
    }

    for (rel, what) in [
        ("720p/segment_999.ts", "missing file"),
        ("1080p/segment_000.ts", "missing rung"),
        ("720p/segment_000.m4s", "missing extension"),
    ] {
        let uri = ContentTree::uri(rel);
        cases.add(
            format!("{what}: valid signature"),
            Request::get(format!("{uri}?{}", signing.query(&uri))),
        );
        cases.add(
            format!("{what}: HEAD valid signature"),
            Request::get(format!("{uri}?{}", signing.query(&uri))).method("HEAD"),
        );
        cases.add(format!("{what}: no signature"), Request::get(&uri));
        cases.add(
            format!("{what}: expired signature"),
            Request::get(format!("{uri}?{}", signing.expired_query(&uri))),
        );
    }
    let missing_video = format!("{PREFIX}00000000-0000-0000-0000-000000000000/720p/segment_000.ts");
    cases.add(
        "missing video: valid signature",
        Request::get(format!("{missing_video}?{}", signing.query(&missing_video))),
    );
    cases.add(
        "prefix root: signed",
        Request::get(format!("{PREFIX}?{}", signing.query(PREFIX))),
    );
    cases.add("prefix root: unsigned", Request::get(PREFIX));
}

/// Changing any single character of a token, and cutting it at any length.
fn tampering(cases: &mut Cases, signing: &Signing) {
    let (uri, _) = segment(signing);
    let token = signing.md5(&uri, signing.expires);
    let expires = signing.expires;
    for (index, original) in token.chars().enumerate() {
        // The last character carries 4 unused bits: some substitutions keep the same bytes.
        for (what, with) in [("next char", next_base64url(original)), ("'.'", '.')] {
            cases.add(
                format!("tamper: md5[{index}] -> {what}"),
                Request::get(format!(
                    "{uri}?md5={}&expires={expires}",
                    replace_char(&token, index, with)
                )),
            );
        }
    }
    for len in 0..token.len() {
        cases.add(
            format!("tamper: md5 cut to {len} chars"),
            Request::get(format!("{uri}?md5={}&expires={expires}", &token[..len])),
        );
    }
    let other_expires = expires + 1;
    cases.add(
        "tamper: expires changed by one second",
        Request::get(format!("{uri}?md5={token}&expires={other_expires}")),
    );
    cases.add(
        "tamper: expires changed to the past",
        Request::get(format!("{uri}?md5={token}&expires={}", signing.past)),
    );
}

/// Spec rows 10-26 and more: padding, length, alphabet, percent-encoding of the token.
fn md5_format(cases: &mut Cases, signing: &Signing) {
    let (uri, _) = segment(signing);
    let token = signing.md5(&uri, signing.expires);
    let expires = signing.expires;
    let with_md5 = |md5: &str| Request::get(format!("{uri}?md5={md5}&expires={expires}"));
    let rows: &[(u16, &str, String)] = &[
        (200, "md5 + '==' padding", format!("{token}==")),
        (200, "md5 + '='", format!("{token}=")),
        (200, "md5 + '=X'", format!("{token}=X")),
        (403, "md5 + '==A' (25 chars)", format!("{token}==A")),
        (403, "md5 + '%3D%3D'", format!("{token}%3D%3D")),
        (403, "md5 + 'A' (17 bytes)", format!("{token}A")),
        (403, "md5 + 'AA' (18 bytes)", format!("{token}AA")),
        (
            403,
            "md5 + 'AAAAAAAA' (30 chars)",
            format!("{token}AAAAAAAA"),
        ),
        (403, "md5 empty", String::new()),
        (403, "md5 case-swapped", swap_case(&token)),
    ];
    for (status, name, md5) in rows {
        cases.spec(*status, format!("md5 format: {name}"), with_md5(md5));
    }
    let more: &[(&str, String)] = &[
        ("md5 + '=' + 2 junk chars (25 chars)", format!("{token}=ab")),
        ("md5 + '===' (25 chars)", format!("{token}===")),
        (
            "md5 + '=!' (junk after '=' not checked)",
            format!("{token}=!"),
        ),
        ("md5 with '=' in the middle", replace_char(&token, 10, '=')),
        ("md5 leading %20", format!("%20{token}")),
        ("md5 trailing %20", format!("{token}%20")),
        ("md5 leading '+'", format!("+{token}")),
        ("md5 all 'A'", "A".repeat(22)),
        ("md5 24 chars of 'A'", "A".repeat(24)),
        (
            "md5 %41 for first char",
            format!("%{:02X}{}", token.as_bytes()[0], &token[1..]),
        ),
    ];
    for (name, md5) in more {
        cases.add(format!("md5 format: {name}"), with_md5(md5));
    }
    // Standard-alphabet and percent-encoded variants of the url-safe characters.
    for (from, to) in [
        ("-", "+"),
        ("_", "/"),
        ("-", "%2D"),
        ("_", "%5F"),
        ("-", "%2B"),
        ("_", "%2F"),
    ] {
        if token.contains(from) {
            cases.spec(
                403,
                format!("md5 format: '{from}' written as '{to}'"),
                with_md5(&token.replacen(from, to, 1)),
            );
        }
    }
    for bad in ['!', '*', '~', '.', '$', '\'', '(', ':', '@'] {
        cases.add(
            format!("md5 format: invalid char {bad:?} at 3"),
            with_md5(&replace_char(&token, 3, bad)),
        );
    }
    // Non-canonical last characters: only the top 2 bits of the 22nd char are significant.
    let last = token.chars().last().unwrap_or('A');
    let last_value = BASE64URL
        .iter()
        .position(|&b| char::from(b) == last)
        .unwrap_or(0);
    for low_bits in [1, 7, 15] {
        let alternative = char::from(BASE64URL[(last_value & 0x30) | low_bits]);
        cases.spec(
            200,
            format!("md5 format: non-canonical last char (low bits {low_bits})"),
            with_md5(&replace_char(&token, 21, alternative)),
        );
    }
}

fn swap_case(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Spec rows 27-40 and more: the expires text, with the md5 computed over that text.
fn expires_format(cases: &mut Cases, signing: &Signing) {
    let (uri, _) = segment(signing);
    let ts = signing.expires;
    let signed_over = |text: &str| {
        Request::get(format!(
            "{uri}?md5={}&expires={text}",
            signing.md5_for_text(&uri, text)
        ))
    };
    let rows: &[(u16, &str, String)] = &[
        (403, "non-numeric 'abc'", "abc".to_owned()),
        (403, "negative '-100'", "-100".to_owned()),
        (403, "zero", "0".to_owned()),
        (403, "empty", String::new()),
        (403, "'+<ts>'", format!("+{ts}")),
        (403, "'<ts>x'", format!("{ts}x")),
        (403, "'<ts>%20'", format!("{ts}%20")),
        (403, "20 digits", "99999999999999999999".to_owned()),
        (403, "hex", format!("0x{ts:x}")),
        (403, "fraction '<ts>.5'", format!("{ts}.5")),
        (200, "leading zeros, md5 over them", format!("00{ts}")),
        (200, "9999999999 (year 2286)", "9999999999".to_owned()),
        (200, "2^62", (1_i64 << 62).to_string()),
    ];
    for (status, name, text) in rows {
        cases.spec(*status, format!("expires: {name}"), signed_over(text));
    }
    cases.spec(
        403,
        "expires: leading zeros, md5 over the plain number",
        Request::get(format!(
            "{uri}?md5={}&expires=00{ts}",
            signing.md5(&uri, ts)
        )),
    );
    let more: &[(&str, String)] = &[
        ("'%20<ts>'", format!("%20{ts}")),
        ("'<ts>%00'", format!("{ts}%00")),
        ("'1e10'", "1e10".to_owned()),
        ("19 digits (i64 max)", i64::MAX.to_string()),
        ("19 digits (i64 max + 1)", "9223372036854775808".to_owned()),
        ("2^63 - 2^10", (i64::MAX - 1023).to_string()),
        ("single digit 1 (past)", "1".to_owned()),
        ("'-0'", "-0".to_owned()),
        ("'<ts>,1'", format!("{ts},1")),
        (
            "'%31<rest>' percent-encoded digit",
            format!("%31{}", &ts.to_string()[1..]),
        ),
        ("1000 leading zeros", format!("{}{ts}", "0".repeat(1000))),
    ];
    for (name, text) in more {
        cases.add(format!("expires: {name}"), signed_over(text));
    }
}

/// Spec rows 41-52 and more: how the arguments are found.
fn query_args(cases: &mut Cases, signing: &Signing) {
    let (uri, _) = segment(signing);
    let md5 = signing.md5(&uri, signing.expires);
    let ts = signing.expires;
    let junk = "AAAAAAAAAAAAAAAAAAAAAA";
    let rows: &[(u16, &str, String)] = &[
        (200, "reversed order", format!("expires={ts}&md5={md5}")),
        (
            200,
            "extra args",
            format!("a=1&md5={md5}&b=2&expires={ts}&c=3"),
        ),
        (
            200,
            "md5 twice, valid first",
            format!("md5={md5}&md5={junk}&expires={ts}"),
        ),
        (
            403,
            "md5 twice, junk first",
            format!("md5={junk}&md5={md5}&expires={ts}"),
        ),
        (
            200,
            "expires twice, valid first",
            format!("md5={md5}&expires={ts}&expires={}", ts + 1),
        ),
        (
            403,
            "expires twice, other first",
            format!("md5={md5}&expires={}&expires={ts}", ts + 1),
        ),
        (200, "upper-case names", format!("MD5={md5}&EXPIRES={ts}")),
        (
            200,
            "name as suffix of another",
            format!("xmd5=junk&md5={md5}&expires={ts}"),
        ),
        (
            403,
            "percent-encoded name md%35",
            format!("md%35={md5}&expires={ts}"),
        ),
        (403, "';' separator", format!("md5={md5};expires={ts}")),
        (403, "comma inside md5", format!("md5={md5},1&expires={ts}")),
        (
            200,
            "'?&' leading empty arg",
            format!("&md5={md5}&expires={ts}"),
        ),
    ];
    for (status, name, query) in rows {
        cases.spec(
            *status,
            format!("args: {name}"),
            Request::get(format!("{uri}?{query}")),
        );
    }
    let more: &[(&str, String)] = &[
        ("mixed-case names", format!("Md5={md5}&ExPiReS={ts}")),
        ("trailing '&'", format!("md5={md5}&expires={ts}&")),
        ("double '&&'", format!("md5={md5}&&expires={ts}")),
        (
            "'??' (second '?' part of the first name)",
            format!("?md5={md5}&expires={ts}"),
        ),
        (
            "bare 'md5' before the real one",
            format!("md5&md5={md5}&expires={ts}"),
        ),
        ("'md5 =' with a space", format!("md5%20={md5}&expires={ts}")),
        ("name with '+' suffix", format!("md5+={md5}&expires={ts}")),
        (
            "'expires' as prefix of another name",
            format!("md5={md5}&expiresx=1&expires={ts}"),
        ),
        ("value with '=' inside", format!("md5={md5}&expires={ts}=1")),
        ("comma inside expires", format!("md5={md5}&expires={ts},1")),
        (
            "';' then valid args",
            format!("x=1;md5=junk&md5={md5}&expires={ts}"),
        ),
        (
            "encoded '&' between args",
            format!("md5={md5}%26expires={ts}"),
        ),
        (
            "md5 empty then valid",
            format!("md5=&md5={md5}&expires={ts}"),
        ),
        (
            "expires empty then valid",
            format!("md5={md5}&expires=&expires={ts}"),
        ),
        (
            "200 junk args before",
            format!("{}md5={md5}&expires={ts}", "a=b&".repeat(200)),
        ),
        (
            "fragment after the query",
            format!("md5={md5}&expires={ts}#x"),
        ),
        (
            "fragment inside md5",
            format!("md5={}#{}&expires={ts}", &md5[..11], &md5[11..]),
        ),
    ];
    for (name, query) in more {
        cases.add(
            format!("args: {name}"),
            Request::get(format!("{uri}?{query}")),
        );
    }
    cases.add(
        "args: fragment before the query",
        Request::get(format!("{uri}#frag?md5={md5}&expires={ts}")),
    );
}

/// Spec rows 53-77 and more: the hash covers the decoded, normalised path.
fn paths(cases: &mut Cases, signing: &Signing) {
    let (uri, _) = segment(signing);
    let valid_query = signing.query(&uri);
    let id = VIDEO_ID;
    let decoded = |raw: &str| Request::get(format!("{raw}?{valid_query}"));
    let raw_signed = |raw: &str| Request::get(format!("{raw}?{}", signing.query(raw)));
    // (name, raw path, whether the spec has the raw-signed row): every spec row is 200 when
    // signed over the decoded path and 403 when signed over the raw one.
    let variants: &[(&str, String, bool)] = &[
        (
            "%35 in path",
            format!("{PREFIX}%35{}/720p/segment_000.ts", &id[1..]),
            true,
        ),
        (
            "%5F for '_'",
            format!("{PREFIX}{id}/720p/segment%5F000.ts"),
            false,
        ),
        (
            "%2F for '/'",
            format!("{PREFIX}{id}%2F720p/segment_000.ts"),
            true,
        ),
        (
            "double slashes",
            format!("{PREFIX}/{id}//720p/segment_000.ts"),
            true,
        ),
        (
            "'/360p/../720p/'",
            format!("{PREFIX}{id}/360p/../720p/segment_000.ts"),
            true,
        ),
        (
            "'/./'",
            format!("{PREFIX}{id}/./720p/segment_000.ts"),
            false,
        ),
        (
            "'/hls/../hls/'",
            format!("/hls/../hls/{id}/720p/segment_000.ts"),
            false,
        ),
    ];
    for (name, raw, raw_row_in_spec) in variants {
        cases.spec(200, format!("path: {name}, md5 over decoded"), decoded(raw));
        let case = cases.add(format!("path: {name}, md5 over raw"), raw_signed(raw));
        if *raw_row_in_spec {
            case.spec_status = Some(403);
        }
    }
    cases.spec(
        200,
        "path: '/360p/%2E%2E/720p/', md5 over decoded",
        decoded(&format!("{PREFIX}{id}/360p/%2E%2E/720p/segment_000.ts")),
    );
    cases.spec(
        200,
        "path: fragment '#x' after the query",
        Request::get(format!("{uri}?{valid_query}#x")),
    );

    let more: &[(&str, String)] = &[
        (
            "'%2e%2e' lower-case",
            format!("{PREFIX}{id}/360p/%2e%2e/720p/segment_000.ts"),
        ),
        (
            "'.%2E' mixed",
            format!("{PREFIX}{id}/360p/.%2E/720p/segment_000.ts"),
        ),
        (
            "'%2E' single dot segment",
            format!("{PREFIX}{id}/%2E/720p/segment_000.ts"),
        ),
        (
            "'/720p/./segment'",
            format!("{PREFIX}{id}/720p/./segment_000.ts"),
        ),
        (
            "'/hls/./<id>'",
            format!("{PREFIX}./{id}/720p/segment_000.ts"),
        ),
        (
            "triple slashes",
            format!("{PREFIX}{id}///720p/segment_000.ts"),
        ),
        ("'%2F%2F'", format!("{PREFIX}{id}%2F%2F720p/segment_000.ts")),
        (
            "every char encoded in the file name",
            format!("{PREFIX}{id}/720p/{}", percent_all("segment_000.ts")),
        ),
        (
            "lower-case hex escape %5f",
            format!("{PREFIX}{id}/720p/segment%5f000.ts"),
        ),
        (
            "'%2Fhls' prefix encoded",
            format!("%2Fhls/{id}/720p/segment_000.ts"),
        ),
        (
            "'/hls%2F' prefix slash encoded",
            format!("/hls%2F{id}/720p/segment_000.ts"),
        ),
        (
            "'/%68ls/' prefix letter encoded",
            format!("/%68ls/{id}/720p/segment_000.ts"),
        ),
        (
            "'/x/../hls/'",
            format!("/x/../hls/{id}/720p/segment_000.ts"),
        ),
        (
            "'/hls/<id>/720p/x/..' into file",
            format!("{PREFIX}{id}/720p/x/../segment_000.ts"),
        ),
        (
            "'%5C' backslash",
            format!("{PREFIX}{id}/720p%5Csegment_000.ts"),
        ),
    ];
    for (name, raw) in more {
        cases.add(format!("path: {name}, md5 over decoded"), decoded(raw));
        cases.add(format!("path: {name}, md5 over raw"), raw_signed(raw));
    }

    // File names that need escaping: signed over the decoded name.
    let spaced = ContentTree::uri("720p/segment 003.ts");
    let spaced_query = signing.query(&spaced);
    let spaced_encoded = format!("{PREFIX}{id}/720p/segment%20003.ts");
    cases.add(
        "name with space: %20",
        Request::get(format!("{spaced_encoded}?{spaced_query}")),
    );
    cases.add(
        "name with space: raw space in request line",
        Request::get(format!("{PREFIX}{id}/720p/segment 003.ts?{spaced_query}")),
    );
    cases.add(
        "name with space: '+' is not a space",
        Request::get(format!("{PREFIX}{id}/720p/segment+003.ts?{spaced_query}")),
    );
    cases.add(
        "name with space: md5 over '%20'",
        Request::get(format!(
            "{spaced_encoded}?{}",
            signing.query(&spaced_encoded)
        )),
    );
    let percent = ContentTree::uri("720p/100%.ts");
    let percent_query = signing.query(&percent);
    cases.add(
        "name with %: %25",
        Request::get(format!("{PREFIX}{id}/720p/100%25.ts?{percent_query}")),
    );
    cases.add(
        "name with %: raw '%.'",
        Request::get(format!("{PREFIX}{id}/720p/100%.ts?{percent_query}")),
    );
    cases.add(
        "name with %: md5 over '%25'",
        Request::get(format!(
            "{PREFIX}{id}/720p/100%25.ts?{}",
            signing.query(&format!("{PREFIX}{id}/720p/100%25.ts"))
        )),
    );
    let utf8 = format!("{PREFIX}{id}/720p/s\u{e9}gment.ts");
    cases.add(
        "missing UTF-8 name: %C3%A9 signed over decoded",
        Request::get(format!(
            "{PREFIX}{id}/720p/s%C3%A9gment.ts?{}",
            signing.query(&utf8)
        )),
    );
    cases.add(
        "missing name: invalid UTF-8 %FF",
        Request::get(format!(
            "{PREFIX}{id}/720p/s%FFgment.ts?{}",
            signing.query(&format!("{PREFIX}{id}/720p/s%FFgment.ts"))
        )),
    );
}

fn percent_all(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Request-line errors (spec row 9 / 65-67) and attempts to leave the root.
fn traversal(cases: &mut Cases, signing: &Signing) {
    let (uri, _) = segment(signing);
    let valid_query = signing.query(&uri);
    let id = VIDEO_ID;
    cases.spec(
        400,
        "traversal: '/../hls/' above root",
        Request::get(format!("/../hls/{id}/720p/segment_000.ts?{valid_query}")),
    );
    cases.spec(
        400,
        "traversal: '%zz' in path",
        Request::get(format!("{PREFIX}{id}/720p/segment%zz000.ts?{valid_query}")),
    );
    cases.spec(
        400,
        "traversal: '%00' in path",
        Request::get(format!("{PREFIX}{id}/720p/segment%00000.ts?{valid_query}")),
    );
    let etc = "/etc/passwd";
    let attempts: &[(&str, String)] = &[
        (
            "'/hls/../../etc/passwd'",
            "/hls/../../etc/passwd".to_owned(),
        ),
        (
            "'/hls/<id>/../../etc/passwd'",
            format!("{PREFIX}{id}/../../etc/passwd"),
        ),
        (
            "'/hls/%2E%2E/%2E%2E/etc/passwd'",
            "/hls/%2E%2E/%2E%2E/etc/passwd".to_owned(),
        ),
        (
            "'/hls/..%2F..%2Fetc/passwd'",
            "/hls/..%2F..%2Fetc/passwd".to_owned(),
        ),
        ("'/hls/..%2f' lower", "/hls/..%2f..%2fetc/passwd".to_owned()),
        ("'/hls/....//etc'", "/hls/....//etc/passwd".to_owned()),
        (
            "'/hls/..\\..\\etc\\passwd'",
            "/hls/..\\..\\etc\\passwd".to_owned(),
        ),
        ("'/hls/%2E%2E' at the end", "/hls/%2E%2E".to_owned()),
        ("'/hls/<id>/..' at the end", format!("{PREFIX}{id}/..")),
        (
            "'/hls/<id>/720p/..' at the end",
            format!("{PREFIX}{id}/720p/.."),
        ),
        ("'/hls/.' at the end", "/hls/.".to_owned()),
        (
            "'%00' then extension",
            format!("{PREFIX}{id}/720p/segment_000.ts%00.jpg"),
        ),
        (
            "'%' at the end",
            format!("{PREFIX}{id}/720p/segment_000.ts%"),
        ),
        (
            "'%2' truncated escape",
            format!("{PREFIX}{id}/720p/segment_000.ts%2"),
        ),
        ("'%0A' newline", format!("{PREFIX}{id}/720p/seg%0Ament.ts")),
        (
            "'%0D' carriage return",
            format!("{PREFIX}{id}/720p/seg%0Dment.ts"),
        ),
    ];
    for (name, raw) in attempts {
        // Signed three ways: over the raw text, over where it would lead, and not at all.
        cases.add(
            format!("traversal: {name}, md5 over raw"),
            Request::get(format!("{raw}?{}", signing.query(raw))),
        );
        cases.add(
            format!("traversal: {name}, md5 over /etc/passwd"),
            Request::get(format!("{raw}?{}", signing.query(etc))),
        );
        cases.add(
            format!("traversal: {name}, unsigned"),
            Request::get(raw.as_str()),
        );
    }
}

/// Spec rows 78-82 and more methods.
fn methods(cases: &mut Cases, signing: &Signing) {
    let (uri, valid) = segment(signing);
    let tampered = format!(
        "{uri}?md5=AAAAAAAAAAAAAAAAAAAAAA&expires={}",
        signing.expires
    );
    let expired = format!("{uri}?{}", signing.expired_query(&uri));
    cases.spec(
        200,
        "method: HEAD valid",
        Request::get(&valid).method("HEAD"),
    );
    cases.spec(
        403,
        "method: HEAD tampered",
        Request::get(&tampered).method("HEAD"),
    );
    cases.spec(
        405,
        "method: POST valid",
        Request::get(&valid).method("POST"),
    );
    cases.spec(
        403,
        "method: POST tampered",
        Request::get(&tampered).method("POST"),
    );
    cases.spec(
        405,
        "method: OPTIONS valid",
        Request::get(&valid).method("OPTIONS"),
    );
    cases.add(
        "method: HEAD expired",
        Request::get(&expired).method("HEAD"),
    );
    for method in [
        "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "FOO", "PROPFIND", "MKCOL",
    ] {
        cases.add(
            format!("method: {method} tampered"),
            Request::get(&tampered).method(method),
        );
        if method != "OPTIONS" {
            cases.add(
                format!("method: {method} valid"),
                Request::get(&valid).method(method),
            );
        }
        cases.add(
            format!("method: {method} expired"),
            Request::get(&expired).method(method),
        );
    }
    cases.add(
        "method: POST valid with a 5-byte body",
        Request::get(&valid)
            .method("POST")
            .header("Content-Length", "5")
            .body(b"hello"),
    );
    cases.add(
        "method: lower-case 'get'",
        Request::get(&valid).method("get"),
    );
    cases.add(
        "method: 'Get' mixed case",
        Request::get(&valid).method("Get"),
    );
    cases.add("method: OPTIONS *", Request::get("*").method("OPTIONS"));
    let missing = ContentTree::uri("720p/segment_999.ts");
    cases.add(
        "method: POST valid on a missing file",
        Request::get(format!("{missing}?{}", signing.query(&missing))).method("POST"),
    );
    for (what, dir) in [("with slash", "720p/"), ("without slash", "720p")] {
        let uri = ContentTree::uri(dir);
        cases.add(
            format!("method: POST valid on a directory {what}"),
            Request::get(format!("{uri}?{}", signing.query(&uri))).method("POST"),
        );
    }
    cases.add(
        "method: DELETE valid on a missing file",
        Request::get(format!("{missing}?{}", signing.query(&missing))).method("DELETE"),
    );
    cases.add(
        "method: TRACE outside the prefix",
        Request::get("/").method("TRACE"),
    );
    cases.add(
        "method: POST outside the prefix",
        Request::get("/").method("POST"),
    );
    cases.add(
        "method: HEAD on a directory",
        Request::get(format!(
            "{}/?{}",
            ContentTree::uri("720p"),
            signing.query(&format!("{}/", ContentTree::uri("720p")))
        ))
        .method("HEAD"),
    );
}

/// Spec rows 83-95 and more: byte ranges.
fn ranges(cases: &mut Cases, signing: &Signing, tree: &ContentTree) {
    let (uri, valid) = segment(signing);
    let size = SEGMENT_SIZE;
    let last = size - 1;
    let ranged = |range: &str| Request::get(&valid).header("Range", range);
    let rows: &[(u16, &str, String)] = &[
        (206, "0-99", "bytes=0-99".to_owned()),
        (206, "suffix -100", "bytes=-100".to_owned()),
        (206, "open end 100-", "bytes=100-".to_owned()),
        (206, "end beyond EOF", format!("bytes=0-{}", size + 1000)),
        (206, "multi-range", "bytes=0-0,10-19".to_owned()),
        (416, "start at EOF", format!("bytes={size}-")),
        (416, "-0", "bytes=-0".to_owned()),
        (416, "inverted", "bytes=100-50".to_owned()),
        (416, "syntax error 'abc'", "bytes=abc".to_owned()),
        (200, "unknown unit", "items=0-99".to_owned()),
    ];
    for (status, name, range) in rows {
        cases.spec(*status, format!("range: {name}"), ranged(range));
    }
    cases.spec(206, "range: HEAD 0-99", ranged("bytes=0-99").method("HEAD"));
    cases.spec(
        403,
        "range: on a tampered link",
        Request::get(format!(
            "{uri}?md5=AAAAAAAAAAAAAAAAAAAAAA&expires={}",
            signing.expires
        ))
        .header("Range", "bytes=0-99"),
    );
    cases.spec(
        410,
        "range: on an expired link",
        Request::get(format!("{uri}?{}", signing.expired_query(&uri)))
            .header("Range", "bytes=0-99"),
    );
    let more: Vec<(&str, String)> = vec![
        ("0-0", "bytes=0-0".to_owned()),
        ("last byte", format!("bytes={last}-{last}")),
        ("last byte open", format!("bytes={last}-")),
        ("whole file by suffix", format!("bytes=-{size}")),
        (
            "suffix longer than the file",
            format!("bytes=-{}", size * 10),
        ),
        ("mid-file", "bytes=1000-1999".to_owned()),
        ("upper-case unit 'Bytes='", "Bytes=0-99".to_owned()),
        ("space after '='", "bytes= 0-99".to_owned()),
        ("space before '-'", "bytes=0 -99".to_owned()),
        ("trailing space", "bytes=0-99 ".to_owned()),
        ("trailing comma", "bytes=0-99,".to_owned()),
        ("leading comma", "bytes=,0-99".to_owned()),
        ("empty spec", "bytes=".to_owned()),
        ("no '='", "bytes 0-99".to_owned()),
        ("only '-'", "bytes=-".to_owned()),
        ("'0--1'", "bytes=0--1".to_owned()),
        ("'--1'", "bytes=--1".to_owned()),
        (
            "overflowing start",
            "bytes=99999999999999999999-".to_owned(),
        ),
        ("overflowing end", "bytes=0-99999999999999999999".to_owned()),
        (
            "overflowing suffix",
            "bytes=-99999999999999999999".to_owned(),
        ),
        (
            "start beyond EOF",
            format!("bytes={}-{}", size + 10, size + 20),
        ),
        ("hex numbers", "bytes=0x0-0x10".to_owned()),
        ("negative start", "bytes=-5-10".to_owned()),
        ("'+' sign", "bytes=+0-99".to_owned()),
        ("multi: two disjoint", "bytes=0-99,200-299".to_owned()),
        ("multi: overlapping", "bytes=0-50,40-100".to_owned()),
        (
            "multi: one satisfiable, one not",
            format!("bytes=0-9,{}-", size + 5),
        ),
        (
            "multi: both unsatisfiable",
            format!("bytes={}-,{}-", size, size + 5),
        ),
        ("multi: suffix and prefix", "bytes=0-9,-10".to_owned()),
        ("multi: one invalid", "bytes=0-9,abc".to_owned()),
    ];
    for (name, range) in &more {
        cases.add(format!("range: {name}"), ranged(range));
    }
    cases.add(
        "range: two Range headers",
        ranged("bytes=0-9").header("Range", "bytes=10-19"),
    );

    let empty = ContentTree::uri("empty.ts");
    let empty_valid = format!("{empty}?{}", signing.query(&empty));
    for range in ["bytes=0-0", "bytes=0-", "bytes=-1", "items=0-1"] {
        cases.add(
            format!("range: empty file {range}"),
            Request::get(&empty_valid).header("Range", range),
        );
    }
    let playlist = ContentTree::uri("720p/index.m3u8");
    let playlist_valid = format!("{playlist}?{}", signing.query(&playlist));
    let playlist_size = fs::metadata(tree.path("720p/index.m3u8"))
        .expect("stat playlist")
        .len();
    for range in [
        "bytes=0-9".to_owned(),
        "bytes=-5".to_owned(),
        format!("bytes={playlist_size}-"),
    ] {
        cases.add(
            format!("range: playlist {range}"),
            Request::get(&playlist_valid).header("Range", range),
        );
    }
    let missing = ContentTree::uri("720p/segment_999.ts");
    cases.add(
        "range: missing file, valid signature",
        Request::get(format!("{missing}?{}", signing.query(&missing)))
            .header("Range", "bytes=0-99"),
    );
    cases.add("range: POST valid", ranged("bytes=0-99").method("POST"));
}

/// Extra request headers of a case.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// Spec rows 96-110 and more: conditional requests.
fn conditionals(cases: &mut Cases, signing: &Signing, tree: &ContentTree) {
    let (uri, valid) = segment(signing);
    let validators = validators(tree, SEGMENT);
    let etag = validators.etag.as_str();
    let lm = validators.last_modified.as_str();
    let day_before = http_date(validators.mtime - 86_400);
    let day_after = http_date(validators.mtime + 86_400);
    let second_after = http_date(validators.mtime + 1);
    let with = |headers: &[(&str, &str)]| {
        headers
            .iter()
            .fold(Request::get(&valid), |request, (name, value)| {
                request.header(name, *value)
            })
    };
    let rows: Vec<(u16, &str, Headers<'_>)> = vec![
        (
            304,
            "If-Modified-Since exact",
            vec![("If-Modified-Since", lm)],
        ),
        (
            200,
            "If-Modified-Since a day older",
            vec![("If-Modified-Since", &day_before)],
        ),
        (
            200,
            "If-Modified-Since a day newer",
            vec![("If-Modified-Since", &day_after)],
        ),
        (
            200,
            "If-Modified-Since unparsable",
            vec![("If-Modified-Since", "yesterday")],
        ),
        (
            200,
            "If-None-Match match + If-Modified-Since older",
            vec![("If-None-Match", etag), ("If-Modified-Since", &day_before)],
        ),
        (
            304,
            "If-None-Match strong match",
            vec![("If-None-Match", etag)],
        ),
        (304, "If-None-Match '*'", vec![("If-None-Match", "*")]),
        (
            200,
            "If-None-Match other",
            vec![("If-None-Match", "\"abc-123\"")],
        ),
        (412, "If-Match other", vec![("If-Match", "\"abc-123\"")]),
        (
            412,
            "If-Unmodified-Since a day older",
            vec![("If-Unmodified-Since", &day_before)],
        ),
        (
            206,
            "If-Range ETag + Range",
            vec![("If-Range", etag), ("Range", "bytes=0-99")],
        ),
        (
            200,
            "If-Range other + Range",
            vec![("If-Range", "\"abc-123\""), ("Range", "bytes=0-99")],
        ),
        (
            206,
            "If-Range date + Range",
            vec![("If-Range", lm), ("Range", "bytes=0-99")],
        ),
        (
            200,
            "Accept-Encoding gzip",
            vec![("Accept-Encoding", "gzip")],
        ),
    ];
    for (status, name, headers) in &rows {
        cases.spec(*status, format!("conditional: {name}"), with(headers));
    }
    let weak = format!("W/{etag}");
    cases.spec(
        304,
        "conditional: If-None-Match weak match",
        with(&[("If-None-Match", &weak)]),
    );
    cases.spec(
        410,
        "conditional: If-None-Match on an expired link",
        Request::get(format!("{uri}?{}", signing.expired_query(&uri)))
            .header("If-None-Match", etag),
    );

    let list = format!("\"abc\", {etag}");
    let unquoted = etag.trim_matches('"').to_owned();
    let rfc850 = rfc850_date(validators.mtime);
    let asctime = asctime_date(validators.mtime);
    let lm_lower = lm.to_ascii_lowercase();
    let lm_length = format!("{lm}; length=5");
    let more: Vec<(&str, Headers<'_>)> = vec![
        (
            "If-None-Match list containing the ETag",
            vec![("If-None-Match", &list)],
        ),
        (
            "If-None-Match unquoted ETag",
            vec![("If-None-Match", &unquoted)],
        ),
        ("If-None-Match empty", vec![("If-None-Match", "")]),
        (
            "If-None-Match match + Range",
            vec![("If-None-Match", etag), ("Range", "bytes=0-99")],
        ),
        (
            "If-None-Match match + If-Modified-Since exact",
            vec![("If-None-Match", etag), ("If-Modified-Since", lm)],
        ),
        (
            "If-None-Match other + If-Modified-Since exact",
            vec![("If-None-Match", "\"abc\""), ("If-Modified-Since", lm)],
        ),
        (
            "If-Modified-Since one second newer",
            vec![("If-Modified-Since", &second_after)],
        ),
        (
            "If-Modified-Since RFC 850 exact",
            vec![("If-Modified-Since", &rfc850)],
        ),
        (
            "If-Modified-Since asctime exact",
            vec![("If-Modified-Since", &asctime)],
        ),
        (
            "If-Modified-Since lower-case exact",
            vec![("If-Modified-Since", &lm_lower)],
        ),
        (
            "If-Modified-Since with ';length='",
            vec![("If-Modified-Since", &lm_length)],
        ),
        ("If-Match '*'", vec![("If-Match", "*")]),
        ("If-Match ETag", vec![("If-Match", etag)]),
        ("If-Match weak ETag", vec![("If-Match", &weak)]),
        (
            "If-Match list containing the ETag",
            vec![("If-Match", &list)],
        ),
        (
            "If-Unmodified-Since exact",
            vec![("If-Unmodified-Since", lm)],
        ),
        (
            "If-Unmodified-Since a day newer",
            vec![("If-Unmodified-Since", &day_after)],
        ),
        (
            "If-Unmodified-Since unparsable",
            vec![("If-Unmodified-Since", "tomorrow")],
        ),
        (
            "If-Match other + If-None-Match match",
            vec![("If-Match", "\"x\""), ("If-None-Match", etag)],
        ),
        (
            "If-Range weak ETag + Range",
            vec![("If-Range", &weak), ("Range", "bytes=0-99")],
        ),
        (
            "If-Range older date + Range",
            vec![("If-Range", &day_before), ("Range", "bytes=0-99")],
        ),
        (
            "If-Range newer date + Range",
            vec![("If-Range", &day_after), ("Range", "bytes=0-99")],
        ),
        ("If-Range without Range", vec![("If-Range", etag)]),
        (
            "If-Range garbage + Range",
            vec![("If-Range", "garbage"), ("Range", "bytes=0-99")],
        ),
    ];
    // A header given twice: nginx 1.22 refuses some repeats (400) and keeps the first of
    // others.
    let twice: Vec<(&str, Headers<'_>)> = vec![
        (
            "If-None-Match twice, match second",
            vec![("If-None-Match", "\"x\""), ("If-None-Match", etag)],
        ),
        (
            "If-None-Match twice, match first",
            vec![("If-None-Match", etag), ("If-None-Match", "\"x\"")],
        ),
        (
            "If-Match twice, match second",
            vec![("If-Match", "\"x\""), ("If-Match", etag)],
        ),
        (
            "If-Modified-Since twice",
            vec![("If-Modified-Since", lm), ("If-Modified-Since", lm)],
        ),
        (
            "If-Unmodified-Since twice",
            vec![
                ("If-Unmodified-Since", &day_before),
                ("If-Unmodified-Since", lm),
            ],
        ),
        (
            "If-Range twice + Range",
            vec![
                ("If-Range", etag),
                ("If-Range", etag),
                ("Range", "bytes=0-99"),
            ],
        ),
        (
            "Range twice",
            vec![("Range", "bytes=0-99"), ("Range", "bytes=100-199")],
        ),
    ];
    for (name, headers) in more.iter().chain(&twice) {
        cases.add(format!("conditional: {name}"), with(headers));
    }
    cases.add(
        "conditional: HEAD If-None-Match match",
        with(&[("If-None-Match", etag)]).method("HEAD"),
    );
    cases.add(
        "conditional: If-None-Match match on a tampered link",
        Request::get(format!(
            "{uri}?md5=AAAAAAAAAAAAAAAAAAAAAA&expires={}",
            signing.expires
        ))
        .header("If-None-Match", etag),
    );
}

/// `Sunday, 14-Nov-23 22:13:20 GMT` for `unix`.
fn rfc850_date(unix: i64) -> String {
    let imf = http_date(unix);
    // IMF-fixdate "Tue, 14 Nov 2023 22:13:20 GMT" -> RFC 850 with the full day name.
    let parts: Vec<&str> = imf
        .split([' ', ','])
        .filter(|part| !part.is_empty())
        .collect();
    let day = match parts[0] {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    };
    format!(
        "{day}, {}-{}-{} {} GMT",
        parts[1],
        parts[2],
        &parts[3][2..],
        parts[4]
    )
}

/// `Tue Nov 14 22:13:20 2023` for `unix`.
fn asctime_date(unix: i64) -> String {
    let imf = http_date(unix);
    let parts: Vec<&str> = imf
        .split([' ', ','])
        .filter(|part| !part.is_empty())
        .collect();
    format!(
        "{} {} {:>2} {} {}",
        parts[0],
        parts[2],
        parts[1].trim_start_matches('0'),
        parts[4],
        parts[3]
    )
}

/// Spec rows 68, 112, 113 and more: versions, Host, request-line shapes.
fn protocol(cases: &mut Cases, signing: &Signing) {
    let (uri, valid) = segment(signing);
    let query = signing.query(&uri);
    cases.spec(
        200,
        "protocol: absolute-form target",
        Request::get(format!("http://{AUTHORITY}{valid}")),
    );
    cases
        .add_raw(
            "protocol: HTTP/1.0 without Host",
            format!("GET {valid} HTTP/1.0\r\n\r\n").into_bytes(),
        )
        .spec_status = Some(200);
    cases
        .add_raw(
            "protocol: HTTP/1.1 without Host",
            format!("GET {valid} HTTP/1.1\r\nConnection: close\r\n\r\n").into_bytes(),
        )
        .spec_status = Some(400);
    cases.add(
        "protocol: HTTP/1.0 with Host",
        Request::get(&valid).version("HTTP/1.0"),
    );
    cases.add(
        "protocol: HTTP/1.0 HEAD without Host",
        Request::get(&valid).method("HEAD").version("HTTP/1.0"),
    );
    for version in [
        "HTTP/1.2",
        "HTTP/1.10",
        "HTTP/2.0",
        "HTTP/3.0",
        "HTTP/0.9",
        "http/1.1",
        "HTTP/1",
        "HTTX/1.1",
    ] {
        cases.add(
            format!("protocol: version {version}"),
            Request::get(&valid).version(version),
        );
    }
    cases.add(
        "protocol: absolute-form https scheme",
        Request::get(format!("https://{AUTHORITY}{valid}")),
    );
    cases.add(
        "protocol: absolute-form other host",
        Request::get(format!("http://other.example{valid}")),
    );
    cases.add(
        "protocol: absolute-form without path",
        Request::get(format!("http://{AUTHORITY}?{query}")),
    );
    cases.add(
        "protocol: absolute-form with dot segments",
        Request::get(format!("http://{AUTHORITY}/hls/x/..{}?{query}", &uri[4..])),
    );
    cases.add(
        "protocol: Host then an empty Host",
        Request::get(&valid).header("Host", ""),
    );
    cases.add(
        "protocol: two Host headers",
        Request::get(&valid).header("Host", "second"),
    );
    // Host values as nginx's ngx_http_validate_host judges them.
    let long_host = "a".repeat(300);
    for (name, host) in [
        ("empty Host", ""),
        ("Host with '/'", "a/b"),
        ("Host with '..'", "a..b"),
        ("Host with a trailing dot", "localhost."),
        ("Host with a space", "a b"),
        ("Host with a backslash", "a\\b"),
        ("Host IPv6 literal", "[::1]:8080"),
        ("Host unterminated IPv6 literal", "[::1"),
        ("Host with a non-numeric port", "localhost:abc"),
        ("Host port only", ":8080"),
        ("Host upper case", "LOCALHOST"),
        ("Host with an underscore", "my_host"),
        ("Host of 300 chars", long_host.as_str()),
    ] {
        cases.add_raw(
            format!("protocol: {name}"),
            Request::get(&valid).host(host).build(),
        );
    }
    cases.add_raw(
        "protocol: two spaces after method",
        format!("GET  {valid} HTTP/1.1\r\nHost: {AUTHORITY}\r\nConnection: close\r\n\r\n")
            .into_bytes(),
    );
    cases.add_raw(
        "protocol: bare LF line endings",
        format!("GET {valid} HTTP/1.1\nHost: {AUTHORITY}\nConnection: close\n\n").into_bytes(),
    );
    cases.add_raw(
        "protocol: leading empty line",
        format!("\r\nGET {valid} HTTP/1.1\r\nHost: {AUTHORITY}\r\nConnection: close\r\n\r\n")
            .into_bytes(),
    );
    cases.add(
        "protocol: header without colon",
        Request::get(&valid)
            .header("Broken header", "x")
            .header("X", "y"),
    );
    cases.add_raw(
        "protocol: header name with space before colon",
        format!(
            "GET {valid} HTTP/1.1\r\nHost: {AUTHORITY}\r\nX-Test : 1\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
    );
    cases.add_raw(
        "protocol: obsolete line folding",
        format!("GET {valid} HTTP/1.1\r\nHost: {AUTHORITY}\r\nX-Test: a\r\n b\r\nConnection: close\r\n\r\n")
            .into_bytes(),
    );
    cases.add(
        "protocol: Transfer-Encoding chunked empty body",
        Request::get(&valid)
            .header("Transfer-Encoding", "chunked")
            .body(b"0\r\n\r\n"),
    );
    // Headers given once or twice: nginx 1.22 refuses a second of some (400).
    let headers: &[(&str, &[(&str, &str)])] = &[
        ("Content-Length 0", &[("Content-Length", "0")]),
        ("invalid Content-Length", &[("Content-Length", "abc")]),
        ("Expect 100-continue", &[("Expect", "100-continue")]),
        (
            "Content-Length 0 twice",
            &[("Content-Length", "0"), ("Content-Length", "0")],
        ),
        ("Content-Length +0", &[("Content-Length", "+0")]),
        (
            "Authorization twice",
            &[
                ("Authorization", "Basic YTpi"),
                ("Authorization", "Basic YTpi"),
            ],
        ),
        (
            "Content-Range twice",
            &[
                ("Content-Range", "bytes 0-1/2"),
                ("Content-Range", "bytes 0-1/2"),
            ],
        ),
        (
            "Origin twice",
            &[
                ("Origin", "https://a.example"),
                ("Origin", "https://b.example"),
            ],
        ),
        (
            "Expect twice",
            &[("Expect", "100-continue"), ("Expect", "100-continue")],
        ),
    ];
    for (name, headers) in headers {
        let request = headers
            .iter()
            .fold(Request::get(&valid), |r, (name, value)| {
                r.header(name, *value)
            });
        cases.add(format!("protocol: {name}"), request);
    }
    // Head sizes around nginx's defaults: client_header_buffer_size 1k, then up to four
    // large_client_header_buffers of 8k, one line each at most.
    let padded = |count: usize, bytes: usize| {
        (0..count).fold(Request::get(&valid), |r, i| {
            r.header(&format!("X-Pad-{i}"), "a".repeat(bytes))
        })
    };
    cases.add("protocol: 70 small headers", padded(70, 8));
    cases.add("protocol: a 7 KiB header line", padded(1, 7 * 1024));
    cases.add("protocol: a 9 KiB header line", padded(1, 9 * 1024));
    cases.add("protocol: three 7 KiB header lines", padded(3, 7 * 1024));
    cases.add("protocol: five 7.5 KiB header lines", padded(5, 7680));
    cases.add(
        "protocol: a 9 KiB request line",
        Request::get(format!("{valid}&pad={}", "a".repeat(9 * 1024))),
    );
    cases.add(
        "protocol: target without leading slash",
        Request::get(format!("hls{}", &valid[4..])),
    );
}

/// Requests outside the secured location: nginx's `location / { return 404; }`.
fn outside_prefix(cases: &mut Cases, signing: &Signing) {
    let (uri, valid) = segment(signing);
    let query = signing.query(&uri);
    cases.spec(404, "outside: '/hls' without slash", Request::get("/hls"));
    let upper = uri.replacen("/hls/", "/HLS/", 1);
    cases.spec(
        404,
        "outside: '/HLS/' upper case",
        Request::get(format!("{upper}?{}", signing.query(&upper))),
    );
    cases.add("outside: '/'", Request::get("/"));
    cases.add(
        "outside: '/hls' signed",
        Request::get(format!("/hls?{}", signing.query("/hls"))),
    );
    cases.add(
        "outside: '/hlsx/...'",
        Request::get(format!("/hlsx{}?{query}", &uri[4..])),
    );
    cases.add("outside: '/favicon.ico'", Request::get("/favicon.ico"));
    cases.add(
        "outside: '/metrics' on the public port",
        Request::get("/metrics"),
    );
    cases.add(
        "outside: '/purge' POST on the public port",
        Request::get("/purge?prefix=/hls/").method("POST"),
    );
    cases.add("outside: '/healthz'", Request::get("/healthz"));
    cases.add("outside: '/index.html'", Request::get("/index.html"));
    cases.add(
        "outside: valid query on '/'",
        Request::get(format!("/?{query}")),
    );
    cases.add(
        "outside: '/hls/' segment path under '/x/'",
        Request::get(format!("/x{valid}")),
    );
}
