//! Which storage backend the server opens: the `[storage]` table of the config file, or
//! `--storage` / `TERN_STORAGE` (`fjall`, or `cql://HOST:PORT[,HOST:PORT...]/KEYSPACE`).
//!
//! Compiled whatever the cargo features: a server built without `cql` refuses a CQL config at
//! start instead of failing to parse it.

use serde::{Deserialize, Serialize};

/// The storage backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    /// The embedded store in `data_dir/db` (default).
    #[default]
    Fjall,
    /// A ScyllaDB or Cassandra cluster (`storage::cql`).
    Cql {
        /// Contact points, `host:port`.
        hosts: Vec<String>,
        /// Keyspace, created with the tables if missing.
        #[serde(default = "default_keyspace")]
        keyspace: String,
        /// Replication of a keyspace created at open: `SimpleStrategy:RF` (default
        /// `SimpleStrategy:1`, a dev node) or `NetworkTopologyStrategy:DC=RF[,DC=RF...]`.
        #[serde(default = "default_replication")]
        replication: String,
        /// Data centre whose replicas are preferred (the `LOCAL_` of `LOCAL_QUORUM`).
        #[serde(default)]
        local_dc: Option<String>,
    },
}

fn default_keyspace() -> String {
    "tern".into()
}

fn default_replication() -> String {
    "SimpleStrategy:1".into()
}

impl std::str::FromStr for StorageConfig {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "fjall" {
            return Ok(StorageConfig::Fjall);
        }
        let bad = || format!("--storage {s:?}: expected fjall or cql://HOST:PORT[,...]/KEYSPACE");
        let rest = s.strip_prefix("cql://").ok_or_else(bad)?;
        let (hosts, keyspace) = match rest.split_once('/') {
            Some((h, k)) if !k.is_empty() => (h, k.to_owned()),
            Some((h, _)) => (h, default_keyspace()),
            None => (rest, default_keyspace()),
        };
        let hosts: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if hosts.is_empty() {
            return Err(bad());
        }
        Ok(StorageConfig::Cql {
            hosts,
            keyspace,
            replication: default_replication(),
            local_dc: None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn storage_flags_parse() {
        assert_eq!(
            "fjall".parse::<StorageConfig>().unwrap(),
            StorageConfig::Fjall
        );
        let cql: StorageConfig = "cql://10.0.0.1:9042,10.0.0.2:9042/chat".parse().unwrap();
        assert_eq!(
            cql,
            StorageConfig::Cql {
                hosts: vec!["10.0.0.1:9042".into(), "10.0.0.2:9042".into()],
                keyspace: "chat".into(),
                replication: "SimpleStrategy:1".into(),
                local_dc: None,
            }
        );
        let bare: StorageConfig = "cql://127.0.0.1:9042".parse().unwrap();
        assert!(matches!(bare, StorageConfig::Cql { keyspace, .. } if keyspace == "tern"));
        assert!("cql:///ks".parse::<StorageConfig>().is_err());
        assert!("redis://x".parse::<StorageConfig>().is_err());
        let toml: StorageConfig = toml::from_str(
            "kind = \"cql\"\nhosts = [\"a:9042\"]\nreplication = \"NetworkTopologyStrategy:dc1=3\"\nlocal_dc = \"dc1\"",
        )
        .unwrap();
        assert!(matches!(toml, StorageConfig::Cql { local_dc: Some(dc), .. } if dc == "dc1"));
    }
}
