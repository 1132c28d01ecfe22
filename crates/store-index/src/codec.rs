//! Compact binary encoding of store writes: the embedded store's log and snapshot records (which
//! add framing and a CRC, see `store-embedded`) and the etcd backend's values. Decoding rebuilds shapes through `geo4d`'s constructors (polygons through `restore`,
//! with the bounding box and area computed when they were first validated), so recovery does no
//! geodesic work per vertex and a damaged file still cannot yield an invalid value.

use geo4d::{AltitudeBand, Circle, Footprint, LatLng, Polygon, TimeWindow, Timestamp, Volume4D};
use model::rid::{Isa, RidApi, RidSubscription};
use model::{
    AvailabilityRecord, Constraint, OperationalIntent, OperationalIntentState, Ovn, Subscription, UssAvailability, Uuid,
};
use store::{StoreError, Write};

#[derive(Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
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

    pub fn write(&mut self, w: &Write) {
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
            Write::PutIsa(isa) => {
                self.u8(9);
                self.uuid(isa.id);
                self.str(&isa.manager);
                self.u64(isa.version);
                self.str(&isa.url);
                self.u8(rid_api_tag(isa.writer));
                self.volumes(std::slice::from_ref(&isa.extents));
            }
            Write::DeleteIsa(id) => {
                self.u8(10);
                self.uuid(*id)
            }
            Write::PutRidSubscription(sub) => {
                self.u8(11);
                self.uuid(sub.id);
                self.str(&sub.manager);
                self.u64(sub.version);
                self.u32(sub.notification_index as u32);
                self.str(&sub.url);
                self.u8(rid_api_tag(sub.writer));
                self.volumes(std::slice::from_ref(&sub.extents));
            }
            Write::DeleteRidSubscription(id) => {
                self.u8(12);
                self.uuid(*id)
            }
            Write::BumpRidNotificationIndex(id) => {
                self.u8(13);
                self.uuid(*id)
            }
        }
    }
}

fn rid_api_tag(api: RidApi) -> u8 {
    match api {
        RidApi::V19 => 1,
        RidApi::V22a => 2,
    }
}

pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub fn done(&self) -> bool {
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
    pub fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub fn u64(&mut self) -> Result<u64, StoreError> {
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

    pub fn write(&mut self) -> Result<Write, StoreError> {
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
            9 => Write::PutIsa(Isa {
                id: self.uuid()?,
                manager: self.str()?,
                version: self.u64()?,
                url: self.str()?,
                writer: self.rid_api()?,
                extents: self.one_volume()?,
            }),
            10 => Write::DeleteIsa(self.uuid()?),
            11 => Write::PutRidSubscription(RidSubscription {
                id: self.uuid()?,
                manager: self.str()?,
                version: self.u64()?,
                notification_index: self.u32()? as i32,
                url: self.str()?,
                writer: self.rid_api()?,
                extents: self.one_volume()?,
            }),
            12 => Write::DeleteRidSubscription(self.uuid()?),
            13 => Write::BumpRidNotificationIndex(self.uuid()?),
            _ => return Err(corrupt("unknown write tag")),
        })
    }

    fn rid_api(&mut self) -> Result<RidApi, StoreError> {
        match self.u8()? {
            1 => Ok(RidApi::V19),
            2 => Ok(RidApi::V22a),
            _ => Err(corrupt("unknown F3411 version")),
        }
    }

    fn one_volume(&mut self) -> Result<Volume4D, StoreError> {
        let mut volumes = self.volumes()?;
        match (volumes.pop(), volumes.is_empty()) {
            (Some(v), true) => Ok(v),
            _ => Err(corrupt("a Remote ID record holds exactly one volume")),
        }
    }
}
