//! `skiff autoscaler decide` (replay the KPA decider on JSON) and
//! `skiff autoscaler simulate` (what the KPA would do with a load trace).
//! Both run offline: no server is needed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use skiff_api::config::AutoscalerConfig;
use skiff_autoscaler::replay;
use skiff_autoscaler::simulate::{Row, Simulation};
use skiff_autoscaler::{RevisionSettings, ScalingMetric};

use super::SimulateArgs;
use crate::table;

/// Read the replay input on stdin, print one result per step as JSON.
pub fn decide() -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the decider input from stdin")?;
    let input: replay::Input =
        serde_json::from_str(&text).context("the input is not a valid decide document")?;
    let out = replay::run(&input).map_err(anyhow::Error::msg)?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// Per-second samples from a CSV file: `value` or `t_s,value` per line; a
/// header line and `#` comments are skipped; missing seconds are zero.
pub fn parse_trace(text: &str) -> anyhow::Result<Vec<f64>> {
    let mut samples: Vec<f64> = Vec::new();
    let mut next = 0usize;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let nums: Option<Vec<f64>> = fields.iter().map(|f| f.parse::<f64>().ok()).collect();
        let Some(nums) = nums else {
            if i == 0 || samples.is_empty() {
                continue; // a header
            }
            anyhow::bail!("line {}: {line:?} is not `value` or `t_s,value`", i + 1);
        };
        let (at, v) = match nums.as_slice() {
            [v] => (next, *v),
            [t, v, ..] if t.is_finite() && *t >= 0.0 => (*t as usize, *v),
            _ => anyhow::bail!("line {}: {line:?} is not `value` or `t_s,value`", i + 1),
        };
        if !v.is_finite() || v < 0.0 {
            anyhow::bail!("line {}: the load must be a non-negative number", i + 1);
        }
        if at > 86_400 * 7 {
            anyhow::bail!("line {}: traces are limited to a week", i + 1);
        }
        if samples.len() <= at {
            samples.resize(at + 1, 0.0);
        }
        samples[at] = v;
        next = at + 1;
    }
    if samples.is_empty() {
        anyhow::bail!("the trace has no samples");
    }
    Ok(samples)
}

