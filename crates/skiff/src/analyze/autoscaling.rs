//! Knative capacity settings that contradict each other.

use skiff_api::config::autoscaler::annotations;
use skiff_api::meta::ObjectMeta;
use skiff_api::serving::RevisionSpec;

use super::{Finding, Objects, Severity};

fn check_one(id: String, meta: &ObjectMeta, spec: &RevisionSpec, out: &mut Vec<Finding>) {
    let cc = spec.container_concurrency.unwrap_or(0);
    let Some((key, target)) = annotations::get(&meta.annotations, annotations::TARGET) else {
        return;
    };
    let Ok(t) = target.trim().parse::<f64>() else {
        return;
    };
    if cc > 0 && t > cc as f64 {
        out.push(
            Finding::new(
                Severity::Warning,
                "SK5001",
                id,
                format!("containerConcurrency {cc} is below the autoscaling target {target}"),
            )
            .evidence(format!("{key}: {target:?} asks each instance to run {target} requests at once"))
            .evidence(format!("containerConcurrency {cc} lets an instance take only {cc}: the rest queue, and the autoscaler under-provisions"))
            .fix(format!("set the target to at most {cc} (Knative's default is 70% of containerConcurrency), or raise containerConcurrency")),
        );
    }
}

pub fn check(objs: &Objects, out: &mut Vec<Finding>) {
    for s in &objs.services {
        let t = &s.spec.template;
        check_one(super::id("Service", &s.metadata), &t.metadata, &t.spec, out);
    }
    for c in &objs.configurations {
        let t = &c.spec.template;
        check_one(
            super::id("Configuration", &c.metadata),
            &t.metadata,
            &t.spec,
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn target_above_concurrency() {
        let y = ksvc("hello", 0, 10, "autoscaling.knative.dev/target: '50'");
        let f = find(&y, "SK5001");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].object, "Service default/hello");
        assert!(
            find(
                &ksvc("hello", 0, 10, "autoscaling.knative.dev/target: '7'"),
                "SK5001"
            )
            .is_empty()
        );
        assert!(
            find(
                &ksvc("hello", 0, 0, "autoscaling.knative.dev/target: '500'"),
                "SK5001"
            )
            .is_empty()
        );
    }
}
