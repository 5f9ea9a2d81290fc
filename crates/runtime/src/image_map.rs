//! The image map: how the process runtime runs a container that names an image
//! but no command. A YAML file maps image references to command lines:
//!
//! ```yaml
//! gcr.io/knative-samples/helloworld-go: "{skiff} example hello"
//! registry.example.com/team/api: ["python3", "/srv/api/main.py"]
//! registry.example.com/team/worker:
//!   command: ["/srv/worker/bin/worker"]
//!   args: ["--serve"]          # replaced by the container's args, like CMD
//! ```
//!
//! `{skiff}` stands for the running skiff binary. References match with their
//! tag or digest first, then without.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

/// What an image runs: its ENTRYPOINT (`command`) and CMD (`args`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    pub command: Vec<String>,
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    entries: HashMap<String, Entrypoint>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawEntry {
    Line(String),
    List(Vec<String>),
    Full {
        command: Vec<String>,
        #[serde(default)]
        args: Vec<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ImageMapError {
    #[error("cannot read image map {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("image map {path}: {message}")]
    Invalid { path: String, message: String },
}

/// Images of Knative's docs and samples, served by the examples built into
/// the skiff binary, so the docs' YAML runs unmodified.
const DEFAULT_MAP: &str = r#"
gcr.io/knative-samples/helloworld-go: "{skiff} example hello"
ghcr.io/knative/helloworld-go: "{skiff} example hello"
gcr.io/knative-samples/helloworld: "{skiff} example hello"
docker.io/knative/helloworld-go: "{skiff} example hello"
gcr.io/knative-samples/autoscale-go: "{skiff} example autoscale"
ghcr.io/knative/autoscale-go: "{skiff} example autoscale"
gcr.io/knative-samples/autoscale: "{skiff} example autoscale"
"#;

impl ImageMap {
    /// The built-in map, with `{skiff}` resolved to `skiff_exe`.
    pub fn builtin(skiff_exe: &Path) -> ImageMap {
        Self::parse("<built-in>", DEFAULT_MAP, skiff_exe).expect("the built-in map parses")
    }

    /// Parse a map from YAML text.
    pub fn parse(name: &str, text: &str, skiff_exe: &Path) -> Result<ImageMap, ImageMapError> {
        let invalid = |message: String| ImageMapError::Invalid {
            path: name.to_string(),
            message,
        };
        let raw: HashMap<String, RawEntry> = if text.trim().is_empty() {
            HashMap::new()
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                invalid(format!(
                    "expected a mapping of image reference to command line: {e}"
                ))
            })?
        };
        let exe = skiff_exe.to_string_lossy();
        let subst = |s: &str| s.replace("{skiff}", &exe);
        let mut entries = HashMap::new();
        for (image, entry) in raw {
            let (command, args) = match entry {
                RawEntry::Line(l) => (l.split_whitespace().map(subst).collect(), Vec::new()),
                RawEntry::List(l) => (l.iter().map(|s| subst(s)).collect(), Vec::new()),
                RawEntry::Full { command, args } => (
                    command.iter().map(|s| subst(s)).collect(),
                    args.iter().map(|s| subst(s)).collect(),
                ),
            };
            let command: Vec<String> = command;
            if command.is_empty() {
                return Err(invalid(format!("{image}: empty command")));
            }
            entries.insert(image, Entrypoint { command, args });
        }
        Ok(ImageMap { entries })
    }

    /// Load a map file and lay it over `self` (file entries win).
    pub fn extend_from_file(&mut self, path: &Path, skiff_exe: &Path) -> Result<(), ImageMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImageMapError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let other = Self::parse(&path.display().to_string(), &text, skiff_exe)?;
        self.entries.extend(other.entries);
        Ok(())
    }

    /// The entrypoint for `image`: exact reference first, then without its
    /// digest and tag.
    pub fn lookup(&self, image: &str) -> Option<&Entrypoint> {
        self.entries
            .get(image)
            .or_else(|| self.entries.get(repository(image)))
    }
}

/// `registry/path/name` without `:tag` or `@digest`.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].find(':') {
        Some(i) => &image[..name_start + i],
        None => image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_strips_tag_and_digest() {
        assert_eq!(
            repository("ghcr.io/knative/helloworld-go:latest"),
            "ghcr.io/knative/helloworld-go"
        );
        assert_eq!(
            repository("localhost:5000/app@sha256:abc"),
            "localhost:5000/app"
        );
        assert_eq!(repository("localhost:5000/app"), "localhost:5000/app");
    }

    #[test]
    fn builtin_map_runs_the_knative_samples() {
        let m = ImageMap::builtin(Path::new("/usr/bin/skiff"));
        let e = m.lookup("ghcr.io/knative/helloworld-go:latest").unwrap();
        assert_eq!(e.command, ["/usr/bin/skiff", "example", "hello"]);
        assert!(m.lookup("docker.io/unknown/app").is_none());
    }

    #[test]
    fn all_three_entry_forms() {
        let m = ImageMap::parse(
            "t",
            "a: x y\nb: [p, q]\nc: {command: [r], args: [s]}\n",
            Path::new("/s"),
        )
        .unwrap();
        assert_eq!(m.lookup("a").unwrap().command, ["x", "y"]);
        assert_eq!(m.lookup("b:1").unwrap().command, ["p", "q"]);
        assert_eq!(m.lookup("c").unwrap().args, ["s"]);
        assert!(ImageMap::parse("t", "a: []\n", Path::new("/s")).is_err());
        assert!(ImageMap::parse("t", "- a\n", Path::new("/s")).is_err());
    }
}
