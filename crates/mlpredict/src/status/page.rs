//! The status page: the [`Status`] as one HTML page, rendered on the
//! server (maud escapes everything it interpolates) and reloaded by the
//! browser every [`REFRESH_SECS`]. No script, no assets.

use std::time::Duration;

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::{BatchRow, Status};

pub const REFRESH_SECS: u32 = 2;

/// What the page shows for a figure this process does not know.
const UNKNOWN: &str = "—";

const STYLE: &str = "
body{font:13px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d232a;background:#f6f7f9}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.4em 0 .5em}
.sub{color:#5b6673}.cards{display:flex;flex-wrap:wrap;gap:.8em}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.6em 1em;min-width:11em}
.card b{display:block;font-size:1.3em}.card span{color:#5b6673}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e6}
th,td{padding:.3em .6em;border-bottom:1px solid #eceef1;text-align:left;white-space:nowrap}
th{background:#eef1f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.phase{border-radius:3px;padding:0 .4em;font-size:.9em}
.planned{background:#e7e9ee}.uploaded{background:#dbe9ff}.submitted{background:#ffe9b8}
.finished{background:#cdeccf}.emitted{background:#eef1f4;color:#5b6673}
.bar{display:inline-block;width:8em;height:.7em;background:#e7e9ee;border-radius:3px;vertical-align:middle;overflow:hidden}
.bar i{display:block;height:100%;background:#3c8dde}
.down{color:#b3261e;font-weight:600}.up{color:#1e7d32;font-weight:600}.err{color:#b3261e}
";

pub fn render(s: &Status) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&s.pipeline))
            body {
                h1 { "pipeline " span #pipeline { (s.pipeline) } }
                div .sub { (s.source) " source · " (s.state) " · " a href="status.json" { "status.json" } }
                (cards(s))
                (batches(s))
                (lanes(s))
                (errors(s))
            }
        }
    }
}

/// The page when the status cannot be read (yet): it keeps refreshing.
pub fn render_error(pipeline: &str, error: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(pipeline))
            body {
                h1 { "pipeline " (pipeline) }
                p .err #error { (error) }
            }
        }
    }
}

/// Reloads itself every [`REFRESH_SECS`].
fn head(pipeline: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta http-equiv="refresh" content=(REFRESH_SECS);
            title { "mlpredict · " (pipeline) }
            style { (PreEscaped(STYLE)) }
        }
    }
}

fn card(value: impl maud::Render, label: &str) -> Markup {
    html! { div .card { b { (value) } span { (label) } } }
}

fn cards(s: &Status) -> Markup {
    let in_flight: Vec<String> = s
        .open_by_phase
        .iter()
        .map(|(phase, n)| format!("{n} {phase}"))
        .collect();
    let r = &s.retries;
    let m = &s.money;
    html! {
        div .cards {
            div .card #inflight {
                b { (s.open_batches()) }
                span { "batches not yet emitted" @if !in_flight.is_empty() { ": " (in_flight.join(", ")) } }
            }
            (card(r.retry_batches, "retry batches"))
            (card(r.retried_records, "records retried"))
            (card(r.resubmissions, "resubmissions"))
            (provider_card(s))
            (card(usd(m.spent_usd), "spent"))
            (card(usd(m.saved_usd), "saved vs per-record"))
            div .card #budget {
                b { (usd(m.budget_usd)) }
                span { "budget" @if let Some(state) = &m.budget_state { " · " (state) } }
            }
        }
    }
}

/// The running process's view of the provider, else what runs reported
/// last (`provider.json`), else nothing known.
fn provider_card(s: &Status) -> Markup {
    let reports = &s.provider_reports;
    let down_since = reports
        .iter()
        .filter_map(|r| r.report.unavailable_since)
        .min();
    html! {
        div .card #provider {
            @if let Some(p) = &s.provider {
                @if p.up { b .up { "up" } } @else { b .down { "down" } }
                span {
                    "provider · " (p.api_calls) " calls, " (p.api_errors) " failed"
                    @if let Some(since) = p.down_since_ms {
                        " · down for " (age(s.at_ms.saturating_sub(since)))
                    }
                }
            } @else if let Some(since) = down_since {
                b .down { "down" }
                span { "provider · down for " (age(s.at_ms.saturating_sub(since))) ", as last reported" }
            } @else if let Some(at) = reports.iter().map(|r| r.report.updated_at).max() {
                b .up { "up" }
                span { "provider · reported " (age(s.at_ms.saturating_sub(at))) " ago" }
            } @else {
                b { (UNKNOWN) }
                span { "provider" }
            }
        }
    }
}

