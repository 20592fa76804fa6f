//! `bench viewers`: a load generator that behaves like players. Each simulated viewer gets a
//! token, asks the origin for stream-info and the master playlist, picks a rung, fetches the
//! rung's playlist and key, then the segments from the edge at playback pace (or flat out).
//! Optional attackers replay real segment URLs with forged signatures while viewers play.
//!
//! The run is always bounded twice, by `--duration` and by `--max-requests`; a live progress
//! line goes to stderr and a JSON summary (latency percentiles per request kind, statuses,
//! errors, stalls) to stdout.

mod client;
mod hls;
mod progress;
mod stats;
mod viewer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, ValueEnum};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use client::{Client, Url};
use stats::{Live, Recorder};
use viewer::Viewer;

#[derive(Debug, Parser)]
pub struct Args {
    /// The origin's API, e.g. `http://127.0.0.1:8081`.
    #[arg(long)]
    origin: String,
    /// The edge, for playlists whose segment URLs carry no host (`edge_base_url` empty).
    #[arg(long)]
    edge: Option<String>,
    /// Simulated viewers.
    #[arg(long, default_value_t = 20)]
    viewers: usize,
    /// Attackers replaying segment URLs with forged signatures, flat out (expect 403s).
    #[arg(long, default_value_t = 0)]
    attackers: usize,
    /// Videos to play; by default every ready video of `--user`.
    #[arg(long = "video")]
    videos: Vec<String>,
    /// `hot`: every viewer on the first video; `spread`: viewers spread over all videos and
    /// move on to another one after each (cache churn).
    #[arg(long, value_enum, default_value_t = Mode::Hot)]
    mode: Mode,
    /// `playback`: segments as a player needs them (`--buffer-secs` ahead of the playhead);
    /// `flat`: back to back (stress).
    #[arg(long, value_enum, default_value_t = Pace::Playback)]
    pace: Pace,
    /// `lowest`, `highest`, `random` or a rung name such as `720p`.
    #[arg(long, default_value = "random")]
    rung: String,
    /// How far ahead of the playhead a viewer keeps its buffer.
    #[arg(long, default_value_t = 12.0)]
    buffer_secs: f64,
    /// The run stops after this many seconds...
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// ...or after this many requests, whichever comes first.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    /// Viewers start spread over this many seconds rather than all at once.
    #[arg(long, default_value_t = 2.0)]
    ramp_secs: f64,
    /// Each request (connection, answer and body) must complete within this many seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout_secs: f64,
    /// User the tokens are for (the owner of the videos).
    #[arg(long, default_value = "bench")]
    user: String,
    /// Environment variable with the origin's HS256 JWT secret: tokens are minted locally.
    /// When it is not set, tokens come from the origin's development endpoint.
    #[arg(long, default_value = "JWT_SECRET")]
    jwt_secret_env: String,
    /// Query argument holding the signature in segment URLs (the edge's `md5_arg`).
    #[arg(long, default_value = "md5")]
    md5_arg: String,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 1.0)]
    progress_secs: f64,
    /// Also write the JSON summary to this file.
    #[arg(long)]
    summary: Option<std::path::PathBuf>,
    /// A name for the run, copied into the summary.
    #[arg(long, default_value = "")]
    label: String,
    /// Seed for the viewers' random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Exit 0 even when some outcomes were unexpected (errors, forged URLs not refused).
    #[arg(long)]
    allow_errors: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Hot,
    Spread,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pace {
    Playback,
    Flat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RungChoice {
    Lowest,
    Highest,
    Random,
    Named(String),
}

impl From<&str> for RungChoice {
    fn from(s: &str) -> Self {
        match s {
            "lowest" => Self::Lowest,
            "highest" => Self::Highest,
            "random" => Self::Random,
            name => Self::Named(name.to_owned()),
        }
    }
}

/// How viewers get their user token.
pub enum Tokens {
    /// Minted here with the origin's secret, one per viewer.
    Minted { key: EncodingKey, user: String },
    /// `GET /api/dev/token?user=` (origins started in development mode).
    DevEndpoint { user: String },
}

/// Stops the run at a deadline or after a number of requests.
pub struct Budget {
    pub deadline: Instant,
    max: u64,
    taken: AtomicU64,
}

impl Budget {
    fn new(duration: Duration, max: u64) -> Self {
        Self {
            deadline: Instant::now() + duration,
            max,
            taken: AtomicU64::new(0),
        }
    }

    /// Whether one more request may be sent.
    pub fn take(&self) -> bool {
        Instant::now() < self.deadline && self.taken.fetch_add(1, Ordering::Relaxed) < self.max
    }

    fn exhausted(&self) -> bool {
        self.taken.load(Ordering::Relaxed) >= self.max
    }
}

/// What every viewer reads.
pub struct Shared {
    pub origin: Url,
    pub edge: Option<Url>,
    pub videos: Vec<String>,
    pub viewers: usize,
    pub spread: bool,
    pub pace: Pace,
    pub rung: RungChoice,
    pub buffer_secs: f64,
    pub timeout: Duration,
    pub md5_arg: String,
    pub seed: u64,
    pub tokens: Tokens,
    pub budget: Budget,
    pub live: Live,
}

/// Runs the load and prints the summary; fails when outcomes were unexpected.
pub fn main(args: Args) -> Result<()> {
    ensure!(
        args.viewers + args.attackers > 0,
        "--viewers and --attackers are both 0"
    );
    ensure!(args.duration > 0, "--duration must be at least 1 second");
    ensure!(args.max_requests > 0, "--max-requests must be at least 1");
    ensure!(
        args.timeout_secs > 0.0 && args.buffer_secs >= 0.0 && args.ramp_secs >= 0.0,
        "--timeout-secs must be positive, --buffer-secs and --ramp-secs not negative"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(run(&args))?;
    let text = serde_json::to_string_pretty(&summary)?;
    println!("{text}");
    if let Some(path) = &args.summary {
        std::fs::write(path, format!("{text}\n")).with_context(|| format!("writing {path:?}"))?;
    }
    let unexpected = summary["unexpected"].as_u64().unwrap_or(0);
    if unexpected > 0 && !args.allow_errors {
        bail!("{unexpected} unexpected outcomes (see \"errors\" in the summary)");
    }
    Ok(())
}

async fn run(args: &Args) -> Result<serde_json::Value> {
    let origin = Url::parse(&args.origin).context("--origin")?;
    let edge = args
        .edge
        .as_deref()
        .map(Url::parse)
        .transpose()
        .context("--edge")?;
    let tokens = match std::env::var(&args.jwt_secret_env) {
        Ok(secret) if !secret.is_empty() => Tokens::Minted {
            key: EncodingKey::from_secret(secret.as_bytes()),
            user: args.user.clone(),
        },
        _ => Tokens::DevEndpoint {
            user: args.user.clone(),
        },
    };
    let timeout = Duration::from_secs_f64(args.timeout_secs);
    let videos = if args.videos.is_empty() {
        ready_videos(&origin, &tokens, timeout).await?
    } else {
        args.videos.clone()
    };
    ensure!(
        !videos.is_empty(),
        "user {:?} has no ready video to play",
        args.user
    );
    let shared = Arc::new(Shared {
        origin,
        edge,
        videos,
        viewers: args.viewers.max(1),
        spread: args.mode == Mode::Spread,
        pace: args.pace,
        rung: RungChoice::from(args.rung.as_str()),
        buffer_secs: args.buffer_secs,
        timeout,
        md5_arg: args.md5_arg.clone(),
        seed: args.seed,
        tokens,
        budget: Budget::new(Duration::from_secs(args.duration), args.max_requests),
        live: Live::default(),
    });

    let started = Instant::now();
    let progress = tokio::spawn(progress::report(
        Arc::clone(&shared),
        Duration::from_secs_f64(args.progress_secs.max(0.1)),
    ));
    let total = args.viewers + args.attackers;
    let mut tasks = Vec::with_capacity(total);
    for id in 0..total {
        let shared = Arc::clone(&shared);
        let delay = Duration::from_secs_f64(args.ramp_secs * id as f64 / total as f64);
        let attacker = id >= args.viewers;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            Live::add(&shared.live.viewers, 1);
            let mut viewer = Viewer::new(id, &shared);
            if attacker {
                viewer.attack().await;
            } else {
                viewer.watch().await;
            }
            shared.live.viewers.fetch_sub(1, Ordering::Relaxed);
            viewer.rec
        }));
    }
    let mut all = Recorder::default();
    for task in tasks {
        match task.await {
            Ok(rec) => all.merge(rec),
            Err(e) => all.error(format!("viewer task failed: {e}")),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.abort();
    eprintln!();
    let stopped_by = if shared.budget.exhausted() {
        "max_requests"
    } else {
        "duration"
    };
    let run = json!({
        "label": args.label,
        "origin": args.origin,
        "viewers": args.viewers,
        "attackers": args.attackers,
        "videos": shared.videos.len(),
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "pace": format!("{:?}", args.pace).to_lowercase(),
        "rung": args.rung,
        "duration_secs": args.duration,
        "max_requests": args.max_requests,
        "stopped_by": stopped_by,
    });
    Ok(all.summary(elapsed, run))
}

/// The ids of the user's ready videos, from `GET /api/videos` (paged).
async fn ready_videos(origin: &Url, tokens: &Tokens, timeout: Duration) -> Result<Vec<String>> {
    let mut client = Client::new(&origin.authority, timeout);
    let token = match tokens {
        Tokens::Minted { key, user } => mint(key, user)?,
        Tokens::DevEndpoint { user } => {
            let answer = client
                .get(&format!("/api/dev/token?user={user}"), None, true)
                .await?;
            ensure!(
                answer.status == 200,
                "no JWT secret in the environment and the origin's development token endpoint \
                 answered {} (set the secret's variable, see --jwt-secret-env)",
                answer.status
            );
            let v: serde_json::Value = serde_json::from_slice(&answer.body)?;
            v["token"]
                .as_str()
                .context("token endpoint: no token")?
                .to_owned()
        }
    };
    let mut ready = Vec::new();
    // Bounded: at most 100 pages of 100.
    for page in 0..100 {
        let target = format!("/api/videos?limit=100&offset={}", page * 100);
        let answer = client.get(&target, Some(&token), true).await?;
        ensure!(
            answer.status == 200,
            "GET {target} answered {}",
            answer.status
        );
        let v: serde_json::Value = serde_json::from_slice(&answer.body)?;
        let videos = v["videos"]
            .as_array()
            .context("listing has no videos array")?;
        ready.extend(
            videos
                .iter()
                .filter(|v| v["status"] == "ready")
                .filter_map(|v| v["id"].as_str().map(str::to_owned)),
        );
        if videos.len() < 100 {
            break;
        }
    }
    Ok(ready)
}

/// An HS256 user token for `user`, valid for an hour (longer than any run).
pub fn mint(key: &EncodingKey, user: &str) -> Result<String, jsonwebtoken::errors::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = json!({ "sub": user, "exp": now + 3600 });
    jsonwebtoken::encode(&Header::default(), &claims, key)
}
