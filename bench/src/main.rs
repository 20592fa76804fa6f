//! The load-testing bench.
//!
//! - `bench viewers` simulates players against a running origin and edge (see [`viewers`]).
//! - `bench content` writes a deterministic HLS-like content tree (the same bytes on every run,
//!   so results from different days compare) and the list of URIs of each scenario.
//! - `bench sign` turns URIs into signed paths with `shared::secure_link`, the very code the
//!   origin signs with, so the benchmark does not depend on the edge's `sign` subcommand.

use std::fs;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand};
use shared::secure_link::{Secret, SecureLink};

mod viewers;

#[derive(Parser)]
#[command(
    about = "Load-testing bench: simulated viewers, and content and signed URLs for the edge benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate viewers: token, stream-info, master, rung, playlist, key, segments.
    Viewers(viewers::Args),
    /// Write the content tree under `--root` and one URI list per scenario under `--lists`.
    Content(ContentArgs),
    /// Read URIs (one per line) on stdin, print one signed path+query per line.
    Sign(SignArgs),
}

#[derive(Parser)]
struct ContentArgs {
    /// Directory the servers serve (nginx `alias`, edge `--root`).
    #[arg(long)]
    root: PathBuf,
    /// Where to write `hot.uris`, `large.uris`, `4mb.uris`, `9mb.uris` and `distinct.uris`.
    #[arg(long)]
    lists: PathBuf,
    /// URL prefix mapped onto `--root`.
    #[arg(long, default_value = "/hls/")]
    prefix: String,
    /// Size of the hot segment: small enough for the edge's in-memory cache (<= 1.5 MiB).
    /// The default is the size of the segment in the nginx compatibility spec.
    #[arg(long, default_value_t = 1_355_480)]
    hot_bytes: usize,
    /// Size of the large segment: above the cache's per-object limit, so it goes by sendfile.
    #[arg(long, default_value_t = 2_200_000)]
    large_bytes: usize,
    /// Size of the `4mb` segment: 6 s of 1080p at 5 Mb/s is 3.75 MB.
    #[arg(long, default_value_t = 4_000_000)]
    mb4_bytes: usize,
    /// Size of the `9mb` segment: a 6 s 4K segment.
    #[arg(long, default_value_t = 9_000_000)]
    mb9_bytes: usize,
    /// Number of distinct segments, cycled through to defeat any single-object fast path.
    #[arg(long, default_value_t = 200)]
    distinct: usize,
    /// Size of each distinct segment.
    #[arg(long, default_value_t = 600_000)]
    distinct_bytes: usize,
}

#[derive(Parser)]
struct SignArgs {
    /// Environment variable holding the signing secret (never passed on the command line,
    /// where `ps` would show it).
    #[arg(long, default_value = "HLS_SIGNING_SECRET")]
    secret_env: String,
    /// Unix time the links expire at.
    #[arg(long)]
    expires: i64,
    /// Change the first character of every md5, so the signature is well-formed but wrong
    /// (the 403 scenario). Changing the first character alters the first 6 decoded bits, so
    /// the result can never match.
    #[arg(long)]
    tamper: bool,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Content(args) => content(&args),
        Command::Sign(args) => sign(&args),
        Command::Viewers(args) => viewers::main(args),
    }
}

fn content(args: &ContentArgs) -> Result<()> {
    ensure!(
        args.prefix.starts_with('/') && args.prefix.ends_with('/'),
        "--prefix must start and end with '/'"
    );
    fs::create_dir_all(&args.lists).with_context(|| format!("creating {:?}", args.lists))?;

    let hot = ["hot/720p/segment_000.ts".to_owned()];
    let large = ["large/1080p/segment_000.ts".to_owned()];
    let mb4 = ["4mb/1080p/segment_000.ts".to_owned()];
    let mb9 = ["9mb/2160p/segment_000.ts".to_owned()];
    let distinct: Vec<String> = (0..args.distinct)
        .map(|i| format!("distinct/480p/segment_{i:03}.ts"))
        .collect();

    for (list, rel_paths, size) in [
        ("hot.uris", &hot[..], args.hot_bytes),
        ("large.uris", &large[..], args.large_bytes),
        ("4mb.uris", &mb4[..], args.mb4_bytes),
        ("9mb.uris", &mb9[..], args.mb9_bytes),
        ("distinct.uris", &distinct[..], args.distinct_bytes),
    ] {
        let mut uris = String::new();
        for rel in rel_paths {
            write_segment(&args.root.join(rel), rel, size)?;
            uris.push_str(&args.prefix);
            uris.push_str(rel);
            uris.push('\n');
        }
        let path = args.lists.join(list);
        fs::write(&path, uris).with_context(|| format!("writing {path:?}"))?;
    }
    Ok(())
}

/// Writes `size` pseudo-random bytes seeded by the relative path: deterministic across runs,
/// different between files (so no layer can deduplicate them) and incompressible (like video).
fn write_segment(path: &Path, rel: &str, size: usize) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {dir:?}"))?;
    }
    // FNV-1a of the path as the seed: stable across Rust versions, unlike `DefaultHasher`.
    let mut state = rel.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        bytes.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    bytes.truncate(size);
    fs::write(path, &bytes).with_context(|| format!("writing {path:?}"))
}

/// SplitMix64: a tiny, well-distributed generator; no dependency needed for filler bytes.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn sign(args: &SignArgs) -> Result<()> {
    let secret = std::env::var(&args.secret_env)
        .with_context(|| format!("environment variable {} is not set", args.secret_env))?;
    let link = SecureLink::new(vec![Secret::new(secret)])?;
    let md5_marker = format!("?{}=", link.md5_arg());

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for line in io::stdin().lock().lines() {
        let line = line?;
        let uri = line.trim();
        if uri.is_empty() {
            continue;
        }
        // Default template has no `$remote_addr`, so the address is irrelevant.
        let mut url = link.signed_url(uri, args.expires, "");
        if args.tamper {
            let Some(at) = url.find(&md5_marker) else {
                bail!("signed URL {url:?} has no {md5_marker:?}");
            };
            let first = at + md5_marker.len();
            // Any other base64url character: the token stays well-formed, only the hash differs.
            let replacement = if url.as_bytes()[first] == b'A' {
                "B"
            } else {
                "A"
            };
            url.replace_range(first..first + 1, replacement);
        }
        writeln!(out, "{url}")?;
    }
    out.flush()?;
    Ok(())
}
