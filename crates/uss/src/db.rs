//! The participant's durable records in one SQLite database (compiled in, no system library):
//! one row per entity, so a change writes that entity alone, whatever else is stored, and the
//! notification history is a bounded table queried by time.
//!
//! SQLite rather than redb: the history wants range queries and bounded deletion by age and
//! size, which are one statement each here, and SQLite's WAL mode with `synchronous=FULL` makes
//! every committed transaction durable before `commit` returns. A failed write (a full disk) is
//! an error to the caller, never a log line.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::entities::Received;

/// Most notifications kept in the history, and most bytes of them.
pub const MAX_NOTIFICATIONS: i64 = 10_000;
pub const MAX_NOTIFICATION_BYTES: i64 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DbError(String);

impl DbError {
    pub fn new(message: impl Into<String>) -> Self {
        DbError(message.into())
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(e.to_string())
    }
}

impl From<serde_json::Error> for DbError {
    fn from(e: serde_json::Error) -> Self {
        DbError(format!("record encoding: {e}"))
    }
}

/// The tables of entity records, each `(id TEXT PRIMARY KEY, body TEXT)` of JSON.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    OwnIntents,
    OwnConstraints,
    OthersIntents,
    OthersConstraints,
    Pending,
    /// flight_planning interface: flight plan id -> the intent that serves it.
    FlightPlans,
    /// flight_planning interface: what the virtual user was told, keyed by time.
    UserNotifications,
    /// Reports peers sent (`POST /uss/v1/reports`), keyed by time.
    Reports,
    /// Subscriptions the operator made, for the map.
    Subscriptions,
    /// Our flights' latest position and conformance monitor state, by intent id.
    Telemetry,
    /// Remote ID test flights injected through the automated-testing interface, by test id.
    RidTests,
}

impl Table {
    const ALL: [Table; 11] = [
        Table::OwnIntents,
        Table::OwnConstraints,
        Table::OthersIntents,
        Table::OthersConstraints,
        Table::Pending,
        Table::FlightPlans,
        Table::UserNotifications,
        Table::Reports,
        Table::Subscriptions,
        Table::Telemetry,
        Table::RidTests,
    ];
    fn name(self) -> &'static str {
        match self {
            Table::OwnIntents => "own_intents",
            Table::OwnConstraints => "own_constraints",
            Table::OthersIntents => "others_intents",
            Table::OthersConstraints => "others_constraints",
            Table::Pending => "pending",
            Table::FlightPlans => "flight_plans",
            Table::UserNotifications => "user_notifications",
            Table::Reports => "reports",
            Table::Subscriptions => "subscriptions",
            Table::Telemetry => "telemetry",
            Table::RidTests => "rid_tests",
        }
    }
}

/// One write of a transaction.
#[derive(Debug, Clone)]
pub enum Write {
    Put(Table, String, String),
    Delete(Table, String),
    /// Deletes all but the `keep` rows with the greatest ids.
    KeepNewest(Table, usize),
    /// Appends a notification to the history (JSON body), trimming it to its bounds.
    Notification {
        at_us: i64,
        body: String,
    },
}

pub struct Db {
    conn: Mutex<Connection>,
}

/// The participant database's format (SQLite's `user_version`). 1: the tables of one JSON body
/// per id, and the notification log. A database from before formats were recorded (0, with
/// tables) is format 1 and is marked so; a newer one is refused.
pub const FORMAT: i64 = 1;

fn check_format(conn: &Connection, dir: &Path) -> Result<(), DbError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    match version {
        FORMAT => Ok(()),
        // New, or written before formats were recorded: both are this format.
        0 => Ok(conn.pragma_update(None, "user_version", FORMAT)?),
        newer if newer > FORMAT => Err(DbError(format!(
            "{}/participant.sqlite is in format {newer}, written by a newer Deconflict; this binary reads format \
             {FORMAT} and older: run the newer binary (or restore a backup made before the upgrade)",
            dir.display()
        ))),
        other => Err(DbError(format!("{}/participant.sqlite has an unknown format {other}", dir.display()))),
    }
}

