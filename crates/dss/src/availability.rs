//! USS availability arbitration and DSS reports.

use model::{AvailabilityRecord, UssAvailability, Uuid};
use store::{Key, Precondition, Store, Txn, Write};

use crate::{Caller, Dss, DssError};

/// The identifier the DSS gives an archived report.
#[derive(Debug, Clone)]
pub struct ReportReceipt {
    pub report_id: String,
}

impl<S: Store> Dss<S> {
    pub async fn get_availability(&self, caller: &Caller, uss: &str) -> Result<AvailabilityRecord, DssError> {
        caller.require_any(crate::scopes::AVAILABILITY_READ)?;
        self.fresh().await?;
        let found = self.store.get_availability(uss).await?;
        Ok(self.shown(found).await?.map(|r| (*r.value).clone()).unwrap_or(AvailabilityRecord {
            uss: uss.to_owned(),
            availability: UssAvailability::Unknown,
            version: String::new(),
        }))
    }

    /// Sets a USS's availability if `old_version` is its current version ("" before the first
    /// change).
    pub async fn set_availability(
        &self,
        caller: &Caller,
        uss: &str,
        old_version: &str,
        availability: UssAvailability,
    ) -> Result<AvailabilityRecord, DssError> {
        caller.require_any(crate::scopes::AVAILABILITY_WRITE)?;
        if uss.is_empty() {
            return Err(DssError::BadRequest("uss_id may not be empty".into()));
        }
        self.retrying(|_view| async move {
            let current = self.store.get_availability(uss).await?;
            let current_version = current.as_ref().map_or("", |r| r.value.version.as_str());
            if current_version != old_version {
                return Err(DssError::Conflict(format!(
                    "old_version `{old_version}` is not the current version of {uss}'s availability"
                )));
            }
            let record =
                AvailabilityRecord { uss: uss.to_owned(), availability, version: Uuid::new_v4().simple().to_string() };
            let pre = Precondition::Revision {
                key: Key::Availability(uss.to_owned()),
                revision: current.map(|r| r.revision),
            };
            self.store
                .commit(Txn { preconditions: vec![pre], writes: vec![Write::PutAvailability(record.clone())] })
                .await?;
            Ok(record)
        })
        .await
    }

    /// Accepts a report of a communication problem. Reports are archived in the service log
    /// (the reference DSS does the same), tagged with the reporter and a report id.
    /// Checks the caller may report and names the report; the server archives it.
    pub fn make_report(&self, caller: &Caller) -> Result<ReportReceipt, DssError> {
        caller.require_any(crate::scopes::REPORTS)?;
        Ok(ReportReceipt { report_id: Uuid::new_v4().to_string() })
    }
}