/// Annotations and containerConcurrency of the first Service,
/// Configuration or Revision in a manifest.
fn revision_template(
    text: &str,
    source: &str,
) -> anyhow::Result<(BTreeMap<String, String>, Option<i64>)> {
    let docs = skiff_api::parse::parse_values(source, text)?;
    for d in docs {
        let (meta, spec) = match d["kind"].as_str() {
            Some("Service") | Some("Configuration") => (
                &d["spec"]["template"]["metadata"],
                &d["spec"]["template"]["spec"],
            ),
            Some("Revision") => (&d["metadata"], &d["spec"]),
            _ => continue,
        };
        let annotations = meta["annotations"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| match v {
                        Value::String(s) => Some((k.clone(), s.clone())),
                        Value::Number(n) => Some((k.clone(), n.to_string())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Ok((annotations, spec["containerConcurrency"].as_i64()));
    }
    anyhow::bail!("{source}: no Service, Configuration or Revision found")
}

pub fn simulate(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let trace = std::fs::read_to_string(&args.trace)
        .with_context(|| format!("reading {}", args.trace.display()))?;
    let samples = parse_trace(&trace).with_context(|| format!("in {}", args.trace.display()))?;
    let (annotations, cc) = match &args.filename {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            revision_template(&text, &f.display().to_string())?
        }
        None => (BTreeMap::new(), None),
    };
    let config = AutoscalerConfig::default();
    let settings = RevisionSettings::resolve(&config, &annotations, cc);
    let tail = args.tail_seconds.map(Duration::from_secs).unwrap_or(
        settings.stable_window
            + settings
                .scale_to_zero_grace_period
                .max(settings.scale_to_zero_pod_retention)
            + Duration::from_secs(10),
    );
    let sim = Simulation {
        settings: settings.clone(),
        startup: Duration::from_secs_f64(args.startup_seconds.max(0.0)),
        tail,
    };
    let rows = sim.run(&samples);
    println!(
        "metric {} | target {:.2} per instance | window {}s, panic window {}s, panic at {:.0}% | \
         min {} max {} | burst capacity {}",
        settings.metric.as_str(),
        settings.target,
        settings.stable_window.as_secs(),
        settings.panic_window.as_secs(),
        settings.panic_threshold * 100.0,
        settings.min_scale,
        if settings.max_scale == 0 {
            "unlimited".to_string()
        } else {
            settings.max_scale.to_string()
        },
        settings.target_burst_capacity
    );
    let headers = [
        "TIME",
        "LOAD",
        "STABLE",
        "PANIC",
        "DECIDED",
        "INSTANCES",
        "READY",
        "PANICKING",
        "ACTIVATOR",
        "EBC",
        "REASON",
    ];
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!("{}s", r.t_s),
                format!("{:.2}", r.load),
                f(r.stable),
                f(r.panic),
                r.decided.to_string(),
                r.instances.to_string(),
                r.ready.to_string(),
                if r.panicking { "yes" } else { "no" }.to_string(),
                if r.activator_in_path {
                    "in path"
                } else {
                    "out"
                }
                .to_string(),
                r.excess_burst_capacity.to_string(),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", table::render(&headers, &body));
    if let Some(out) = &args.svg {
        std::fs::write(out, svg(&rows, settings.metric))
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("chart written to {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A line chart: load (left axis) and instances wanted / ready (right
/// axis) over time, panic and activator periods shaded.
pub fn svg(rows: &[Row], metric: ScalingMetric) -> String {
    let (w, h, left, right, top, bottom) = (960.0, 420.0, 60.0, 60.0, 30.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let t_max = rows.last().map_or(1.0, |r| r.t_s).max(1.0);
    let load_max = rows.iter().map(|r| r.load).fold(1.0, f64::max);
    let pods_max = rows
        .iter()
        .map(|r| r.instances.max(r.ready) as f64)
        .fold(1.0, f64::max);
    let x = |t: f64| left + t / t_max * pw;
    let yl = |v: f64| top + ph - v / load_max * ph;
    let yp = |v: f64| top + ph - v / pods_max * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="white"/>
"#
    );
    // Shading: panic mode (red), activator in path (grey).
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.activator_in_path {
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{ph}" fill="#eeeeee"/>"##,
                x(a.t_s),
                x(b.t_s) - x(a.t_s)
            );
        }
        if a.panicking {
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="8" fill="#f4a6a6"/>"##,
                x(a.t_s),
                x(b.t_s) - x(a.t_s)
            );
        }
    }
    let poly = |pts: Vec<(f64, f64)>, color: &str, dash: &str| {
        let p: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        format!(
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" {dash} points="{}"/>
"#,
            p.join(" ")
        )
    };
    s.push_str(&poly(
        rows.iter().map(|r| (x(r.t_s), yl(r.load))).collect(),
        "#1f77b4",
        "",
    ));
    // Steps for instance counts.
    let steps = |f: &dyn Fn(&Row) -> f64| {
        let mut pts = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                pts.push((x(r.t_s), yp(f(&rows[i - 1]))));
            }
            pts.push((x(r.t_s), yp(f(r))));
        }
        pts
    };
    s.push_str(&poly(steps(&|r| r.instances as f64), "#d62728", ""));
    s.push_str(&poly(
        steps(&|r| r.ready as f64),
        "#2ca02c",
        r#"stroke-dasharray="6 4""#,
    ));
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="black"/>
<line x1="{r}" y1="{top}" x2="{r}" y2="{b}" stroke="black"/>
<text x="{left}" y="{lb}" >0s</text><text x="{r}" y="{lb}" text-anchor="end">{t_max:.0}s</text>
<text x="{lx}" y="{top}" text-anchor="end" fill="#1f77b4">{load_max:.0}</text>
<text x="{rx}" y="{top}" fill="#d62728">{pods_max:.0}</text>
<text x="{left}" y="18" fill="#1f77b4">load ({metric})</text>
<text x="{mid}" y="18" fill="#d62728">instances wanted</text>
<text x="{mid2}" y="18" fill="#2ca02c">ready</text>
<text x="{mid3}" y="18" fill="#999999">grey: activator in path, red band: panic</text>
</svg>
"##,
        b = top + ph,
        r = left + pw,
        lb = top + ph + 18.0,
        lx = left - 4.0,
        rx = left + pw + 4.0,
        metric = metric.as_str(),
        mid = left + 180.0,
        mid2 = left + 320.0,
        mid3 = left + 400.0,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces() {
        assert_eq!(
            parse_trace("load\n1\n2\n\n# note\n3\n").unwrap(),
            [1.0, 2.0, 3.0]
        );
        assert_eq!(
            parse_trace("t,c\n0,1\n3,4\n").unwrap(),
            [1.0, 0.0, 0.0, 4.0]
        );
        assert!(parse_trace("1\nx\n").is_err());
        assert!(parse_trace("-1\n").is_err());
        assert!(parse_trace("").is_err());
    }

    #[test]
    fn service_annotations_are_read() {
        let (a, cc) = revision_template(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: x}\nspec:\n  template:\n    metadata:\n      annotations:\n        autoscaling.knative.dev/target: \"5\"\n    spec:\n      containerConcurrency: 10\n      containers: [{image: x}]\n",
            "svc.yaml",
        )
        .unwrap();
        assert_eq!(a["autoscaling.knative.dev/target"], "5");
        assert_eq!(cc, Some(10));
    }
}
