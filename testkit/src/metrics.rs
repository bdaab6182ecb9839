//! The relay's Prometheus text (its `/metrics` page), read by selectors.
//!
//! A selector is a metric name, which picks its samples of every label set, or a name
//! with its first labels as the relay writes them, which picks those:
//! `relay_xdp_packets_total{action="dropped",reason="stun"}`.

use std::time::Duration;

use anyhow::Context as _;

/// The Prometheus text the relay at `http` serves.
pub fn fetch(http: &str) -> anyhow::Result<String> {
    fetch_filtered(http, "")
}

/// The Prometheus text the relay at `http` serves for `query` (MediaMTX's filters,
/// `type=paths&path=cam`, say).
pub fn fetch_filtered(http: &str, query: &str) -> anyhow::Result<String> {
    let url = format!("{http}/metrics?{query}");
    let mut response = crate::http::agent(Duration::from_secs(10))
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let text = response.body_mut().read_to_string()?;
    anyhow::ensure!(status == 200, "GET {url}: {status}: {text}");
    Ok(text)
}

/// The sum of the samples `selector` picks; an error if it picks none (a metric the
/// relay does not export, or not by that name).
pub fn exported(text: &str, selector: &str) -> anyhow::Result<f64> {
    let (prefix, next): (&str, &[char]) = match selector.strip_suffix('}') {
        Some(labels) => (labels, &[',', '}']),
        None => (selector, &['{', ' ']),
    };
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(next))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    anyhow::ensure!(
        !values.is_empty(),
        "the relay exports no metric {selector}:\n{text}"
    );
    Ok(values.iter().sum())
}

/// The samples of metric `name`: (its labels as written between the braces, value).
pub fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            Some((labels.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The sum of every sample whose metric name starts with `prefix` and whose labels
/// include `label` (`worker="0"`, say; "" for all), 0 if there is none: for a family of
/// counters that may grow new members, like `relay_dropped_`.
pub fn prefix_sum(text: &str, prefix: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_samples_are_summed_by_exact_name_or_first_labels() {
        let text = "# HELP relay_send_calls Send syscalls.\n\
                    relay_send_calls_total{worker=\"0\"} 10\n\
                    relay_send_calls_total{worker=\"1\"} 5\n\
                    relay_send_calls_total_other 99\n\
                    relay_sessions 3\n";
        assert_eq!(exported(text, "relay_send_calls_total").unwrap(), 15.0);
        assert_eq!(exported(text, "relay_sessions").unwrap(), 3.0);
        assert_eq!(
            exported(text, r#"relay_send_calls_total{worker="1"}"#).unwrap(),
            5.0
        );
        let missing = exported(text, "relay_missing").unwrap_err().to_string();
        assert!(
            missing.contains("exports no metric relay_missing"),
            "{missing}"
        );
        assert_eq!(prefix_sum(text, "relay_send_calls", "worker=\"0\""), 10.0);
        assert_eq!(prefix_sum(text, "relay_nothing_", ""), 0.0);
    }

    #[test]
    fn metric_samples_keep_their_labels() {
        let text = "# TYPE relay_xdp_packets counter\n\
                    relay_xdp_packets_total{action=\"dropped\",reason=\"unknown_source\"} 42\n\
                    relay_xdp_packets_total{action=\"passed\",reason=\"not_ours\"} 7\n\
                    relay_xdp_packets_total_other 1\n\
                    relay_sessions 3\n";
        assert_eq!(
            samples(text, "relay_xdp_packets_total"),
            vec![
                (
                    "action=\"dropped\",reason=\"unknown_source\"".to_string(),
                    42.0
                ),
                ("action=\"passed\",reason=\"not_ours\"".to_string(), 7.0),
            ]
        );
        assert_eq!(samples(text, "relay_sessions"), vec![(String::new(), 3.0)]);
        assert_eq!(
            exported(text, r#"relay_xdp_packets_total{action="dropped"}"#).unwrap(),
            42.0
        );
    }
}
