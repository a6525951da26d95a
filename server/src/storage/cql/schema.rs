//! The schema (`server/schema/tern.cql`), row kinds, and every statement the backend runs,
//! prepared once at open.
//!
//! DDL is the only text built at run time: the keyspace name and replication map are
//! validated identifiers and numbers, never user data. Every query with values is a prepared
//! statement with the partition key bound, so the driver's default (token-aware) policy sends
//! it straight to a replica.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::backend;
use crate::storage::{StorageError, StorageResult};

/// The schema file, with `tern` as the keyspace placeholder.
const SCHEMA: &str = include_str!("../../../schema/tern.cql");

/// The tables of `SCHEMA`.
pub(crate) const TABLES: [&str; 6] = [
    "names",
    "user_rows",
    "refresh",
    "chat_rows",
    "direct",
    "receipts",
];

/// `names` kinds.
pub(crate) const NAME_IDENTIFIER: i8 = 0;
pub(crate) const NAME_USERNAME: i8 = 1;

/// `user_rows` kinds.
pub(crate) mod user {
    /// The user exists (v = identifier).
    pub const USER: i8 = 0;
    /// a = device id, v = DeviceRecord.
    pub const DEVICE: i8 = 1;
    /// a = device id, b = hash prefix, v = token hash.
    pub const TOKEN: i8 = 2;
    /// a = chat id: the user is a member.
    pub const CHAT: i8 = 3;
    /// a = other user.
    pub const CONTACT: i8 = 4;
    pub const BLOCK: i8 = 5;
    /// a = the user who has this user as a contact.
    pub const CONTACT_OF: i8 = 6;
    pub const PROFILE: i8 = 7;
    pub const PRIVACY: i8 = 8;
    pub const LAST_SEEN: i8 = 9;
    /// a = pts, v = StoredUpdate.
    pub const LOG: i8 = 10;
    /// a = chat, b = seq: a message update was logged (v = pts).
    pub const SEEN_MESSAGE: i8 = 11;
    /// a = chat, b = since seq: a join was logged.
    pub const SEEN_JOIN: i8 = 12;
    /// a = chat, b = at seq: a leave was logged.
    pub const SEEN_LEFT: i8 = 13;
}

/// `chat_rows` kinds.
pub(crate) mod chat {
    /// The existence guard, written with the statics when the chat is created.
    pub const META: i8 = 0;
    /// a = seq, v = Message.
    pub const MESSAGE: i8 = 1;
    /// a = sender, b = device, c = client_msg_id, v = seq.
    pub const IDEMPOTENCY: i8 = 2;
    /// a = target seq, b = edit seq.
    pub const EDIT: i8 = 3;
    /// a = user, v = closed intervals.
    pub const INTERVALS: i8 = 4;
    /// a = user, b = seq: deleted for that user.
    pub const HIDDEN: i8 = 5;
    /// a = user, b = seq: withheld from that user (a blocker).
    pub const WITHHELD: i8 = 6;
    /// a = user, b = seq, v = the body the user saw before a withheld edit.
    pub const UNEDITED: i8 = 7;
}

/// Replication of the keyspace, from a config string: `SimpleStrategy:RF` or
/// `NetworkTopologyStrategy:DC=RF[,DC=RF...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// One ring, `rf` replicas (dev, tests).
    Simple(u32),
    /// Replicas per data centre (production).
    Topology(Vec<(String, u32)>),
}

impl std::str::FromStr for Replication {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StorageError::Invalid(format!("bad replication {s:?}"));
        let (class, rest) = s.split_once(':').ok_or_else(bad)?;
        match class {
            "SimpleStrategy" => Ok(Replication::Simple(rest.parse().map_err(|_| bad())?)),
            "NetworkTopologyStrategy" => {
                let mut dcs = Vec::new();
                for part in rest.split(',') {
                    let (dc, rf) = part.split_once('=').ok_or_else(bad)?;
                    if !is_name(dc, true) {
                        return Err(bad());
                    }
                    dcs.push((dc.to_owned(), rf.parse().map_err(|_| bad())?));
                }
                Ok(Replication::Topology(dcs))
            }
            _ => Err(bad()),
        }
    }
}

impl Replication {
    /// The CQL replication map.
    fn cql(&self) -> String {
        match self {
            Replication::Simple(rf) => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}")
            }
            Replication::Topology(dcs) => {
                let mut out = String::from("{'class': 'NetworkTopologyStrategy'");
                for (dc, rf) in dcs {
                    out.push_str(&format!(", '{dc}': {rf}"));
                }
                out.push('}');
                out
            }
        }
    }
}

/// Keyspace names (and data-centre names, with `-`) that may be spliced into DDL.
pub(crate) fn is_name(s: &str, dash: bool) -> bool {
    !s.is_empty()
        && s.len() <= 48
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dash && c == '-'))
}