fn batches(s: &Status) -> Markup {
    html! {
        h2 { "Batches" }
        table #batches {
            tr {
                th { "id" } th { "batch_number" } th { "phase" } th { "records" }
                th { "gen" } th { "att" } th { "age" } th { "provider batch" }
                th { "progress" } th { "state / failure" }
            }
            @for b in s.shown_batches(false) { (batch_row(b)) }
        }
        @if s.batches.is_empty() { p .sub { "no batches yet" } }
    }
}

fn batch_row(b: &BatchRow) -> Markup {
    html! {
        tr .batch data-phase=(b.phase) data-number=(b.number) {
            td .n { (b.id) }
            td { (b.number) }
            td { span class={ "phase " (b.phase) } { (b.phase) } }
            td .n { (b.records) }
            td .n { (b.generation) }
            td .n { (b.attempt) }
            td .n { (age(b.age_ms)) }
            td { (b.remote_id.as_deref().unwrap_or("-")) }
            td .progress {
                @match &b.progress {
                    Some(p) => {
                        span .bar title=(p.provider_state) { i style={ "width:" (percent(p.completed + p.failed, p.total)) "%" } {} }
                        " " (p.completed) " / " (p.total)
                        @if p.failed > 0 { ", " (p.failed) " failed" }
                        " · " (p.provider_state)
                    }
                    None => (UNKNOWN),
                }
            }
            td { (b.state.as_deref().unwrap_or("")) }
        }
    }
}

fn lanes(s: &Status) -> Markup {
    html! {
        h2 { "Lanes and watermarks" }
        table #lanes {
            tr { th { "lane" } th { "consumed up to" } }
            @for l in &s.lanes { tr { td .n { (l.lane) } td .n { (l.unit) " " (l.watermark) } } }
        }
        @if !s.sinks.is_empty() {
            h2 { "Outputs" }
            table #sinks {
                tr { th { "output" } th { "bytes committed" } }
                @for k in &s.sinks { tr { td { (k.name) } td .n { (k.bytes) } } }
            }
        }
    }
}

fn errors(s: &Status) -> Markup {
    let api = s.provider.as_ref().map(|p| &p.errors_by_code);
    html! {
        h2 { "Errors by code" }
        @if s.failures_by_code.is_empty() && api.is_none_or(|a| a.is_empty()) {
            p .sub #errors { "none" }
        } @else {
            table #errors {
                tr { th { "where" } th { "code" } th { "count" } }
                @for (code, n) in &s.failures_by_code { tr { td { "batch failed" } td { (code) } td .n { (n) } } }
                @if let Some(api) = api {
                    @for (code, n) in api { tr { td { "API call" } td { (code) } td .n { (n) } } }
                }
            }
        }
    }
}

fn age(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

fn usd(v: Option<f64>) -> String {
    v.map_or_else(|| UNKNOWN.to_owned(), |v| format!("${v:.4}"))
}

fn percent(done: u64, total: u64) -> u64 {
    (done * 100).checked_div(total).unwrap_or(0).min(100)
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;

    #[test]
    fn data_is_escaped_and_unknown_figures_are_a_dash() {
        let mut s = sample();
        s.pipeline = "<script>alert(1)</script>".into();
        s.batches[0].state = Some("bad_request: \"x\" < y & z".into());
        let html = render(&s).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("bad_request: &quot;x&quot; &lt; y &amp; z"),
            "{html}"
        );
        assert!(html.contains("<b>—</b><span>spent</span>"), "{html}");
        assert!(
            html.contains(r#"http-equiv="refresh" content="2""#),
            "{html}"
        );
        assert!(
            html.contains(
                "<td>batch failed</td><td>token_limit_exceeded</td><td class=\"n\">1</td>"
            ),
            "{html}"
        );
        let err = render_error("p", "no state for <p>").into_string();
        assert!(err.contains("no state for &lt;p&gt;"), "{err}");
    }

    #[test]
    fn a_batch_row_shows_phase_and_progress() {
        let mut s = sample();
        s.batches[0].progress = Some(super::super::live::Progress {
            provider_state: "in_progress",
            total: 50,
            completed: 20,
            failed: 5,
        });
        let html = render(&s).into_string();
        assert!(html.contains(r#"data-phase="submitted""#), "{html}");
        assert!(html.contains("width:50%"), "{html}");
        assert!(html.contains(" 20 / 50, 5 failed · in_progress"), "{html}");
    }
}
