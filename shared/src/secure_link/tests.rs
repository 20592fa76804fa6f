//! Fixed vectors (nginx's documentation and the probed behaviour document) and properties.

use super::*;
use proptest::prelude::*;

const URI: &str = "/hls/53a9021a-c042-409b-ba4c-10853a45cbd9/720p/segment_000.ts";
const TS: i64 = 1_795_314_773;

fn link() -> SecureLink {
    SecureLink::new(vec![Secret::new("anchor-test-secret")]).expect("valid")
}

fn check(link: &SecureLink, args: &str, now: i64) -> Result<(), VerifyError> {
    link.verify(
        &LinkRequest {
            uri: URI.as_bytes(),
            args: args.as_bytes(),
            remote_addr: "127.0.0.1",
        },
        now,
    )
}

#[test]
fn probed_vector_signs_and_verifies() {
    let l = link();
    assert_eq!(l.sign(URI, TS, "").md5, "OUrIAfiq5U-vLm1r8UEHxA");
    assert_eq!(
        check(&l, "md5=OUrIAfiq5U-vLm1r8UEHxA&expires=1795314773", TS),
        Ok(())
    );
    // Leading zeros are hashed as sent (row 37/38).
    assert_eq!(
        check(&l, "md5=_Yv8Lq6iLvswwcxIm3Axkw&expires=001795314773", TS),
        Ok(())
    );
    assert_eq!(
        check(&l, "md5=OUrIAfiq5U-vLm1r8UEHxA&expires=001795314773", TS),
        Err(VerifyError::Mismatch)
    );
    // Expired rows 3 and 5.
    assert_eq!(
        check(&l, "md5=Ou_4MSyWQ-prdbxtXXMn6w&expires=1795311113", TS),
        Err(VerifyError::Expired)
    );
    assert_eq!(
        check(&l, "md5=_ldccVstHqJxZe4WUVnF3w&expires=1", TS),
        Err(VerifyError::Expired)
    );
    // Row 40: 2^62 is a valid time_t.
    assert_eq!(
        check(
            &l,
            "md5=RKRx2aXR_sv69W0dGvIAcQ&expires=4611686018427387904",
            TS
        ),
        Ok(())
    );
}

#[test]
fn nginx_documentation_vector() {
    // ngx_http_secure_link_module docs: "/s/link?md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647"
    // with secure_link_md5 "$secure_link_expires$uri$remote_addr secret".
    let template: Template = "$secure_link_expires$uri$remote_addr $secret"
        .parse()
        .expect("valid");
    let l = SecureLink::with_options(vec![Secret::new("secret")], template, "md5", "expires")
        .expect("valid");
    assert_eq!(
        l.sign("/s/link", 2_147_483_647, "127.0.0.1").md5,
        "_e4Nc3iduzkWRm01TBBNYw"
    );
    let req = LinkRequest {
        uri: b"/s/link",
        args: b"md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647",
        remote_addr: "127.0.0.2",
    };
    assert_eq!(
        l.verify(&req, 0),
        Err(VerifyError::Mismatch),
        "bound to the address"
    );
}

#[test]
fn expiry_boundary_and_order() {
    let l = link();
    let args = "md5=OUrIAfiq5U-vLm1r8UEHxA&expires=1795314773";
    assert_eq!(check(&l, args, TS), Ok(()), "expires == now is valid");
    assert_eq!(check(&l, args, TS + 1), Err(VerifyError::Expired));
    let tampered = "md5=AUrIAfiq5U-vLm1r8UEHxA&expires=1795314773";
    assert_eq!(
        check(&l, tampered, TS + 1),
        Err(VerifyError::Mismatch),
        "hash before expiry"
    );
}

