//! Environment-variable overrides, read through a trait so tests never mutate the process
//! environment.

use std::collections::HashMap;

/// A source of string settings keyed by variable name.
pub trait EnvSource {
    /// The value of `name`, if set (empty values count as unset).
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).filter(|v| !v.is_empty()).cloned()
    }
}

impl EnvSource for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name)
            .filter(|v| !v.is_empty())
            .map(|v| (*v).to_owned())
    }
}

/// A boolean as an environment variable spells it: `true`/`1`/`yes` or `false`/`0`/`no`, any
/// case; `None` for anything else (to be reported, not guessed).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}
