//! Prometheus metrics in the text exposition format: requests by route, method and status,
//! request latency histograms by route, and run jobs by status.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use custos_app::JobStatus;

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Escapes a label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts one request.
    pub fn observe(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut m = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.requests
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        let h = m.latency.entry(route.to_string()).or_default();
        let secs = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The exposition text, with the jobs' statuses counted.
    pub fn render(&self, jobs: &[JobStatus]) -> String {
        let m = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        out.push_str(
            "# HELP custos_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE custos_http_requests_total counter\n");
        for ((route, method, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "custos_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                label(route),
                label(method)
            );
        }
        out.push_str(
            "# HELP custos_http_request_duration_seconds HTTP request latency by route.\n",
        );
        out.push_str("# TYPE custos_http_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            let r = label(route);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "custos_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "custos_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "custos_http_request_duration_seconds_sum{{route=\"{r}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "custos_http_request_duration_seconds_count{{route=\"{r}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP custos_jobs Run jobs this server remembers, by status.\n");
        out.push_str("# TYPE custos_jobs gauge\n");
        for s in [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            let n = jobs.iter().filter(|j| **j == s).count();
            let name = serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(out, "custos_jobs{{status=\"{name}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("GET", "/v1/whoami", 200, Duration::from_micros(700));
        m.observe("GET", "/v1/whoami", 200, Duration::from_millis(30));
        m.observe("GET", "/v1/whoami", 401, Duration::from_micros(100));
        let t = m.render(&[
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Succeeded,
        ]);
        assert!(
            t.contains(
                "custos_http_requests_total{route=\"/v1/whoami\",method=\"GET\",status=\"200\"} 2"
            ),
            "{t}"
        );
        assert!(t.contains("status=\"401\"} 1"), "{t}");
        assert!(t.contains("le=\"0.001\"} 2"), "{t}");
        assert!(t.contains("le=\"0.05\"} 3"), "{t}");
        assert!(t.contains("le=\"+Inf\"} 3"), "{t}");
        assert!(t.contains("custos_jobs{status=\"succeeded\"} 2"), "{t}");
        assert!(t.contains("custos_jobs{status=\"running\"} 1"), "{t}");
    }
}
