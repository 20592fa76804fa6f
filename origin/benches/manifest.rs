//! Signing cost of the playlists the origin rewrites per request.
//!
//! - `sign_variant`: a 2-hour rendition, 1,200 segments of 6 s, with its key placeholder
//!   (`#EXT-X-KEY:METHOD=AES-128,URI="key:720p"`): every segment URI becomes an absolute,
//!   secure_link-signed edge URL (one MD5 each) and the key line the key endpoint.
//! - `secure_link_sign_only`: the 1,200 signatures alone, to split the variant's cost between
//!   hashing and rewriting.
//! - `sign_master`: a five-rung master (rendered by the pipeline's own writer) gets the
//!   playback credential appended to every variant URI.
//!
//! Criterion reports means with confidence intervals. Tail latency is what a player waiting
//! for a manifest feels, and criterion does not report percentiles, so in bench mode a plain
//! timing loop (one `Instant` per call) follows and prints p50/p99/max, with the target
//! p99 < 1 ms for the variant.
//!
//! ```sh
//! cargo bench -p origin --bench manifest -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use origin::playback::{bucketed_expiry, sign_master, sign_variant, VariantSigning};
use origin::transcode::playlist::{key_placeholder, master, with_key, Variant};
use shared::media::VideoId;
use shared::secure_link::{Secret, SecureLink};

const SEGMENTS: usize = 1_200;
const SEGMENT_SECS: f64 = 6.0;
const RUNG: &str = "720p";
/// The p99 a variant must be signed within.
const TARGET_P99: Duration = Duration::from_millis(1);

/// A stored variant playlist as the pipeline writes it: VOD, key placeholder, 1,200 segments.
fn variant_playlist() -> String {
    let mut text = String::from(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n",
    );
    for i in 0..SEGMENTS {
        text.push_str(&format!("#EXTINF:{SEGMENT_SECS:.6},\nsegment_{i:03}.ts\n"));
    }
    text.push_str("#EXT-X-ENDLIST\n");
    let text = with_key(&text, &key_placeholder(RUNG));
    assert!(text.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"key:720p\""));
    text
}

/// A five-rung master as the pipeline writes it.
fn master_playlist() -> String {
    let rungs = [
        ("1080p", 1920, 1080, 5_000_000),
        ("720p", 1280, 720, 3_000_000),
        ("480p", 852, 480, 1_500_000),
        ("360p", 640, 360, 800_000),
        ("240p", 426, 240, 400_000),
    ];
    let variants: Vec<Variant> = rungs
        .iter()
        .map(|&(name, width, height, bandwidth)| Variant {
            uri: format!("{name}/index.m3u8"),
            bandwidth: bandwidth * 11 / 10,
            average_bandwidth: bandwidth,
            width,
            height,
            codecs: "avc1.640028,mp4a.40.2".into(),
            frame_rate: 25.0,
        })
        .collect();
    master(&variants, &[], &[])
}

/// Everything a request signs with, built once like the origin builds it at start.
struct Fixture {
    variant: String,
    master: String,
    link: SecureLink,
    video: VideoId,
    credential: String,
    key_uri: String,
    expires: i64,
}

impl Fixture {
    fn new() -> Self {
        let now = 1_800_000_000;
        let expires = bucketed_expiry(now, 43_200, 300);
        let video: VideoId = "53a9021a-c042-409b-ba4c-10853a45cbd9"
            .parse()
            .expect("valid id");
        // A real playback credential (an HS256 JWT) is ~200 characters; mint one.
        let credential = origin::api::auth::mint_hs256(
            b"bench-playback-credential-secret",
            "alice",
            false,
            43_200,
            now,
        )
        .expect("mint a credential");
        Self {
            variant: variant_playlist(),
            master: master_playlist(),
            link: SecureLink::new(vec![Secret::new("bench-edge-signing-secret")])
                .expect("non-empty secret"),
            key_uri: format!("key?pt={credential}"),
            credential,
            video,
            expires,
        }
    }

    fn sign_variant(&self) -> String {
        sign_variant(
            &self.variant,
            &VariantSigning {
                link: &self.link,
                edge_base_url: "https://edge.example.com",
                edge_prefix: "/hls/",
                video: &self.video,
                rung: RUNG,
                expires: self.expires,
                key_uri: &self.key_uri,
            },
        )
    }

    fn sign_master(&self) -> String {
        sign_master(&self.master, &self.credential)
    }
}

fn criterion_benches(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("manifest");
    group.throughput(Throughput::Elements(SEGMENTS as u64));
    group.bench_function("sign_variant/1200_segments", |b| {
        b.iter(|| black_box(f.sign_variant()))
    });
    // The share of sign_variant that is the secure_link signature itself (MD5, expiry text,
    // base64url); the rest is rewriting and formatting the playlist.
    let paths: Vec<String> = (0..SEGMENTS)
        .map(|i| format!("/hls/{}/{RUNG}/segment_{i:03}.ts", f.video))
        .collect();
    group.bench_function("secure_link_sign_only/1200_segments", |b| {
        b.iter(|| {
            for path in &paths {
                black_box(f.link.sign(path, f.expires, ""));
            }
        })
    });
    group.throughput(Throughput::Elements(5));
    group.bench_function("sign_master/5_variants", |b| {
        b.iter(|| black_box(f.sign_master()))
    });
    group.finish();
}

/// Times `n` calls one by one and prints mean, p50, p99 and max; returns p99.
fn percentiles(name: &str, n: usize, mut call: impl FnMut() -> String) -> Duration {
    for _ in 0..n / 10 {
        black_box(call());
    }
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            black_box(call());
            started.elapsed()
        })
        .collect();
    samples.sort_unstable();
    let at = |q: f64| samples[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    let mean = samples.iter().sum::<Duration>() / n as u32;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{name:<28} n={n:<6} mean {:>8.1} µs  p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs",
        us(mean),
        us(at(0.50)),
        us(at(0.99)),
        us(samples[n - 1]),
    );
    at(0.99)
}

fn main() {
    let fixture = Fixture::new();
    let signed = fixture.sign_variant();
    assert_eq!(
        signed.matches("https://edge.example.com/hls/").count(),
        SEGMENTS,
        "every segment is signed"
    );
    assert!(signed.contains(&format!("URI=\"{}\"", fixture.key_uri)));

    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &fixture);
    c.final_summary();

    // `cargo bench` passes --bench; `cargo test --benches` does not (criterion then runs each
    // benchmark once as a smoke test, and so is this skipped).
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list") {
        println!(
            "\nper-call latency (own timing loop; variant {} KiB in, {} KiB out):",
            fixture.variant.len() / 1024,
            signed.len() / 1024
        );
        let p99 = percentiles("sign_variant/1200_segments", 3_000, || {
            fixture.sign_variant()
        });
        percentiles("sign_master/5_variants", 30_000, || fixture.sign_master());
        println!(
            "target: sign_variant p99 < {} µs: {}",
            TARGET_P99.as_micros(),
            if p99 < TARGET_P99 { "PASS" } else { "FAIL" }
        );
    }
}
