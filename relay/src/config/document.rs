//! The config as its file writes it, for the control API's changes. MediaMTX's API
//! patches keys (`PATCH /v3/config/paths/patch/cam` with `{"maxReaders": 2}` sets one
//! key of one path, and what the path inherits from pathDefaults stays inherited), so
//! the changes are made to the file's keys and the whole is then checked again like a
//! file: a change is accepted exactly when a file with it would load.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use serde_yaml_ng::{Mapping, Value};

use super::{Config, ConfigError, NotRun, Overrides, RawConfig};

/// A config file's keys as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Document(Mapping);

/// A change the control API asks for; the maps are JSON objects of MediaMTX's keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// `config/global/patch`: these top-level keys.
    Global(Map<String, Json>),
    /// `config/pathdefaults/patch`: these keys of `pathDefaults`.
    PathDefaults(Map<String, Json>),
    /// `config/paths/add/NAME`: a new path.
    AddPath(String, Map<String, Json>),
    /// `config/paths/patch/NAME`: these keys of a path.
    PatchPath(String, Map<String, Json>),
    /// `config/paths/replace/NAME`: the path with only these keys (made if missing).
    ReplacePath(String, Map<String, Json>),
    /// `config/paths/delete/NAME`.
    DeletePath(String),
}

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("path configuration '{0}' not found")]
    NoPath(String),
    #[error("path '{0}' already exists")]
    PathExists(String),
    #[error("{0} cannot be changed with config/global/patch: use config/paths/... or config/pathdefaults/patch")]
    NotGlobal(&'static str),
    /// Keys read only at start: the API does not pretend to change them.
    #[error("{} {} read only when relay starts: change {} in the config file and restart relay", .0.join(", "), if .0.len() == 1 { "is" } else { "are" }, if .0.len() == 1 { "it" } else { "them" })]
    NeedsRestart(Vec<String>),
    /// The config with the change would not load.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl Document {
    /// A file's text. An empty one (or only comments) has no keys: the defaults.
    pub fn parse(text: &str) -> Result<Document, ConfigError> {
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Document(Mapping::new()));
        }
        let mut value: Value = serde_yaml_ng::from_str(text)?;
        // `<<: *defaults` as the typed read sees it.
        value.apply_merge()?;
        if !untagged(&value) {
            return Err(ConfigError::Yaml(serde::de::Error::custom(
                "a config file has no use for YAML tags (!name): remove them",
            )));
        }
        let Value::Mapping(mut keys) = value else {
            return Err(ConfigError::Yaml(serde::de::Error::custom(
                "a config file is a map of keys (key: value), not a single value or a list",
            )));
        };
        if let Some(Value::Mapping(paths)) = keys.get_mut("paths") {
            let names: PathNames = serde_yaml_ng::from_str(text)?;
            if names.paths.len() == paths.len() {
                *paths = std::mem::take(paths)
                    .into_iter()
                    .zip(names.paths)
                    .map(|((_, path), name)| (name.into(), path))
                    .collect();
            }
        }
        Ok(Document(keys))
    }

    /// What relay runs without a file: one path, `demo`.
    pub fn demo() -> Document {
        match serde_yaml_ng::to_value(RawConfig::demo()) {
            Ok(Value::Mapping(keys)) => Document(keys),
            other => unreachable!("a config writes a map, not {other:?}"),
        }
    }

    /// Checks the document as a file, with `overrides` in place of its keys.
    pub fn check(&self, overrides: &Overrides) -> Result<(Config, NotRun), ConfigError> {
        let text = serde_yaml_ng::to_string(&self.0)?;
        Config::read(Some(&text), overrides)
    }

    /// The document with `edit` made, if the result loads (with `overrides`), and its
    /// config.
    pub fn edited(
        &self,
        edit: Edit,
        overrides: &Overrides,
    ) -> Result<(Document, Config), EditError> {
        let mut doc = self.clone();
        match edit {
            Edit::Global(keys) => {
                for key in ["paths", "pathDefaults"] {
                    if keys.contains_key(key) {
                        return Err(EditError::NotGlobal(key));
                    }
                }
                merge(&mut doc.0, keys);
            }
            Edit::PathDefaults(keys) => merge(doc.section("pathDefaults"), keys),
            Edit::AddPath(name, keys) => {
                let paths = doc.section("paths");
                if paths.contains_key(name.as_str()) {
                    return Err(EditError::PathExists(name));
                }
                let mut path = Mapping::new();
                merge(&mut path, keys);
                paths.insert(name.into(), path.into());
            }
            Edit::PatchPath(name, keys) => {
                let path = doc
                    .section("paths")
                    .get_mut(name.as_str())
                    .ok_or(EditError::NoPath(name))?;
                // `cam:` with nothing after it is a path with no keys of its own.
                if !path.is_mapping() {
                    *path = Mapping::new().into();
                }
                let Value::Mapping(path) = path else {
                    unreachable!("made a map above")
                };
                merge(path, keys);
            }
            Edit::ReplacePath(name, keys) => {
                let mut path = Mapping::new();
                merge(&mut path, keys);
                doc.section("paths").insert(name.into(), path.into());
            }
            Edit::DeletePath(name) => {
                doc.section("paths")
                    .remove(name.as_str())
                    .ok_or(EditError::NoPath(name))?;
            }
        }
        let (config, _) = doc.check(overrides)?;
        Ok((doc, config))
    }

    /// The map under top-level `key`, made if missing or empty.
    fn section(&mut self, key: &str) -> &mut Mapping {
        let value = self.0.entry(key.into()).or_insert(Value::Null);
        if !value.is_mapping() {
            *value = Mapping::new().into();
        }
        match value {
            Value::Mapping(map) => map,
            _ => unreachable!("made a map above"),
        }
    }
}

/// The path names of a file as the typed read takes them (text, in the file's order). A
/// YAML value takes `01` or `.5` for a number, which would rename the path when written
/// back, and the API would not find it by its name.
#[derive(Deserialize)]
struct PathNames {
    #[serde(default, deserialize_with = "names")]
    paths: Vec<String>,
}

fn names<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    struct Names;
    impl<'de> Visitor<'de> for Names {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of paths")
        }
        fn visit_unit<E>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = map.next_key()? {
                map.next_value::<IgnoredAny>()?;
                names.push(name);
            }
            Ok(names)
        }
    }
    de.deserialize_any(Names)
}

/// Whether `value` has no tag (`!name`) anywhere. The typed read and this document read a
/// tagged value differently (an empty `!name` is "" to one and null to the other), so
/// the API's changes would check a config other than the one that runs.
fn untagged(value: &Value) -> bool {
    match value {
        Value::Tagged(_) => false,
        Value::Sequence(items) => items.iter().all(untagged),
        Value::Mapping(keys) => keys.iter().all(|(k, v)| untagged(k) && untagged(v)),
        _ => true,
    }
}

/// Sets `keys` in `into`. A `null` is no change, as in MediaMTX's patches, and `name`
/// is the path's, which the URL gives.
fn merge(into: &mut Mapping, keys: Map<String, Json>) {
    for (key, value) in keys {
        if value.is_null() || key == "name" {
            continue;
        }
        let value = serde_yaml_ng::to_value(value).expect("JSON is YAML");
        into.insert(key.into(), value);
    }
}
