//! Pure pseudonymisation for wearbridge: canonical [`Record`]s in, allow-listed
//! [`Message`]s out.
//!
//! This crate does no I/O and holds no clocks, so every privacy property can be tested
//! exhaustively and reviewed in one place. Everything a buyer receives passes through
//! [`Anonymizer::anonymize`]; what is not built here from an explicit field list cannot
//! leave (fail closed).

mod build;
mod key;
mod message;
mod policy;
mod pseudonym;
mod record;
mod time;

pub use key::{KeyError, PseudonymKey};
pub use message::{
    Body, Header, Interval, Measurement, Message, SchemaId, SeriesPoint, SeriesValues, StageMinutes, TimeFrame,
    UnitValue,
};
pub use policy::{KNOWN_TYPES, Policy};
pub use record::{DeviceFamily, MeasureKind, Modality, Observation, Provider, Record, SleepStages};

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::TimeDelta;

/// Why a record did not become a message. Dropped records are counted, never passed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// The record's type is not on the policy's allow-list.
    #[error("message type {0} is not allowed by the policy")]
    TypeNotAllowed(&'static str),
    /// A value is outside what the published schema can carry (NaN, negative, absurd).
    #[error("value of {field} is out of range")]
    OutOfRange { field: &'static str },
}

/// Counters of what the anonymizer refused; read by metrics and the run summary.
#[derive(Debug, Default)]
pub struct DropCounters {
    type_not_allowed: AtomicU64,
    out_of_range: AtomicU64,
}

impl DropCounters {
    /// Total records dropped since start.
    pub fn total(&self) -> u64 {
        self.type_not_allowed.load(Ordering::Relaxed) + self.out_of_range.load(Ordering::Relaxed)
    }
}

/// Turns canonical records into publishable messages under one key and one policy.
pub struct Anonymizer {
    key: PseudonymKey,
    policy: Policy,
    dropped: DropCounters,
}

impl Anonymizer {
    pub fn new(key: PseudonymKey, policy: Policy) -> Self {
        Self { key, policy, dropped: DropCounters::default() }
    }

    /// The pseudonymous subject of a provider account under the current key epoch.
    pub fn subject(&self, provider: Provider, account_id: &str) -> String {
        pseudonym::subject(&self.key, provider, account_id)
    }

    /// What was dropped so far.
    pub fn dropped(&self) -> &DropCounters {
        &self.dropped
    }

    /// Builds the message for one record, or says why it is dropped (and counts it).
    pub fn anonymize(&self, record: &Record) -> Result<Message, Dropped> {
        self.for_account(record.provider, &record.account_id).anonymize(record)
    }

    /// The anonymizer for one account's records: its subject and date shift are derived
    /// once here instead of once per message (two of a message's three keyed hashes).
    pub fn for_account(&self, provider: Provider, account_id: &str) -> ForAccount<'_> {
        let subject = self.subject(provider, account_id);
        let shift = self.policy.date_shift(&self.key, &subject);
        ForAccount { anonymizer: self, provider, account_id: account_id.to_owned(), subject, shift }
    }

    /// Like [`Anonymizer::for_account`], with the subject of the person whose subject
    /// basis is `basis`: all of one person's accounts publish under one subject, so a
    /// buyer can join their Fitbit heart rate with their Withings weight. Message ids stay
    /// per account (two providers' readings never share one).
    pub fn for_person(&self, basis: &str, provider: Provider, account_id: &str) -> ForAccount<'_> {
        let subject = pseudonym::person_subject(&self.key, basis);
        let shift = self.policy.date_shift(&self.key, &subject);
        ForAccount { anonymizer: self, provider, account_id: account_id.to_owned(), subject, shift }
    }

    fn build(&self, record: &Record, subject: &str, shift: TimeDelta) -> Result<Message, Dropped> {
        let schema = record.observation.schema_name();
        if !self.policy.allows(schema) {
            return Err(Dropped::TypeNotAllowed(schema));
        }
        let timing = build::Timing {
            shift,
            granularity: self.policy.granularity(schema),
            mass_step: self.policy.mass_step_kg(),
            top_code_kg: self.policy.top_code_kg(),
        };
        let (body, at) = build::body(&record.observation, &timing)?;
        let uuid = pseudonym::message_id(
            &self.key,
            record.provider,
            &record.account_id,
            schema,
            &record.source_key,
            record.observation.source_time(),
        );
        Ok(Message {
            subject: subject.to_owned(),
            key_epoch: self.key.epoch().to_owned(),
            header: Header {
                uuid,
                schema_id: SchemaId::wearbridge(schema),
                source_creation_date_time: at,
                modality: record.observation.modality(),
                provider: record.provider,
            },
            body,
        })
    }
}

/// [`Anonymizer`] scoped to one provider account (see [`Anonymizer::for_account`]).
pub struct ForAccount<'a> {
    anonymizer: &'a Anonymizer,
    provider: Provider,
    account_id: String,
    subject: String,
    shift: TimeDelta,
}

impl ForAccount<'_> {
    /// The account's pseudonymous subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// As [`Anonymizer::anonymize`]; a record of another account gets its own derivations,
    /// never this account's subject.
    pub fn anonymize(&self, record: &Record) -> Result<Message, Dropped> {
        let result = if record.provider == self.provider && record.account_id == self.account_id {
            self.anonymizer.build(record, &self.subject, self.shift)
        } else {
            let other = self.anonymizer.for_account(record.provider, &record.account_id);
            self.anonymizer.build(record, &other.subject, other.shift)
        };
        if let Err(reason) = &result {
            let counters = &self.anonymizer.dropped;
            let counter = match reason {
                Dropped::TypeNotAllowed(_) => &counters.type_not_allowed,
                Dropped::OutOfRange { .. } => &counters.out_of_range,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

#[cfg(test)]
mod tests;
