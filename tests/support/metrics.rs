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
    fn handles_escaped_quotes() {
        let samples = parse("m{a=\"x\\\"y\",b=\"z\"} 1.5 1700000000");
        assert_eq!(samples.len(), 1);
        assert!(samples[0].has_labels(&[("a", "x\"y"), ("b", "z")]));
        assert_eq!(samples[0].value, 1.5);
    }
}
