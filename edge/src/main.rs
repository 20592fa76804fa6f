//! `edge`: parse flags, load and validate the configuration, then serve until SIGTERM, sign
//! URLs or check the configuration ([`edge::run`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge::config::EdgeConfig;
use shared::env::ProcessEnv;
use shared::telemetry::{self, LogFormat};

/// nginx secure_link compatible HLS edge server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see config/edge.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Plain HTTP listen address (overrides server.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Content root (overrides content.root).
    #[arg(long)]
    root: Option<PathBuf>,
    /// URL prefix mapped onto the root (overrides content.prefix).
    #[arg(long)]
    prefix: Option<String>,
    /// Admin listen address for metrics and purge (overrides admin.listen).
    #[arg(long)]
    admin_listen: Option<String>,
    /// HTTPS listen address (overrides tls.listen).
    #[arg(long)]
    tls_listen: Option<String>,
    /// PEM certificate chain (overrides tls.cert).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key (overrides tls.key).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Worker threads, 0 = one per CPU (overrides server.workers).
    #[arg(long)]
    workers: Option<usize>,
    /// Log format: text or json (overrides log.format).
    #[arg(long)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print signed URLs for paths (with the first configured secret).
    Sign {
        /// Expiry as unix seconds; default: now + --ttl.
        #[arg(long)]
        expires: Option<i64>,
        /// Lifetime in seconds when --expires is not given.
        #[arg(long, default_value_t = 12 * 3600)]
        ttl: i64,
        /// Client address, for templates that bind $remote_addr.
        #[arg(long, default_value = "")]
        remote_addr: String,
        /// Decoded paths, e.g. /hls/<video>/720p/segment_000.ts
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Validate the configuration, try the upstream when one is set, and exit.
    Check,
}

fn load_config(cli: &Cli) -> anyhow::Result<EdgeConfig> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            EdgeConfig::from_toml(&text)?
        }
        None => EdgeConfig::default(),
    };
    config.apply_env(&ProcessEnv);
    let c = &mut config;
    if let Some(v) = &cli.listen {
        c.server.listen.clone_from(v);
    }
    if let Some(v) = &cli.root {
        c.content.root.clone_from(v);
    }
    if let Some(v) = &cli.prefix {
        c.content.prefix.clone_from(v);
    }
    if let Some(v) = &cli.admin_listen {
        c.admin.listen.clone_from(v);
    }
    if let Some(v) = &cli.tls_listen {
        c.tls.listen.clone_from(v);
    }
    if let Some(v) = &cli.tls_cert {
        c.tls.cert.clone_from(v);
    }
    if let Some(v) = &cli.tls_key {
        c.tls.key.clone_from(v);
    }
    if let Some(v) = cli.workers {
        c.server.workers = v;
    }
    if let Some(v) = cli.log_format {
        c.log.format = v;
    }
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    // Before any thread exists, so every arena obeys it.
    edge::sys::tune_allocator();
    let cli = Cli::parse();
    let config = load_config(&cli)?;
    match &cli.command {
        Some(Command::Sign {
            expires,
            ttl,
            remote_addr,
            paths,
        }) => {
            // Signing needs only the [signing] section; the rest may describe another host.
            let (link, warnings) = config.secure_link()?;
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            let expires = expires.unwrap_or_else(|| edge::service::unix_now() + ttl);
            for path in paths {
                println!("{}", link.signed_url(path, expires, remote_addr));
            }
            Ok(())
        }
        Some(Command::Check) => {
            let settings = config.validate()?;
            for warning in &settings.warnings {
                eprintln!("warning: {warning}");
            }
            eprintln!("configuration is valid");
            if let Some(upstream) = &settings.upstream {
                eprintln!("{}", edge::run::check_upstream(upstream)?);
            }
            Ok(())
        }
        None => {
            let settings = config.validate()?;
            telemetry::init(settings.log_format, "info");
            // At every start, so a weak secret kept on purpose is never forgotten.
            for warning in &settings.warnings {
                tracing::warn!("{warning}");
            }
            Ok(edge::run::serve(settings)?)
        }
    }
}