impl Db {
    /// Opens (or creates) the database in `dir`; a database written by a newer format is
    /// refused, never read.
    pub fn open(dir: &Path) -> Result<Db, DbError> {
        std::fs::create_dir_all(dir).map_err(|e| DbError(format!("{}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join("participant.sqlite"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        check_format(&conn, dir)?;
        for t in Table::ALL {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
                t.name()
            ))?;
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS notifications (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 at_us INTEGER NOT NULL,
                 bytes INTEGER NOT NULL,
                 body TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS notifications_at ON notifications (at_us);",
        )?;
        Ok(Db { conn: Mutex::new(conn) })
    }

    pub fn load_all<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, DbError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(&format!("SELECT id, body FROM {}", table.name()))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            let value = serde_json::from_str(&body)
                .map_err(|e| DbError(format!("{} row {id} cannot be read: {e}", table.name())))?;
            out.push((id, value));
        }
        Ok(out)
    }

    pub fn get<T: DeserializeOwned>(&self, table: Table, id: &str) -> Result<Option<T>, DbError> {
        let conn = self.conn.lock();
        let body: Option<String> = conn
            .query_row(&format!("SELECT body FROM {} WHERE id = ?1", table.name()), params![id], |r| r.get(0))
            .optional()?;
        Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
    }

    pub fn put(&self, table: Table, id: &str, value: &impl Serialize) -> Result<(), DbError> {
        self.apply(&[Write::Put(table, id.to_owned(), serde_json::to_string(value)?)])
    }

    pub fn delete(&self, table: Table, id: &str) -> Result<(), DbError> {
        self.apply(&[Write::Delete(table, id.to_owned())])
    }