#[test]
fn malformed_and_missing() {
    let l = link();
    for (args, want) in [
        ("", VerifyError::Missing),
        ("md5=OUrIAfiq5U-vLm1r8UEHxA", VerifyError::Missing),
        ("expires=1795314773", VerifyError::Missing),
        ("md5=&expires=1795314773", VerifyError::Malformed),
        (
            "md5=OUrIAfiq5U-vLm1r8UEHxA&expires=0",
            VerifyError::Malformed,
        ),
        (
            "md5=OUrIAfiq5U-vLm1r8UEHxA&expires=-100",
            VerifyError::Malformed,
        ),
        (
            "md5=OUrIAfiq5U-vLm1r8UEHxA&expires=+1795314773",
            VerifyError::Malformed,
        ),
        (
            "md5=OUrIAfiq5U-vLm1r8UEHxA&expires=1795314773x",
            VerifyError::Malformed,
        ),
        (
            "md5=OUrIAfiq5U-vLm1r8UEHxA&expires=99999999999999999999",
            VerifyError::Malformed,
        ),
        (
            "md5=OUrIAfiq5U-vLm1r8UEHxA==A&expires=1795314773",
            VerifyError::Malformed,
        ),
        (
            "md5=OUrIAfiq5U-vLm1r8UEHxA%3D%3D&expires=1795314773",
            VerifyError::Malformed,
        ),
        (
            "md5=OUrIAfiq5U+vLm1r8UEHxA&expires=1795314773",
            VerifyError::Malformed,
        ),
        (
            "md5=OUrIAfiq5U-vLm1r8UEHxA,1&expires=1795314773",
            VerifyError::Malformed,
        ),
        (
            "md5=OUrIAfiq5U-vLm1r8UEHxA;expires=1795314773",
            VerifyError::Missing,
        ),
        (
            "md%35=OUrIAfiq5U-vLm1r8UEHxA&expires=1795314773",
            VerifyError::Missing,
        ),
    ] {
        assert_eq!(check(&l, args, TS), Err(want), "{args}");
    }
}

#[test]
fn argument_lookup_like_nginx() {
    let l = link();
    for args in [
        "expires=1795314773&md5=OUrIAfiq5U-vLm1r8UEHxA",
        "a=1&md5=OUrIAfiq5U-vLm1r8UEHxA&b=2&expires=1795314773&c=3",
        "md5=OUrIAfiq5U-vLm1r8UEHxA&md5=AAAAAAAAAAAAAAAAAAAAAA&expires=1795314773",
        "md5=OUrIAfiq5U-vLm1r8UEHxA&expires=1795314773&expires=1795314774",
        "MD5=OUrIAfiq5U-vLm1r8UEHxA&EXPIRES=1795314773",
        "xmd5=junk&md5=OUrIAfiq5U-vLm1r8UEHxA&expires=1795314773",
        "&md5=OUrIAfiq5U-vLm1r8UEHxA&expires=1795314773",
        "md5=OUrIAfiq5U-vLm1r8UEHxA==&expires=1795314773",
        "md5=OUrIAfiq5U-vLm1r8UEHxA=X&expires=1795314773",
        "md5=OUrIAfiq5U-vLm1r8UEHxP&expires=1795314773",
    ] {
        assert_eq!(check(&l, args, TS), Ok(()), "{args}");
    }
    for args in [
        "md5=AAAAAAAAAAAAAAAAAAAAAA&md5=OUrIAfiq5U-vLm1r8UEHxA&expires=1795314773",
        "md5=OUrIAfiq5U-vLm1r8UEHxA&expires=1795314774&expires=1795314773",
        "md5=ouRiaFIQ5u-VlM1R8uehXa&expires=1795314773",
    ] {
        assert_eq!(check(&l, args, TS), Err(VerifyError::Mismatch), "{args}");
    }
}

#[test]
fn rotation_signs_with_first_accepts_any() {
    let old = link();
    let rotated = SecureLink::new(vec![
        Secret::new("new-secret"),
        Secret::new("anchor-test-secret"),
    ])
    .expect("valid");
    let old_sig = old.sign(URI, TS, "");
    let args = format!("md5={}&expires={}", old_sig.md5, TS);
    assert_eq!(check(&rotated, &args, TS), Ok(()));
    let new_sig = rotated.sign(URI, TS, "");
    assert_ne!(new_sig, old_sig, "signs with the first secret");
    let args = format!("md5={}&expires={}", new_sig.md5, TS);
    assert_eq!(check(&old, &args, TS), Err(VerifyError::Mismatch));
}

