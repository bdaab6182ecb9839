//! The config as users write it: a file (`config_yaml`) and the control API's changes
//! to it (`api_bodies`).

use std::sync::OnceLock;

use crate::api::{config_json, keys, path_confs, REDACTED};
use crate::config::{Config, Document, Edit, EditError, Overrides};

use super::records;

/// A config file's text (relay's or MediaMTX's keys). One that loads is the document
/// the API edits, checked again to the same config, and the config relay writes out
/// (`to_yaml`) loads back to the same config.
pub fn config_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let overrides = Overrides::default();
    let Ok(loaded) = Config::load_text(text.to_owned(), &overrides) else {
        return;
    };
    let (again, _) = loaded
        .document
        .check(&overrides)
        .expect("the file's keys load");
    assert_eq!(again, loaded.config);
    round_trips(&loaded.config);
}

/// Path names the edits name: one of relay.yml's examples, a pattern, and others.
const NAMES: [&str; 4] = ["cam", "~^live/(.+)$", "all_others", "a/b"];

/// Changes through the API to relay.yml, one after another: records of an op byte
/// (bits 0-2 the route: global, path defaults, add, patch, replace, delete; 3-4 the path
/// name of [`NAMES`]) and the request's body.
///
/// A body the API reads as keys gives a change that is kept only if the config with it
/// loads; then the config writes out and loads back the same, the API shows it with
/// every password redacted and a path it added (not one it deleted), and making the
/// same change again gives the same config (adding or deleting twice is refused).
pub fn api_bodies(data: &[u8]) {
    static RELAY_YML: OnceLock<Document> = OnceLock::new();
    let mut document = RELAY_YML
        .get_or_init(|| {
            let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../relay.yml"));
            Document::parse(text).expect("relay.yml parses")
        })
        .clone();
    let overrides = Overrides::default();
    for (op, body) in records(data) {
        let Ok(keys) = keys(body) else {
            continue;
        };
        let name = NAMES[usize::from(op >> 3 & 3)].to_owned();
        let edit = match op & 7 {
            0 => Edit::Global(keys),
            1 => Edit::PathDefaults(keys),
            2 => Edit::AddPath(name.clone(), keys),
            3 => Edit::PatchPath(name.clone(), keys),
            4 => Edit::ReplacePath(name.clone(), keys),
            _ => Edit::DeletePath(name.clone()),
        };
        let Ok((edited, config)) = document.edited(edit.clone(), &overrides) else {
            continue;
        };
        round_trips(&config);
        let shown = config_json(&config);
        if let Some(serde_json::Value::Array(users)) = shown.get("authInternalUsers") {
            for pass in users.iter().filter_map(|u| u.get("pass")?.as_str()) {
                assert!(
                    pass.is_empty() || pass == REDACTED,
                    "a password shown: {pass}"
                );
            }
        }
        let listed = path_confs(&config)
            .iter()
            .any(|conf| conf["name"] == name.as_str());
        let again = edited.edited(edit.clone(), &overrides);
        match edit {
            Edit::AddPath(..) => {
                assert!(listed, "{name} added");
                assert!(matches!(again, Err(EditError::PathExists(_))));
            }
            Edit::DeletePath(_) => {
                assert!(!listed, "{name} deleted");
                assert!(matches!(again, Err(EditError::NoPath(_))));
            }
            _ => assert_eq!(again.expect("the same change again").1, config),
        }
        document = edited;
    }
}

/// The config relay writes out (`to_yaml`) loads back to the same config.
fn round_trips(config: &Config) {
    let yaml = config.to_yaml();
    let back = Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(&back, config, "{yaml}");
}