/// The schema's statements for `keyspace` with `replication`.
pub(crate) fn ddl(keyspace: &str, replication: &Replication) -> StorageResult<Vec<String>> {
    if !is_name(keyspace, false) {
        return Err(StorageError::Invalid(format!(
            "bad keyspace name {keyspace:?}"
        )));
    }
    let text: String = SCHEMA
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let default_map = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    Ok(text
        .split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches(';')
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace(
                    "KEYSPACE IF NOT EXISTS tern",
                    &format!("KEYSPACE IF NOT EXISTS {keyspace}"),
                )
                .replace(" tern.", &format!(" {keyspace}."))
                .replace(default_map, &replication.cql())
        })
        .collect())
}

/// Creates the keyspace and tables if they do not exist, then waits for schema agreement.
pub(crate) async fn create(
    session: &Session,
    keyspace: &str,
    replication: &Replication,
) -> StorageResult<()> {
    for statement in ddl(keyspace, replication)? {
        session
            .query_unpaged(statement, &[])
            .await
            .map_err(backend)?;
    }
    session.await_schema_agreement().await.map_err(backend)?;
    Ok(())
}

/// Every prepared statement.
#[derive(Debug)]
pub(crate) struct Statements {
    pub name_get: PreparedStatement,
    pub name_claim: PreparedStatement,
    pub name_release: PreparedStatement,

    pub ur_get: PreparedStatement,
    pub ur_put: PreparedStatement,
    pub ur_put_new: PreparedStatement,
    pub ur_del: PreparedStatement,
    pub ur_range: PreparedStatement,
    pub ur_range_b: PreparedStatement,
    pub ur_last: PreparedStatement,
    pub log_pts: PreparedStatement,
    pub log_set_pts: PreparedStatement,

    pub rt_get: PreparedStatement,
    pub rt_put: PreparedStatement,
    pub rt_cas: PreparedStatement,
    pub rt_del: PreparedStatement,

    pub cr_statics: PreparedStatement,
    pub cr_set_fanned: PreparedStatement,
    pub cr_get: PreparedStatement,
    pub cr_range_a: PreparedStatement,
    pub cr_range_b: PreparedStatement,
    pub cr_put: PreparedStatement,
    pub cr_put_new: PreparedStatement,
    pub cr_del: PreparedStatement,
    pub cr_set_seq: PreparedStatement,
    pub cr_set_statics: PreparedStatement,
    pub cr_create: PreparedStatement,
    pub cr_drop: PreparedStatement,

    pub dc_get: PreparedStatement,
    pub dc_claim: PreparedStatement,

    pub rc_get: PreparedStatement,
    pub rc_new: PreparedStatement,
    pub rc_cas: PreparedStatement,
    pub rc_time_put: PreparedStatement,
    pub rc_time_first: PreparedStatement,
}