#[test]
fn config_errors() {
    assert_eq!(
        SecureLink::new(vec![]).err(),
        Some(SecureLinkError::NoSecret)
    );
    assert_eq!(
        SecureLink::new(vec![Secret::new("")]).err(),
        Some(SecureLinkError::NoSecret)
    );
    let bad = SecureLink::with_options(vec![Secret::new("s")], Template::default(), "a&b", "e");
    assert!(matches!(bad, Err(SecureLinkError::BadArgName(_))));
    assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(<7 bytes>)");
}

#[test]
fn signed_url_encodes_path_but_hashes_decoded() {
    let l = link();
    let url = l.signed_url("/hls/a b/x.ts", TS, "");
    assert!(url.starts_with("/hls/a%20b/x.ts?md5="), "{url}");
    let mut appended = String::from("http://edge");
    l.append_signed_url(&mut appended, "/hls/a b/x.ts", &TS.to_string(), "");
    assert_eq!(appended, format!("http://edge{url}"), "both forms agree");
    let sig = l.sign("/hls/a b/x.ts", TS, "");
    let req = LinkRequest {
        uri: b"/hls/a b/x.ts",
        args: format!("md5={}&expires={TS}", sig.md5).into_bytes().leak(),
        remote_addr: "",
    };
    assert_eq!(l.verify(&req, TS), Ok(()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(path in "/[a-z0-9_./-]{0,40}", expires in 1i64..i64::MAX, now in 0i64..i64::MAX) {
        let l = link();
        let sig = l.sign(&path, expires, "");
        let args = format!("md5={}&expires={}", sig.md5, sig.expires);
        let req = LinkRequest { uri: path.as_bytes(), args: args.as_bytes(), remote_addr: "" };
        let want = if expires < now { Err(VerifyError::Expired) } else { Ok(()) };
        prop_assert_eq!(l.verify(&req, now), want);
    }

    #[test]
    fn any_change_invalidates(
        path in "/[a-z0-9_./-]{1,40}",
        other in "/[a-z0-9_./-]{1,40}",
        expires in 1i64..4_000_000_000,
        delta in 1i64..1000,
        flip in 0usize..22,
    ) {
        let l = link();
        let sig = l.sign(&path, expires, "");
        let verify = |uri: &str, args: &str| l.verify(
            &LinkRequest { uri: uri.as_bytes(), args: args.as_bytes(), remote_addr: "" }, 0);
        if other != path {
            let args = format!("md5={}&expires={}", sig.md5, expires);
            prop_assert_eq!(verify(&other, &args), Err(VerifyError::Mismatch));
        }
        let args = format!("md5={}&expires={}", sig.md5, expires + delta);
        prop_assert_eq!(verify(&path, &args), Err(VerifyError::Mismatch));
        // Changing any character changes the decoded bytes, except the last one's unused bits.
        let mut md5 = sig.md5.clone().into_bytes();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.iter().position(|&c| c == md5[flip]).unwrap_or(0);
        let step = if flip == 21 { 16 } else { 1 };
        md5[flip] = alphabet[(pos + step) % 64];
        let args = format!("md5={}&expires={}", String::from_utf8_lossy(&md5), expires);
        prop_assert_eq!(verify(&path, &args), Err(VerifyError::Mismatch));
    }

    #[test]
    fn verify_never_panics(args in proptest::collection::vec(any::<u8>(), 0..80), uri in proptest::collection::vec(any::<u8>(), 0..40)) {
        let l = link();
        let _ = l.verify(&LinkRequest { uri: &uri, args: &args, remote_addr: "" }, TS);
    }
}
