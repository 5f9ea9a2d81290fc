//! `skiff validate -f FILE|DIR|-`: Knative's admission offline, with no
//! server. Knative ConfigMaps in the input (namespace knative-serving) are
//! validated too and configure the other documents; then each document is
//! defaulted and validated as `skiff apply` would, including whether this
//! machine's process runtime can run it (built-in image map, or
//! `--image-map`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use skiff_api::admission::{self, Denied, Request};
use skiff_api::config::{self, ClusterConfig, SYSTEM_NAMESPACE};
use skiff_api::core::ConfigMap;
use skiff_api::parse::{self, Document, ManifestError};
use skiff_api::serving::{Configuration, Revision, Service};
use skiff_api::{DynamicObject, FieldError};
use skiff_runtime::image_map::ImageMap;
use skiff_runtime::workload;

use super::apply::{identity, sources};
use super::{Output, ValidateArgs, to_yaml};

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe()?;
    let mut images = ImageMap::builtin(&exe);
    if let Some(path) = &args.image_map {
        images.extend_from_file(path, &exe)?;
    }
    let mut invalid = 0usize;
    let mut docs: Vec<(String, Document)> = Vec::new();
    for (name, text) in sources(&args.files, args.recursive)? {
        match parse::parse_manifest(&name, &text, &args.namespace) {
            Ok(d) => docs.extend(d.into_iter().map(|d| (name.clone(), d))),
            Err(e) => {
                eprintln!("error: {e}");
                invalid += match &e {
                    ManifestError::Documents { errors, .. } => errors.len(),
                    ManifestError::Syntax(_) => 1,
                };
            }
        }
    }
    let config = input_config(&docs);
    let req = Request {
        config: &config,
        user: None,
    };
    let mut valid: Vec<DynamicObject> = Vec::new();
    for (source, d) in &docs {
        match check(&d.object, &req, &images) {
            Ok((obj, warnings)) => {
                for w in warnings {
                    eprintln!(
                        "Warning: {source}: document {} ({}): {w}",
                        d.index,
                        identity(d)
                    );
                }
                if args.output.is_none() {
                    println!("{} is valid", display_name(&obj));
                }
                valid.push(obj);
            }
            Err(e) => {
                invalid += 1;
                eprintln!(
                    "error: {source}: document {} ({}): validation failed: {e}",
                    d.index,
                    identity(d)
                );
            }
        }
    }
    match args.output {
        Some(Output::Yaml) => {
            for o in &valid {
                print!("---\n{}", to_yaml(&serde_json::to_value(o)?)?);
            }
        }
        Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&valid)?),
        None => {}
    }
    if invalid > 0 {
        eprintln!(
            "{invalid} invalid document{}",
            if invalid == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `service.serving.knative.dev/hello`, kubectl's way of naming an object.
fn display_name(o: &DynamicObject) -> String {
    let group = o.api_version.split_once('/').map_or("", |(g, _)| g);
    let kind = o.kind.to_ascii_lowercase();
    let name = if o.metadata.name.is_empty() {
        format!("{}*", o.metadata.generate_name.as_deref().unwrap_or(""))
    } else {
        o.metadata.name.clone()
    };
    if group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{group}/{name}")
    }
}

/// The configuration the input's own Knative ConfigMaps make (those that
/// parse; the others are reported as invalid documents).
fn input_config(docs: &[(String, Document)]) -> ClusterConfig {
    let mut maps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (_, d) in docs {
        let o = &d.object;
        if o.kind != "ConfigMap" || o.metadata.namespace != SYSTEM_NAMESPACE {
            continue;
        }
        let Ok(cm) = o.to_typed::<ConfigMap>() else {
            continue;
        };
        if config::validate_configmap(&cm.metadata.name, &cm.data, &cm.metadata.annotations).is_ok()
        {
            maps.insert(cm.metadata.name.clone(), cm.data);
        }
    }
    ClusterConfig::from_configmaps(&maps).unwrap_or_default()
}

fn check(
    obj: &DynamicObject,
    req: &Request<'_>,
    images: &ImageMap,
) -> Result<(DynamicObject, Vec<String>), Denied> {
    let mut admitted = admission::admit(obj, None, req)?;
    // Istio kinds and Secrets, as the server checks them.
    admitted.object = skiff_api::istio::admit(&admitted.object)?;
    admitted.object = skiff_api::secret::admit(&admitted.object, None)?;
    let o = &admitted.object;
    let spec = |v: Result<_, skiff_api::object::TypedError>| {
        v.map_err(|e: skiff_api::object::TypedError| {
            Denied::Fields(FieldError::new(e.message, &[e.path.as_str()]))
        })
    };
    let runnable = match o.kind.as_str() {
        "Service" => spec(o.to_typed::<Service>().map(|s| s.spec.template.spec))
            .map(|s| workload::check(&s, images).via_field("spec.template.spec"))?,
        "Configuration" => spec(o.to_typed::<Configuration>().map(|c| c.spec.template.spec))
            .map(|s| workload::check(&s, images).via_field("spec.template.spec"))?,
        "Revision" => spec(o.to_typed::<Revision>().map(|r| r.spec))
            .map(|s| workload::check(&s, images).via_field("spec"))?,
        _ => FieldError::default(),
    };
    if runnable.has_errors() {
        return Err(Denied::Fields(runnable));
    }
    Ok((admitted.object, admitted.warnings))
}
