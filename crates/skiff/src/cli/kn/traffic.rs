//! kn's `--traffic` and `--tag` / `--untag` arithmetic on a Service's
//! traffic (knative/client pkg/traffic compute.go): tags first, then the new
//! percentages (`REV=PCT`, `TAG=PCT`, `@latest=PCT`), targets left with no
//! tag and 0% dropped. The percentages must sum to 100; when they do not,
//! the one existing target not mentioned gets the rest.

use skiff_api::serving::TrafficTarget;

const LATEST: &str = "@latest";

fn split(pair: &str) -> anyhow::Result<(String, String)> {
    let parts: Vec<&str> = pair.split('=').collect();
    match parts.as_slice() {
        [v] => Ok((LATEST.to_string(), v.to_string())),
        [k, v] if !k.is_empty() && !v.is_empty() => {
            Ok((k.to_string(), v.trim_end_matches('%').to_string()))
        }
        _ => anyhow::bail!("expecting the value format in value1=value2, given {pair}"),
    }
}

fn target(tag: Option<String>, revision: Option<String>, percent: i64) -> TrafficTarget {
    TrafficTarget {
        latest_revision: Some(revision.is_none()),
        revision_name: revision,
        tag,
        percent: Some(percent),
        ..Default::default()
    }
}

/// The new traffic of a Service whose spec traffic is `current`.
pub fn compute(
    current: &[TrafficTarget],
    traffic: &[String],
    tags: &[String],
    untags: &[String],
) -> anyhow::Result<Vec<TrafficTarget>> {
    let mut t: Vec<TrafficTarget> = current.to_vec();
    let is_latest = |x: &TrafficTarget| x.latest_revision == Some(true);
    let tag_of = |x: &TrafficTarget| x.tag.clone().filter(|s| !s.is_empty());
    let mut missing = Vec::new();
    for u in untags {
        match t.iter_mut().find(|x| x.tag.as_deref() == Some(u.as_str())) {
            Some(x) => x.tag = None,
            None => missing.push(u.clone()),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "tag(s) {} not present for any revisions of the service",
            missing.join(", ")
        );
    }
    let mut latest_tagged = false;
    for pair in tags {
        let (rev, tag) = split(pair)?;
        if rev == LATEST {
            if latest_tagged {
                anyhow::bail!(
                    "repetition of identifier @latest is not allowed, use only once with --tag flag"
                );
            }
            latest_tagged = true;
            let existing = t.iter().find(|x| is_latest(x)).and_then(tag_of);
            if existing.as_deref() == Some(tag.as_str()) {
                continue;
            }
            if t.iter().any(|x| x.tag.as_deref() == Some(tag.as_str())) {
                anyhow::bail!(
                    "refusing to overwrite existing tag in service, add flag '--untag {tag}' in command to untag it"
                );
            }
            match (existing, t.iter_mut().find(|x| is_latest(x))) {
                (Some(e), _) => anyhow::bail!(
                    "tag '{e}' exists on latest ready revision of service, refusing to overwrite existing tag with '{tag}', add flag '--untag {e}' in command to untag it"
                ),
                (None, Some(x)) => x.tag = Some(tag),
                (None, None) => t.push(target(Some(tag), None, 0)),
            }
            continue;
        }
        if t.iter().any(|x| {
            x.tag.as_deref() == Some(tag.as_str())
                && x.revision_name.as_deref() == Some(rev.as_str())
        }) {
            continue;
        }
        if t.iter().any(|x| x.tag.as_deref() == Some(tag.as_str())) {
            anyhow::bail!(
                "refusing to overwrite existing tag in service, add flag '--untag {tag}' in command to untag it"
            );
        }
        match t
            .iter_mut()
            .find(|x| x.revision_name.as_deref() == Some(rev.as_str()) && tag_of(x).is_none())
        {
            Some(x) => x.tag = Some(tag),
            None => t.push(target(Some(tag), Some(rev), 0)),
        }
    }
    if !traffic.is_empty() {
        let mut refs: Vec<(String, i64)> = Vec::new();
        for pair in traffic {
            let (r, p) = split(pair)?;
            if refs.iter().any(|(x, _)| *x == r) {
                let what = if r == LATEST {
                    "identifier @latest".to_string()
                } else {
                    format!("revision reference {r}")
                };
                anyhow::bail!(
                    "repetition of {what} is not allowed, use only once with --traffic flag"
                );
            }
            let pct: i64 = p.parse().map_err(|_| {
                anyhow::anyhow!(
                    "error converting given {p} to integer value for traffic distribution"
                )
            })?;
            if !(0..=100).contains(&pct) {
                anyhow::bail!(
                    "invalid value for traffic percent {pct}, expected 0 <= percent <= 100"
                );
            }
            refs.push((r, pct));
        }
        let sum: i64 = refs.iter().map(|(_, p)| p).sum();
        if sum > 100 {
            anyhow::bail!("given traffic percents sum to {sum}, want <=100");
        }
        if sum < 100 {
            // The one target not mentioned gets the rest.
            let unmentioned: Vec<String> = t
                .iter()
                .filter(|x| {
                    let name = if is_latest(x) {
                        LATEST.to_string()
                    } else {
                        x.revision_name.clone().unwrap_or_default()
                    };
                    !refs
                        .iter()
                        .any(|(r, _)| *r == name || Some(r) == x.tag.as_ref())
                })
                .map(|x| {
                    if is_latest(x) {
                        LATEST.to_string()
                    } else {
                        x.revision_name.clone().unwrap_or_default()
                    }
                })
                .collect();
            match unmentioned.as_slice() {
                [one] => refs.push((one.clone(), 100 - sum)),
                _ => anyhow::bail!(
                    "unable to allocate the remaining traffic: {}%. Reason: incorrect number of revisions specified. Only 1 revision should be missing",
                    100 - sum
                ),
            }
        }
        for x in t.iter_mut() {
            x.percent = Some(0);
        }
        for (r, pct) in refs {
            if r == LATEST {
                match t.iter_mut().find(|x| is_latest(x)) {
                    Some(x) => x.percent = Some(pct),
                    None => t.push(target(None, None, pct)),
                }
            } else if let Some(x) = t.iter_mut().find(|x| x.tag.as_deref() == Some(r.as_str())) {
                x.percent = Some(pct);
            } else if let Some(x) = t
                .iter_mut()
                .find(|x| x.revision_name.as_deref() == Some(r.as_str()))
            {
                x.percent = Some(pct);
            } else {
                t.push(target(None, Some(r), pct));
            }
        }
    }
    Ok(t.into_iter()
        .filter(|x| x.tag.as_deref().is_some_and(|s| !s.is_empty()) || x.percent.unwrap_or(0) != 0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(pct: i64) -> TrafficTarget {
        target(None, None, pct)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn splits_and_tags() {
        let t = compute(
            &[latest(100)],
            &s(&["hello-00001=50", "@latest=50"]),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].latest_revision, Some(true));
        assert_eq!(t[0].percent, Some(50));
        assert_eq!(t[1].revision_name.as_deref(), Some("hello-00001"));
        assert_eq!(t[1].latest_revision, Some(false));
        // The unmentioned target gets the rest.
        let t2 = compute(&t, &s(&["hello-00001=10"]), &[], &[]).unwrap();
        assert_eq!(t2[0].percent, Some(90));
        // A tag at 0% stays; an untagged 0% target goes.
        let t3 = compute(&t2, &s(&["@latest=100"]), &s(&["hello-00001=old"]), &[]).unwrap();
        assert_eq!(t3.len(), 2);
        assert_eq!(t3[1].tag.as_deref(), Some("old"));
        assert_eq!(t3[1].percent, Some(0));
        let t4 = compute(&t3, &[], &[], &s(&["old"])).unwrap();
        assert_eq!(t4.len(), 1);
        assert!(
            compute(&[latest(100)], &s(&["a=60", "b=60"]), &[], &[])
                .unwrap_err()
                .to_string()
                .contains("sum to 120")
        );
        assert!(compute(&[latest(100)], &[], &[], &s(&["nope"])).is_err());
    }
}
