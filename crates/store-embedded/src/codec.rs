//! Compact binary encoding of store writes for the log and the snapshot. Every record carries a
//! CRC; decoding rebuilds shapes through `geo4d`'s constructors (polygons through `restore`,
//! with the bounding box and area computed when they were first validated), so recovery does no
//! geodesic work per vertex and a damaged file still cannot yield an invalid value.

use geo4d::{AltitudeBand, Circle, Footprint, LatLng, Polygon, TimeWindow, Timestamp, Volume4D};
use model::{
    AvailabilityRecord, Constraint, OperationalIntent, OperationalIntentState, Ovn, Subscription, UssAvailability, Uuid,
};
use store::{StoreError, Write};

#[derive(Default)]
pub(crate) struct Enc(pub Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn uuid(&mut self, id: Uuid) {
        self.0.extend_from_slice(id.as_bytes());
    }
    fn opt_uuid(&mut self, id: Option<Uuid>) {
        match id {
            Some(id) => {
                self.u8(1);
                self.uuid(id)
            }
            None => self.u8(0),
        }
    }
    fn volumes(&mut self, vols: &[Volume4D]) {
        self.u32(vols.len() as u32);
        for v in vols {
            match &v.footprint {
                Footprint::Polygon(p) => {
                    self.u8(0);
                    self.u32(p.vertices().len() as u32);
                    for pt in p.vertices() {
                        self.f64(pt.lat());
                        self.f64(pt.lng());
                    }
                    // What validation computed, so recovery need not redo the geodesic work.
                    let b = p.bbox();
                    for x in [b.min_lat, b.max_lat, b.min_lng, b.max_lng, p.area_m2()] {
                        self.f64(x);
                    }
                }
                Footprint::Circle(c) => {
                    self.u8(1);
                    self.f64(c.center().lat());
                    self.f64(c.center().lng());
                    self.f64(c.radius_m());
                }
            }
            self.f64(v.altitude.lower_m().unwrap_or(f64::NEG_INFINITY));
            self.f64(v.altitude.upper_m().unwrap_or(f64::INFINITY));
            self.i64(v.time.start().unwrap_or(Timestamp::MIN).micros());
            self.i64(v.time.end().unwrap_or(Timestamp::MAX).micros());
        }
    }

    pub(crate) fn write(&mut self, w: &Write) {
        match w {
            Write::PutIntent(oi) => {
                self.u8(1);
                self.uuid(oi.id);
                self.str(&oi.manager);
                self.u32(oi.version as u32);
                self.str(oi.state.as_str());
                self.str(oi.ovn.as_str());
                self.volumes(&oi.extents);
                self.str(&oi.uss_base_url);
                self.opt_uuid(oi.subscription_id);
            }
            Write::DeleteIntent(id) => {
                self.u8(2);
                self.uuid(*id)
            }
            Write::PutConstraint(c) => {
                self.u8(3);
                self.uuid(c.id);
                self.str(&c.manager);
                self.u32(c.version as u32);
                self.str(c.ovn.as_str());
                self.volumes(&c.extents);
                self.str(&c.uss_base_url);
            }
            Write::DeleteConstraint(id) => {
                self.u8(4);
                self.uuid(*id)
            }
            Write::PutSubscription(s) => {
                self.u8(5);
                self.uuid(s.id);
                self.str(&s.manager);
                self.u64(s.version);
                self.u32(s.notification_index as u32);
                self.volumes(&s.extents);
                self.str(&s.uss_base_url);
                self.u8(s.notify_for_operational_intents as u8);
                self.u8(s.notify_for_constraints as u8);
                self.u8(s.implicit as u8);
            }
            Write::DeleteSubscription(id) => {
                self.u8(6);
                self.uuid(*id)
            }
            Write::BumpNotificationIndex(id) => {
                self.u8(7);
                self.uuid(*id)
            }
            Write::PutAvailability(a) => {
                self.u8(8);
                self.str(&a.uss);
                self.str(a.availability.as_str());
                self.str(&a.version);
            }
        }
    }
}

pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub(crate) fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end =
            self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(|| corrupt("truncated record"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        self.take(N)?.try_into().map_err(|_| corrupt("short field"))
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    fn f64(&mut self) -> Result<f64, StoreError> {
        Ok(f64::from_le_bytes(self.arr()?))
    }
    fn str(&mut self) -> Result<String, StoreError> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| corrupt("invalid utf-8"))
    }
    fn uuid(&mut self) -> Result<Uuid, StoreError> {
        Ok(Uuid::from_bytes(self.arr()?))
    }
    fn opt_uuid(&mut self) -> Result<Option<Uuid>, StoreError> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.uuid()?),
        })
    }
    fn volumes(&mut self) -> Result<Vec<Volume4D>, StoreError> {
        let n = self.u32()? as usize;
        let mut out = Vec::with_capacity(n.min(1024));
        let geo = |e: geo4d::GeoError| StoreError::Corrupt(format!("invalid stored shape: {e}"));
        for _ in 0..n {
            let footprint = match self.u8()? {
                0 => {
                    let k = self.u32()? as usize;
                    let mut pts = Vec::with_capacity(k.min(4096));
                    for _ in 0..k {
                        let (lat, lng) = (self.f64()?, self.f64()?);
                        pts.push(LatLng::new(lat, lng).map_err(geo)?);
                    }
                    let (min_lat, max_lat, min_lng, max_lng) = (self.f64()?, self.f64()?, self.f64()?, self.f64()?);
                    let bbox = geo4d::GeoBox { min_lat, max_lat, min_lng, max_lng };
                    Footprint::Polygon(Polygon::restore(pts, bbox, self.f64()?).map_err(geo)?)
                }
                1 => {
                    let (lat, lng, r) = (self.f64()?, self.f64()?, self.f64()?);
                    Footprint::Circle(Circle::new(LatLng::new(lat, lng).map_err(geo)?, r).map_err(geo)?)
                }
                _ => return Err(corrupt("unknown footprint tag")),
            };
            let (lo, hi) = (self.f64()?, self.f64()?);
            let altitude =
                AltitudeBand::new(lo.is_finite().then_some(lo), hi.is_finite().then_some(hi)).map_err(geo)?;
            let (ts, te) = (self.i64()?, self.i64()?);
            let time =
                TimeWindow::new((ts != i64::MIN).then_some(Timestamp(ts)), (te != i64::MAX).then_some(Timestamp(te)))
                    .map_err(geo)?;
            out.push(Volume4D { footprint, altitude, time });
        }
        Ok(out)
    }
    fn ovn(&mut self) -> Result<Ovn, StoreError> {
        Ovn::parse(&self.str()?).ok_or_else(|| corrupt("invalid OVN"))
    }

    pub(crate) fn write(&mut self) -> Result<Write, StoreError> {
        Ok(match self.u8()? {
            1 => Write::PutIntent(OperationalIntent {
                id: self.uuid()?,
                manager: self.str()?,
                version: self.u32()? as i32,
                state: OperationalIntentState::parse(&self.str()?).ok_or_else(|| corrupt("invalid state"))?,
                ovn: self.ovn()?,
                extents: self.volumes()?,
                uss_base_url: self.str()?,
                subscription_id: self.opt_uuid()?,
            }),
            2 => Write::DeleteIntent(self.uuid()?),
            3 => Write::PutConstraint(Constraint {
                id: self.uuid()?,
                manager: self.str()?,
                version: self.u32()? as i32,
                ovn: self.ovn()?,
                extents: self.volumes()?,
                uss_base_url: self.str()?,
            }),
            4 => Write::DeleteConstraint(self.uuid()?),
            5 => Write::PutSubscription(Subscription {
                id: self.uuid()?,
                manager: self.str()?,
                version: self.u64()?,
                notification_index: self.u32()? as i32,
                extents: self.volumes()?,
                uss_base_url: self.str()?,
                notify_for_operational_intents: self.u8()? != 0,
                notify_for_constraints: self.u8()? != 0,
                implicit: self.u8()? != 0,
            }),
            6 => Write::DeleteSubscription(self.uuid()?),
            7 => Write::BumpNotificationIndex(self.uuid()?),
            8 => Write::PutAvailability(AvailabilityRecord {
                uss: self.str()?,
                availability: UssAvailability::parse(&self.str()?).ok_or_else(|| corrupt("invalid availability"))?,
                version: self.str()?,
            }),
            _ => return Err(corrupt("unknown write tag")),
        })
    }
}

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
        return Err(corrupt("trailing bytes in record"));
    }
    Ok(Some((revision, writes, 8 + len)))
}
