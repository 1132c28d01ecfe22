//! Reports (`POST /dss/v1/reports`) kept durably in the data directory, bounded in size per
//! report, in number and in age, with one log line each (never the report itself).
//!
//! Each report is one file `reports/<received ms>-<report id>.json` holding the reporter (the
//! token's subject, never a field of the body), the time received and the report as sent,
//! written to a temporary file, synced and renamed into place: a crash leaves a whole report or
//! none. In a pool, each instance keeps the reports it received.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Bounds of the archive. The count applies per reporter (the token's subject), so one reporter
/// filling its share evicts only its own oldest reports; the byte cap applies to the whole
/// archive and evicts from the reporter holding the most bytes first. Nobody can push out
/// another party's reports by sending many of their own.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Largest report body accepted (413 beyond).
    pub max_report_bytes: usize,
    /// Reports kept per reporter; its oldest go first.
    pub max_reports: usize,
    /// Bytes kept over all reporters; the largest reporter's oldest go first.
    pub max_total_bytes: u64,
    /// Reports older than this are removed.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_report_bytes: 256 * 1024,
            max_reports: 1_000,
            max_total_bytes: 256 * 1024 * 1024,
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// One stored report: when received, its file, its size.
#[derive(Debug, Clone)]
struct Kept {
    ms: u64,
    name: String,
    bytes: u64,
}

#[derive(Default)]
struct Shelves {
    /// Per reporter, oldest first.
    by_reporter: HashMap<String, VecDeque<Kept>>,
    bytes_of: HashMap<String, u64>,
    total_bytes: u64,
}

impl Shelves {
    fn add(&mut self, reporter: &str, kept: Kept) {
        *self.bytes_of.entry(reporter.to_owned()).or_default() += kept.bytes;
        self.total_bytes += kept.bytes;
        self.by_reporter.entry(reporter.to_owned()).or_default().push_back(kept);
    }

    /// Removes `reporter`'s oldest report; returns its file name.
    fn pop_oldest(&mut self, reporter: &str) -> Option<String> {
        let shelf = self.by_reporter.get_mut(reporter)?;
        let kept = shelf.pop_front()?;
        if shelf.is_empty() {
            self.by_reporter.remove(reporter);
        }
        if let Some(b) = self.bytes_of.get_mut(reporter) {
            *b = b.saturating_sub(kept.bytes);
            if *b == 0 {
                self.bytes_of.remove(reporter);
            }
        }
        self.total_bytes = self.total_bytes.saturating_sub(kept.bytes);
        Some(kept.name)
    }
}

pub struct ReportArchive {
    dir: PathBuf,
    retention: Retention,
    shelves: Mutex<Shelves>,
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

/// The reporter recorded in a stored report (read at start-up).
fn reporter_of(path: &Path) -> String {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["reporter"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl ReportArchive {
    /// Opens (creating) `dir`, removing leftovers of interrupted writes.
    pub fn open(dir: impl AsRef<Path>, retention: Retention) -> std::io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(ms) = name.strip_suffix(".json").and_then(|n| n.split('-').next()).and_then(|t| t.parse().ok())
            {
                let bytes = entry.metadata().map_or(0, |m| m.len());
                found.push((ms, name, bytes, reporter_of(&entry.path())));
            }
        }
        found.sort();
        let mut shelves = Shelves::default();
        let reporters: Vec<String> = found.iter().map(|f| f.3.clone()).collect();
        for (ms, name, bytes, reporter) in found {
            shelves.add(&reporter, Kept { ms, name, bytes });
        }
        let archive = Self { dir, retention, shelves: Mutex::new(shelves) };
        let mut seen = std::collections::HashSet::new();
        for r in reporters {
            if seen.insert(r.clone()) {
                archive.prune(&r);
            }
        }
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
        self.shelves.lock().add(reporter, Kept { ms: received, name, bytes: bytes.len() as u64 });
        self.prune(reporter);
        Ok(bytes.len())
    }

    /// Removes `reporter`'s reports past its count, everyone's past the age, and, past the
    /// byte cap, the oldest reports of whoever holds the most bytes.
    fn prune(&self, reporter: &str) {
        let cutoff = now_ms().saturating_sub(u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX));
        let mut doomed = Vec::new();
        {
            let mut shelves = self.shelves.lock();
            while shelves.by_reporter.get(reporter).is_some_and(|s| s.len() > self.retention.max_reports) {
                doomed.extend(shelves.pop_oldest(reporter));
            }
            let expired: Vec<String> = shelves
                .by_reporter
                .iter()
                .filter(|(_, s)| s.front().is_some_and(|k| k.ms < cutoff))
                .map(|(r, _)| r.clone())
                .collect();
            for r in expired {
                while shelves.by_reporter.get(&r).and_then(|s| s.front()).is_some_and(|k| k.ms < cutoff) {
                    doomed.extend(shelves.pop_oldest(&r));
                }
            }
            while shelves.total_bytes > self.retention.max_total_bytes {
                let Some(largest) = shelves.bytes_of.iter().max_by_key(|(_, b)| **b).map(|(r, _)| r.clone()) else {
                    break;
                };
                match shelves.pop_oldest(&largest) {
                    Some(name) => doomed.push(name),
                    None => break,
                }
            }
        }
        for name in doomed {
            let _ = fs::remove_file(self.dir.join(name));
        }
    }

    /// Reports kept, oldest first (file names).
    pub fn list(&self) -> Vec<String> {
        let shelves = self.shelves.lock();
        let mut all: Vec<&Kept> = shelves.by_reporter.values().flatten().collect();
        all.sort_by(|a, b| (a.ms, &a.name).cmp(&(b.ms, &b.name)));
        all.into_iter().map(|k| k.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reporter_evicts_only_its_own_and_the_byte_cap_takes_from_the_largest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let retention = Retention { max_reports: 5, max_total_bytes: 6_000, ..Retention::default() };
        let a = ReportArchive::open(tmp.path(), retention).expect("open");
        for i in 0..3 {
            a.store(&format!("victim-{i}"), "victim", &serde_json::json!({"n": i})).expect("store");
        }
        // A flood from another reporter fills its own share only.
        for i in 0..50 {
            a.store(&format!("flood-{i}"), "flooder", &serde_json::json!({"n": i})).expect("store");
        }
        let kept = a.list();
        assert_eq!(kept.iter().filter(|n| n.contains("victim")).count(), 3, "{kept:?}");
        assert_eq!(kept.iter().filter(|n| n.contains("flood")).count(), 5, "{kept:?}");
        assert!(kept.iter().any(|n| n.contains("flood-49")), "the flooder keeps its newest: {kept:?}");
        // Large reports past the byte cap: the largest reporter loses its oldest first.
        let big = "x".repeat(900);
        for i in 0..5 {
            a.store(&format!("big-{i}"), "flooder", &serde_json::json!({"pad": big, "n": i})).expect("store");
        }
        let kept = a.list();
        assert_eq!(kept.iter().filter(|n| n.contains("victim")).count(), 3, "the small reporter keeps all: {kept:?}");
        let total: u64 = kept.iter().map(|n| std::fs::metadata(tmp.path().join(n)).expect("file").len()).sum();
        assert!(total <= 6_000, "{total}");
        // The shelves survive a reopen, each reporter's own.
        drop(a);
        let b = ReportArchive::open(tmp.path(), retention).expect("reopen");
        assert_eq!(b.list(), kept);
    }

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
