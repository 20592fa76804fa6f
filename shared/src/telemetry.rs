//! `tracing` set-up shared by both binaries: `RUST_LOG` filter, text or JSON lines on stderr.

use tracing_subscriber::EnvFilter;

/// Output format of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_filter: &str) {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| default_filter.to_owned());
    let filter = EnvFilter::try_new(quiet_rustls(&directives))
        .unwrap_or_else(|_| EnvFilter::new(quiet_rustls(default_filter)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Holds rustls to errors unless the directives name it: it warns once per odd client (an IP
/// address sent as SNI, every fatal alert it sends), so any client could fill the log, and the
/// services log failed handshakes themselves at debug.
fn quiet_rustls(directives: &str) -> String {
    let names_rustls = directives.split(',').any(|d| {
        let target = d.split(['=', '[']).next().unwrap_or("").trim();
        target == "rustls" || target.starts_with("rustls::")
    });
    match names_rustls {
        true => directives.to_owned(),
        false if directives.trim().is_empty() => "rustls=error".to_owned(),
        false => format!("{directives},rustls=error"),
    }
}

#[cfg(test)]
mod tests {
    use super::quiet_rustls;

    #[test]
    fn rustls_is_held_to_errors_unless_named() {
        assert_eq!(quiet_rustls("info"), "info,rustls=error");
        assert_eq!(quiet_rustls(""), "rustls=error");
        assert_eq!(quiet_rustls("debug,rustls=debug"), "debug,rustls=debug");
        assert_eq!(
            quiet_rustls("info,rustls::server=warn"),
            "info,rustls::server=warn"
        );
        assert_eq!(
            quiet_rustls("info,tokio_rustls=debug"),
            "info,tokio_rustls=debug,rustls=error"
        );
    }
}
