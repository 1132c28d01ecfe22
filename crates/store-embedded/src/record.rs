//! The embedded store's log record: framing and a checksum around writes encoded by
//! `store_index::codec`.

use store::{StoreError, Write};
use store_index::codec::{Dec, Enc};

/// One log record: `[len u32][crc32 u32][revision u64][n u32][writes...]`, where `len` counts
/// the bytes after the crc and the crc covers them.
pub(crate) fn encode_record(out: &mut Vec<u8>, revision: u64, writes: &[Write]) {
    let mut record = PreparedRecord::new(writes);
    out.extend_from_slice(record.seal(revision));
}

/// A log record encoded before its revision is known, so a commit can encode outside the state
/// lock and only stamp the revision (and checksum) inside it. Layout: body length (u32), CRC-32
/// of the body (u32), body = revision (u64), write count (u32), writes.
pub(crate) struct PreparedRecord(Vec<u8>);

impl PreparedRecord {
    pub(crate) fn new(writes: &[Write]) -> Self {
        let mut enc = Enc(Vec::with_capacity(512));
        enc.u32(0); // body length, set below
        enc.u32(0); // checksum, set by `seal`
        enc.u64(0); // revision, set by `seal`
        enc.u32(writes.len() as u32);
        for w in writes {
            enc.write(w);
        }
        let mut bytes = enc.0;
        let body_len = (bytes.len() - 8) as u32;
        bytes[0..4].copy_from_slice(&body_len.to_le_bytes());
        Self(bytes)
    }

    /// The finished record bytes for `revision`.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn seal(&mut self, revision: u64) -> &[u8] {
        self.0[8..16].copy_from_slice(&revision.to_le_bytes());
        let crc = crc32fast::hash(&self.0[8..]);
        self.0[4..8].copy_from_slice(&crc.to_le_bytes());
        &self.0
    }
}

/// Decodes the record at the start of `buf`: `Ok(None)` for a torn or damaged tail (everything
/// from here on is an unacknowledged write), else the revision, writes and bytes consumed.
pub(crate) fn decode_record(buf: &[u8]) -> Result<Option<(u64, Vec<Write>, usize)>, StoreError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    // Zeros: allocated space after the last record (a record's body is never empty).
    if len == 0 {
        return Ok(None);
    }
    let Some(body) = buf.get(8..8 + len) else { return Ok(None) };
    if crc32fast::hash(body) != crc {
        return Ok(None);
    }
    let mut d = Dec::new(body);
    let revision = d.u64()?;
    let n = d.u32()? as usize;
    let mut writes = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        writes.push(d.write()?);
    }
    if !d.done() {
        return Err(StoreError::Corrupt("trailing bytes in record".into()));
    }
    Ok(Some((revision, writes, 8 + len)))
}
