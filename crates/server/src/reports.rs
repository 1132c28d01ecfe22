//! Reports (`POST /dss/v1/reports`) kept durably in the data directory, bounded in size per
//! report, in number and in age, with one log line each (never the report itself).
//!
//! Each report is one file `reports/<received ms>-<report id>.json` holding the reporter (the
//! token's subject, never a field of the body), the time received and the report as sent,
//! written to a temporary file, synced and renamed into place: a crash leaves a whole report or
//! none. In a pool, each instance keeps the reports it received.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Bounds of the archive.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Largest report body accepted (413 beyond).
    pub max_report_bytes: usize,
    /// Reports kept; the oldest go first.
    pub max_reports: usize,
    /// Reports older than this are removed.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self { max_report_bytes: 256 * 1024, max_reports: 10_000, max_age: Duration::from_secs(30 * 24 * 3600) }
    }
}

pub struct ReportArchive {
    dir: PathBuf,
    retention: Retention,
    /// (received ms, file name), oldest first.
    files: Mutex<VecDeque<(u64, String)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("a report may be at most {0} bytes")]
    TooLarge(usize),
    #[error("the report could not be stored: {0}")]
    Io(String),
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(0)
}

impl ReportArchive {
    /// Opens (creating) `dir`, removing leftovers of interrupted writes.
    pub fn open(dir: impl AsRef<Path>, retention: Retention) -> std::io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let mut files = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(ms) = name.strip_suffix(".json").and_then(|n| n.split('-').next()).and_then(|t| t.parse().ok())
            {
                files.push((ms, name));
            }
        }
        files.sort();
        let archive = Self { dir, retention, files: Mutex::new(files.into()) };
        archive.prune();
        Ok(archive)
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Stores one report durably; returns the bytes written.
    pub fn store(&self, report_id: &str, reporter: &str, report: &serde_json::Value) -> Result<usize, ReportError> {
        let received = now_ms();
        let record = serde_json::json!({
            "report_id": report_id,
            "reporter": reporter,
            "received_at_ms": received,
            "report": report,
        });
        let bytes = serde_json::to_vec(&record).map_err(|e| ReportError::Io(e.to_string()))?;
        let name = format!("{received:015}-{report_id}.json");
        let tmp = self.dir.join(format!("{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join(&name))?;
            fs::File::open(&self.dir)?.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(ReportError::Io(e.to_string()));
        }
        self.files.lock().push_back((received, name));
        self.prune();
        Ok(bytes.len())
    }

    /// Removes reports past the count or the age.
    fn prune(&self) {
        let cutoff = now_ms().saturating_sub(u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX));
        let mut doomed = Vec::new();
        {
            let mut files = self.files.lock();
            while files.len() > self.retention.max_reports || files.front().is_some_and(|(ms, _)| *ms < cutoff) {
                if let Some((_, name)) = files.pop_front() {
                    doomed.push(name);
                }
            }
        }
        for name in doomed {
            let _ = fs::remove_file(self.dir.join(name));
        }
    }

    /// Reports kept, oldest first (file names).
    pub fn list(&self) -> Vec<String> {
        self.files.lock().iter().map(|(_, n)| n.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_kept_bounded_and_survive_a_reopen() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let retention = Retention { max_reports: 3, ..Retention::default() };
        let a = ReportArchive::open(tmp.path(), retention).expect("open");
        for i in 0..5 {
            a.store(&format!("r{i}"), "uss1", &serde_json::json!({"n": i})).expect("store");
        }
        let kept = a.list();
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert!(kept[0].contains("r2") && kept[2].contains("r4"), "the oldest go first: {kept:?}");
        std::fs::write(tmp.path().join("x.json.tmp"), b"half").expect("leftover");
        drop(a);
        let b = ReportArchive::open(tmp.path(), retention).expect("reopen");
        assert_eq!(b.list(), kept);
        assert!(!tmp.path().join("x.json.tmp").exists(), "leftovers of interrupted writes are removed");
        let text = std::fs::read_to_string(tmp.path().join(&kept[2])).expect("read");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!((v["reporter"].as_str(), v["report"]["n"].as_i64()), (Some("uss1"), Some(4)));
    }
}
