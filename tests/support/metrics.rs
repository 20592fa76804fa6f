//! Reading samples out of Prometheus text exposition format.

/// One sample line: `name{label="value",...} number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, including suffixes like `_bucket`.
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// Whether every `(name, value)` in `wanted` is among this sample's labels.
    pub fn has_labels(&self, wanted: &[(&str, &str)]) -> bool {
        wanted.iter().all(|(name, value)| {
            self.labels
                .iter()
                .any(|(have_name, have_value)| have_name == name && have_value == value)
        })
    }
}

/// Every sample in `text`; comment lines and unparsable lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

/// The sum of the samples named `name` carrying at least the labels `wanted`, or `None` when
/// there is no such sample.
pub fn value(text: &str, name: &str, wanted: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = parse(text)
        .into_iter()
        .filter(|sample| sample.name == name && sample.has_labels(wanted))
        .map(|sample| sample.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// Checks `text` the way `promtool check metrics` would, for what matters to a scraper: every
/// line is blank, a well-formed `# HELP` / `# TYPE` (counter, gauge, histogram, summary,
/// untyped), or a sample that parses; every sample belongs to a family declared by a `# TYPE`
/// line before it (`_bucket`, `_sum`, `_count` for histograms and summaries); metric and
/// label names are valid; no series appears twice; histogram buckets carry `le` and end with
/// `+Inf`. Returns the samples, or every problem found.
pub fn parse_strict(text: &str) -> Result<Vec<Sample>, Vec<String>> {
    let mut problems = Vec::new();
    let mut types: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            match words.next() {
                Some("HELP") if !words.next().is_some_and(valid_metric_name) => {
                    problems.push(format!("line {number}: bad HELP line {line:?}"));
                }
                Some("TYPE") => {
                    let name = words.next();
                    let kind = words.next();
                    match (name, kind) {
                        (Some(name), Some(kind))
                            if valid_metric_name(name)
                                && matches!(
                                    kind,
                                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                                ) =>
                        {
                            if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                                problems.push(format!("line {number}: second TYPE for {name}"));
                            }
                        }
                        _ => problems.push(format!("line {number}: bad TYPE line {line:?}")),
                    }
                }
                // Other comments are allowed by the format.
                _ => {}
            }
            continue;
        }
        let Some(sample) = parse_line(line) else {
            problems.push(format!("line {number}: unparsable sample {line:?}"));
            continue;
        };
        if !valid_metric_name(&sample.name) {
            problems.push(format!("line {number}: bad metric name {:?}", sample.name));
        }
        if let Some((bad, _)) = sample
            .labels
            .iter()
            .find(|(name, _)| !valid_label_name(name))
        {
            problems.push(format!("line {number}: bad label name {bad:?}"));
        }
        let family = family_of(&sample.name, &types);
        match family
            .as_deref()
            .and_then(|f| types.get(f).map(|k| (f, k.as_str())))
        {
            None => problems.push(format!(
                "line {number}: sample {} has no preceding # TYPE",
                sample.name
            )),
            Some((family, "histogram")) if sample.name == format!("{family}_bucket") => {
                if !sample.labels.iter().any(|(name, _)| name == "le") {
                    problems.push(format!("line {number}: histogram bucket without le"));
                }
            }
            Some(_) => {}
        }
        let mut key = sample.labels.clone();
        key.sort();
        if !seen.insert((sample.name.clone(), key)) {
            problems.push(format!("line {number}: duplicate series {line:?}"));
        }
        samples.push(sample);
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let bucket = format!("{family}_bucket");
        let has_buckets = samples.iter().any(|s| s.name == bucket);
        let has_inf = samples
            .iter()
            .any(|s| s.name == bucket && s.has_labels(&[("le", "+Inf")]));
        if has_buckets && !has_inf {
            problems.push(format!("histogram {family} has no le=\"+Inf\" bucket"));
        }
    }
    if problems.is_empty() {
        Ok(samples)
    } else {
        Err(problems)
    }
}

/// The declared family a sample name belongs to.
fn family_of(name: &str, types: &std::collections::HashMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let family = name.strip_suffix(suffix)?;
        matches!(
            types.get(family).map(String::as_str),
            Some("histogram" | "summary")
        )
        .then(|| family.to_owned())
    })
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, rest) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..close + 1], &line[close + 1..])
        }
        None => line.split_at(line.find(char::is_whitespace)?),
    };
    // A timestamp may follow the value; only the value matters here.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

fn parse_labels(mut text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if text.is_empty() {
            return Some(labels);
        }
        let (name, rest) = text.split_once('=')?;
        let rest = rest.strip_prefix('"')?;
        // Values may contain escaped quotes, so scan for the first unescaped one.
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (index, '"') => break index,
                (_, other) => value.push(other),
            }
        };
        labels.push((name.trim().to_owned(), value));
        text = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_series() {
        let text = "# HELP x\n# TYPE x counter\n\
                    edge_requests_total{route=\"hls\",status_class=\"2xx\"} 3\n\
                    edge_requests_total{status_class=\"4xx\",route=\"hls\"} 2\n\
                    edge_open_connections 1\n";
        assert_eq!(value(text, "edge_requests_total", &[]), Some(5.0));
        assert_eq!(
            value(text, "edge_requests_total", &[("status_class", "4xx")]),
            Some(2.0)
        );
        assert_eq!(value(text, "edge_open_connections", &[]), Some(1.0));
        assert_eq!(value(text, "missing", &[]), None);
    }

    #[test]
    fn strict_parse_accepts_well_formed_and_reports_problems() {
        let good = "# HELP h Help.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\n\
                    h_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n# TYPE c counter\nc 1\n";
        assert_eq!(parse_strict(good).map(|s| s.len()), Ok(5));
        let bad = "# TYPE c counter\nc 1\nc 2\nd 1\nc{1x=\"y\"} 1\ngarbage line here\n";
        let problems = parse_strict(bad).expect_err("problems");
        assert_eq!(problems.len(), 4, "{problems:#?}");
    }

    #[test]
    fn handles_escaped_quotes() {
        let samples = parse("m{a=\"x\\\"y\",b=\"z\"} 1.5 1700000000");
        assert_eq!(samples.len(), 1);
        assert!(samples[0].has_labels(&[("a", "x\"y"), ("b", "z")]));
        assert_eq!(samples[0].value, 1.5);
    }
}
