//! The participant's own durable state: full details of its own operational intents and
//! constraints, its picture of others' intents and constraints, and the notifications it has
//! received. Saved as one JSON document written atomically (temporary file, fsync, rename,
//! directory fsync) before any change is acknowledged; small by nature (one organization's
//! operations), so simplicity wins over incremental logs here.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use api::{Constraint, OperationalIntent};
use serde::{Deserialize, Serialize};

/// One delivery of a notification to a subscriber.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub uss_base_url: String,
    /// HTTP status, or 0 when the peer could not be reached.
    pub status: u16,
    pub acknowledged: bool,
    pub detail: String,
}

/// An intent this participant manages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnIntent {
    pub intent: OperationalIntent,
    /// Deliveries of the last change's notifications.
    pub notified: Vec<Delivery>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnConstraint {
    pub constraint: Constraint,
    pub notified: Vec<Delivery>,
}

/// A notification received from a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    pub received_at: String,
    pub from: String,
    pub kind: String,
    pub entity_id: String,
    /// `None` when the entity was deleted.
    pub version: Option<i32>,
    pub state: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub own_intents: BTreeMap<String, OwnIntent>,
    pub own_constraints: BTreeMap<String, OwnConstraint>,
    pub others_intents: BTreeMap<String, OperationalIntent>,
    pub others_constraints: BTreeMap<String, Constraint>,
    pub notifications: Vec<Received>,
}

/// Most notifications kept in the record.
const MAX_NOTIFICATIONS: usize = 2000;

pub struct StateFile {
    dir: PathBuf,
}

impl StateFile {
    pub fn open(dir: &Path) -> std::io::Result<(Self, Snapshot)> {
        fs::create_dir_all(dir)?;
        let path = dir.join("state.json");
        let snapshot = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Snapshot::default(),
            Err(e) => return Err(e),
        };
        Ok((Self { dir: dir.to_path_buf() }, snapshot))
    }

    /// Durably replaces the state with `snapshot`.
    pub fn save(&self, snapshot: &mut Snapshot) -> std::io::Result<()> {
        if snapshot.notifications.len() > MAX_NOTIFICATIONS {
            let excess = snapshot.notifications.len() - MAX_NOTIFICATIONS;
            snapshot.notifications.drain(..excess);
        }
        let bytes = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
        let tmp = self.dir.join("state.json.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join("state.json"))?;
        File::open(&self.dir)?.sync_all()
    }
}