impl Statements {
    /// Prepares every statement against `keyspace`.
    pub(crate) async fn prepare(session: &Session, keyspace: &str) -> StorageResult<Self> {
        let p = |text: &str| {
            let text = text.replace("{ks}", keyspace);
            async move { session.prepare(text).await.map_err(backend) }
        };
        const UR: &str = "user_id = ? AND kind = ? AND a = ? AND b = ?";
        const CR: &str = "chat_id = ? AND kind = ? AND a = ? AND b = ? AND c = ?";
        Ok(Statements {
            name_get: p("SELECT user_id FROM {ks}.names WHERE kind = ? AND name = ?").await?,
            name_claim: p(
                "INSERT INTO {ks}.names (kind, name, user_id) VALUES (?, ?, ?) IF NOT EXISTS",
            )
            .await?,
            name_release: p("DELETE FROM {ks}.names WHERE kind = ? AND name = ? IF user_id = ?")
                .await?,

            ur_get: p(&format!("SELECT v FROM {{ks}}.user_rows WHERE {UR}")).await?,
            ur_put: p("INSERT INTO {ks}.user_rows (user_id, kind, a, b, v) VALUES (?, ?, ?, ?, ?)")
                .await?,
            ur_put_new: p(
                "INSERT INTO {ks}.user_rows (user_id, kind, a, b, v) VALUES (?, ?, ?, ?, ?) \
                 IF NOT EXISTS",
            )
            .await?,
            ur_del: p(&format!("DELETE FROM {{ks}}.user_rows WHERE {UR}")).await?,
            ur_range: p(
                "SELECT a, b, v FROM {ks}.user_rows WHERE user_id = ? AND kind = ? \
                 AND a >= ? AND a <= ? LIMIT ?",
            )
            .await?,
            ur_range_b: p(
                "SELECT a, b, v FROM {ks}.user_rows WHERE user_id = ? AND kind = ? AND a = ? \
                 LIMIT ?",
            )
            .await?,
            ur_last: p(
                "SELECT a FROM {ks}.user_rows WHERE user_id = ? AND kind = ? \
                 ORDER BY kind DESC, a DESC LIMIT 1",
            )
            .await?,
            log_pts: p("SELECT last_pts FROM {ks}.user_rows WHERE user_id = ? LIMIT 1").await?,
            log_set_pts: p("UPDATE {ks}.user_rows SET last_pts = ? WHERE user_id = ?").await?,

            rt_get: p("SELECT record FROM {ks}.refresh WHERE hash = ?").await?,
            rt_put: p("INSERT INTO {ks}.refresh (hash, record) VALUES (?, ?)").await?,
            rt_cas: p("UPDATE {ks}.refresh SET record = ? WHERE hash = ? IF record = ?").await?,
            rt_del: p("DELETE FROM {ks}.refresh WHERE hash = ?").await?,

            cr_statics: p(
                "SELECT last_seq, state, fanned_out FROM {ks}.chat_rows WHERE chat_id = ? LIMIT 1",
            )
            .await?,
            cr_set_fanned: p("UPDATE {ks}.chat_rows SET fanned_out = ? WHERE chat_id = ?").await?,
            cr_get: p(&format!("SELECT v FROM {{ks}}.chat_rows WHERE {CR}")).await?,
            cr_range_a: p(
                "SELECT a, b, v FROM {ks}.chat_rows WHERE chat_id = ? AND kind = ? \
                 AND a >= ? AND a <= ? LIMIT ?",
            )
            .await?,
            cr_range_b: p(
                "SELECT a, b, v FROM {ks}.chat_rows WHERE chat_id = ? AND kind = ? AND a = ? \
                 AND b >= ? AND b <= ? LIMIT ?",
            )
            .await?,
            cr_put: p(
                "INSERT INTO {ks}.chat_rows (chat_id, kind, a, b, c, v) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .await?,
            cr_put_new: p(
                "INSERT INTO {ks}.chat_rows (chat_id, kind, a, b, c, v) VALUES (?, ?, ?, ?, ?, ?) \
                 IF NOT EXISTS",
            )
            .await?,
            cr_del: p(&format!("DELETE FROM {{ks}}.chat_rows WHERE {CR}")).await?,
            cr_set_seq: p("UPDATE {ks}.chat_rows SET last_seq = ? WHERE chat_id = ?").await?,
            cr_set_statics: p(
                "UPDATE {ks}.chat_rows SET last_seq = ?, state = ? WHERE chat_id = ?",
            )
            .await?,
            cr_create: p(
                "INSERT INTO {ks}.chat_rows (chat_id, kind, a, b, c, last_seq, state) \
                 VALUES (?, 0, 0, 0, 0, ?, ?) IF NOT EXISTS",
            )
            .await?,
            cr_drop: p("DELETE FROM {ks}.chat_rows WHERE chat_id = ?").await?,

            dc_get: p("SELECT chat_id FROM {ks}.direct WHERE lo = ? AND hi = ?").await?,
            dc_claim: p("INSERT INTO {ks}.direct (lo, hi, chat_id) VALUES (?, ?, ?) IF NOT EXISTS")
                .await?,

            rc_get: p("SELECT delivered, read_seq, published FROM {ks}.receipts \
                 WHERE chat_id = ? AND user_id = ? AND kind = 0 AND seq = 0")
            .await?,
            rc_new: p(
                "INSERT INTO {ks}.receipts (chat_id, user_id, kind, seq, delivered, read_seq, \
                 published) VALUES (?, ?, 0, 0, ?, ?, ?) IF NOT EXISTS",
            )
            .await?,
            rc_cas: p(
                "UPDATE {ks}.receipts SET delivered = ?, read_seq = ?, published = ? \
                 WHERE chat_id = ? AND user_id = ? AND kind = 0 AND seq = 0 \
                 IF delivered = ? AND read_seq = ? AND published = ?",
            )
            .await?,
            rc_time_put: p(
                "INSERT INTO {ks}.receipts (chat_id, user_id, kind, seq, at_ms) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .await?,
            rc_time_first: p(
                "SELECT at_ms FROM {ks}.receipts WHERE chat_id = ? AND user_id = ? AND kind = ? \
                 AND seq >= ? LIMIT 1",
            )
            .await?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn replication_strings_parse_and_render() {
        let simple: Replication = "SimpleStrategy:1".parse().unwrap();
        assert_eq!(simple, Replication::Simple(1));
        let nts: Replication = "NetworkTopologyStrategy:dc1=3,dc-2=2".parse().unwrap();
        assert_eq!(
            nts.cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc-2': 2}"
        );
        assert!("Nope:1".parse::<Replication>().is_err());
        assert!(
            "NetworkTopologyStrategy:dc'1=3"
                .parse::<Replication>()
                .is_err()
        );
        let ddl = ddl("tern_x", &nts).unwrap();
        assert!(ddl[0].contains("KEYSPACE IF NOT EXISTS tern_x WITH"));
        assert!(ddl[0].contains("NetworkTopologyStrategy"));
        assert!(
            ddl.iter()
                .skip(1)
                .all(|s| s.contains("TABLE IF NOT EXISTS tern_x."))
        );
        assert_eq!(ddl.len(), 1 + TABLES.len());
        for t in TABLES {
            assert!(
                ddl.iter().any(|s| s.contains(&format!("tern_x.{t} ("))),
                "{t}"
            );
        }
        assert!(super::ddl("bad;name", &simple).is_err());
    }
}