    /// Applies `writes` atomically and durably.
    pub fn apply(&self, writes: &[Write]) -> Result<(), DbError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        for w in writes {
            apply_one(&tx, w)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Applies several independent groups of writes, in order, each atomically and durably:
    /// all in one transaction (one sync) when that succeeds, else each group in its own, so one
    /// failing group costs only its own writes.
    pub fn apply_groups(&self, groups: &[&[Write]]) -> Vec<Result<(), DbError>> {
        if groups.len() > 1 {
            let together = (|| {
                let mut conn = self.conn.lock();
                let tx = conn.transaction()?;
                for w in groups.iter().flat_map(|g| g.iter()) {
                    apply_one(&tx, w)?;
                }
                tx.commit()?;
                Ok::<(), DbError>(())
            })();
            if together.is_ok() {
                return groups.iter().map(|_| Ok(())).collect();
            }
        }
        groups.iter().map(|g| self.apply(g)).collect()
    }

    pub fn count(&self, table: Table) -> Result<i64, DbError> {
        let conn = self.conn.lock();
        Ok(conn.query_row(&format!("SELECT COUNT(*) FROM {}", table.name()), [], |r| r.get(0))?)
    }

    /// Notifications received in `[after_us, before_us)`, oldest first, at most `limit`;
    /// `newest` takes the newest `limit` of them instead.
    pub fn notifications(
        &self,
        after_us: i64,
        before_us: i64,
        limit: i64,
        newest: bool,
    ) -> Result<Vec<Received>, DbError> {
        let conn = self.conn.lock();
        let order = if newest { "DESC" } else { "ASC" };
        let mut stmt = conn.prepare(&format!(
            "SELECT body FROM notifications WHERE at_us >= ?1 AND at_us < ?2 ORDER BY seq {order} LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![after_us, before_us, limit], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row?)?);
        }
        if newest {
            out.reverse();
        }
        Ok(out)
    }

    pub fn notification_stats(&self) -> Result<(i64, i64), DbError> {
        let conn = self.conn.lock();
        Ok(conn.query_row("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM notifications", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?)
    }
}

fn apply_one(tx: &rusqlite::Transaction<'_>, w: &Write) -> Result<(), DbError> {
    match w {
        Write::Put(t, id, body) => {
            tx.execute(
                &format!(
                    "INSERT INTO {} (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                    t.name()
                ),
                params![id, body],
            )?;
        }
        Write::Delete(t, id) => {
            tx.execute(&format!("DELETE FROM {} WHERE id = ?1", t.name()), params![id])?;
        }
        Write::KeepNewest(t, keep) => {
            let n = i64::try_from(*keep).unwrap_or(i64::MAX);
            tx.execute(
                &format!(
                    "DELETE FROM {t} WHERE id NOT IN (SELECT id FROM {t} ORDER BY id DESC LIMIT ?1)",
                    t = t.name()
                ),
                params![n],
            )?;
        }
        Write::Notification { at_us, body } => {
            tx.execute(
                "INSERT INTO notifications (at_us, bytes, body) VALUES (?1, ?2, ?3)",
                params![at_us, body.len() as i64, body],
            )?;
            tx.execute(
                "DELETE FROM notifications WHERE seq <= (SELECT seq FROM notifications ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
                params![MAX_NOTIFICATIONS],
            )?;
            let total: i64 = tx.query_row("SELECT COALESCE(SUM(bytes), 0) FROM notifications", [], |r| r.get(0))?;
            if total > MAX_NOTIFICATION_BYTES {
                // Remove the oldest rows, up to and including the one that brings the total
                // under the bound (each row whose predecessors' sum is still short of the excess).
                tx.execute(
                    "DELETE FROM notifications WHERE seq IN (
                         SELECT seq FROM (SELECT seq, bytes, SUM(bytes) OVER (ORDER BY seq) AS running FROM notifications)
                         WHERE running - bytes < ?1)",
                    params![total - MAX_NOTIFICATION_BYTES],
                )?;
            }
        }
    }
    Ok(())
}

/// A notification as a history write.
pub fn notification_write(at_us: i64, n: &Received) -> Result<Write, DbError> {
    Ok(Write::Notification { at_us, body: serde_json::to_string(n)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(i: usize, pad: usize) -> Received {
        Received {
            received_at: format!("t{i}"),
            from: "peer".into(),
            kind: "operational_intent".into(),
            entity_id: format!("{i}{}", "x".repeat(pad)),
            version: Some(1),
            state: None,
            accepted: true,
            note: String::new(),
        }
    }

    #[test]
    fn the_database_carries_its_format_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Db::open(dir.path()).expect("open"));
        let conn = Connection::open(dir.path().join("participant.sqlite")).expect("sqlite");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, FORMAT);
        conn.pragma_update(None, "user_version", FORMAT + 1).expect("newer");
        drop(conn);
        let err = Db::open(dir.path()).err().map(|e| e.0).expect("a newer format is refused");
        assert!(err.contains("newer Deconflict") && err.contains("format 2"), "{err}");
    }

    #[test]
    fn records_survive_reopening_and_deletes_are_per_entity() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = Db::open(dir.path()).expect("open");
            db.put(Table::OwnIntents, "a", &serde_json::json!({"v": 1})).expect("put");
            db.put(Table::OwnIntents, "b", &serde_json::json!({"v": 2})).expect("put");
            db.put(Table::OwnIntents, "a", &serde_json::json!({"v": 3})).expect("overwrite");
            db.apply(&[
                Write::Delete(Table::OwnIntents, "b".into()),
                Write::Put(Table::Pending, "p".into(), "{}".into()),
            ])
            .expect("transaction");
        }
        let db = Db::open(dir.path()).expect("reopen");
        let rows: Vec<(String, serde_json::Value)> = db.load_all(Table::OwnIntents).expect("load");
        assert_eq!(rows, vec![("a".to_owned(), serde_json::json!({"v": 3}))]);
        assert_eq!(db.count(Table::Pending).expect("count"), 1);
    }

    #[test]
    fn the_history_is_bounded_in_count_and_bytes_and_queryable_by_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).expect("open");
        for i in 0..(MAX_NOTIFICATIONS as usize + 50) {
            db.apply(&[notification_write(i as i64, &received(i, 0)).expect("encode")]).expect("add");
        }
        let (count, _) = db.notification_stats().expect("stats");
        assert_eq!(count, MAX_NOTIFICATIONS);
        let window = db.notifications(0, 50, 100, false).expect("query");
        assert!(window.is_empty(), "the oldest 50 were trimmed: {window:?}");
        let window = db.notifications(50, 60, 100, false).expect("query");
        assert_eq!(window.len(), 10, "the rest is kept");
        let last = MAX_NOTIFICATIONS + 49;
        let window = db.notifications(last - 4, last + 1, 100, false).expect("query");
        assert_eq!(window.len(), 5);
        assert_eq!(window[4].entity_id, last.to_string());
        let newest = db.notifications(0, i64::MAX, 2, true).expect("newest");
        assert_eq!(
            newest.iter().map(|n| n.entity_id.clone()).collect::<Vec<_>>(),
            vec![(last - 1).to_string(), last.to_string()]
        );
        // Large notifications are bounded by bytes.
        for i in 0..200 {
            db.apply(&[notification_write(1_000_000 + i, &received(i as usize, 100_000)).expect("encode")])
                .expect("add large");
        }
        let (_, bytes) = db.notification_stats().expect("stats");
        assert!(bytes <= MAX_NOTIFICATION_BYTES, "{bytes} bytes kept");
        assert!(bytes > MAX_NOTIFICATION_BYTES - 200_000, "trimmed no more than needed: {bytes}");
    }
}
