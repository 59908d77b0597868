//! Secret values for the local runtime, where there is no API server.
//!
//! A YAML file maps Secret names to keys to values (`--secrets`):
//!
//! ```yaml
//! warehouse:
//!   url: postgres://postgres@127.0.0.1:5432/shopstream
//! ```
//!
//! and environment variables override it: `SHOPSTREAM_SECRET_<NAME>_<KEY>`,
//! upper-cased, with every other character than a letter or digit as `_`
//! (e.g. `SHOPSTREAM_SECRET_WAREHOUSE_URL`).

use std::collections::BTreeMap;
use std::path::Path;

use super::LocalError;

#[derive(Debug, Default, Clone)]
pub struct SecretStore {
    file: BTreeMap<String, BTreeMap<String, String>>,
}

/// The environment variable that holds `key` of Secret `name`.
pub fn env_name(name: &str, key: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("SHOPSTREAM_SECRET_{}_{}", clean(name), clean(key))
}

impl SecretStore {
    pub fn load(path: Option<&Path>) -> Result<Self, LocalError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let shown = || path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LocalError::SecretsRead {
            path: shown(),
            source,
        })?;
        let file = serde_yaml::from_str(&text).map_err(|source| LocalError::SecretsParse {
            path: shown(),
            source,
        })?;
        Ok(Self { file })
    }

    pub fn from_map(file: BTreeMap<String, BTreeMap<String, String>>) -> Self {
        Self { file }
    }

    /// The value of `key` in Secret `name`: env first, then the file.
    pub fn get(&self, name: &str, key: &str) -> Result<String, LocalError> {
        self.lookup(name, key, |v| std::env::var(v).ok())
    }

    fn lookup(
        &self,
        name: &str,
        key: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<String, LocalError> {
        let var = env_name(name, key);
        if let Some(v) = env(&var) {
            return Ok(v);
        }
        self.file
            .get(name)
            .and_then(|s| s.get(key))
            .cloned()
            .ok_or_else(|| LocalError::SecretMissing {
                name: name.to_string(),
                key: key.to_string(),
                var,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_precedence() {
        assert_eq!(env_name("warehouse", "url"), "SHOPSTREAM_SECRET_WAREHOUSE_URL");
        assert_eq!(
            env_name("kafka-ca", "ca.pem"),
            "SHOPSTREAM_SECRET_KAFKA_CA_CA_PEM"
        );
        let store = SecretStore::from_map(BTreeMap::from([(
            "warehouse".to_string(),
            BTreeMap::from([("url".to_string(), "postgres://file".to_string())]),
        )]));
        assert_eq!(
            store.lookup("warehouse", "url", |_| None).unwrap(),
            "postgres://file"
        );
        let env = |v: &str| (v == "SHOPSTREAM_SECRET_WAREHOUSE_URL").then(|| "postgres://env".to_string());
        assert_eq!(
            store.lookup("warehouse", "url", env).unwrap(),
            "postgres://env",
            "env wins"
        );
        let err = store
            .lookup("kafka-user", "password", |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("SHOPSTREAM_SECRET_KAFKA_USER_PASSWORD"), "{err}");
    }
}
