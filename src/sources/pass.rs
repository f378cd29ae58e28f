//! One account's sync pass as a source sees it: who, when, and the cursor windows every
//! source computes the same way.

use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};

use anonymizer::Record;

use crate::config::{Dataset, SeriesSettings, SyncSettings};
use crate::normalize::Skipped;
use crate::normalize::civil::Zone;
use crate::store::{Account, SqlStore, Store, StoreError};

/// The start of the `window` (aligned to the Unix epoch, so to UTC days) holding `at`.
pub fn window_start(at: DateTime<Utc>, window: TimeDelta) -> DateTime<Utc> {
    let w = window.num_seconds().max(1);
    let secs = at.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(w), 0).unwrap_or(at)
}

/// What a source needs to read one account's datasets in one pass.
pub struct AccountPass<'p> {
    pub account: &'p Account,
    /// The provider's user id (personal data: never log it).
    pub user_id: &'p str,
    /// The instant the pass reads up to.
    pub now: DateTime<Utc>,
    pub sync: &'p SyncSettings,
    /// How high-frequency types are published (`[anonymizer.series]`).
    pub series: &'p std::collections::BTreeMap<String, SeriesSettings>,
    store: &'p SqlStore,
    /// The person's civil zone, once a source has read it in this pass.
    pub zone: Option<Zone>,
    /// The dataset being read (whose look-back applies).
    pub dataset: Dataset,
    /// A zone the source asked the provider for in this pass, to be kept for later
    /// passes and the schedule (under [`crate::schedule::ZONE_CURSOR`]).
    pub zone_read: Option<Zone>,
    /// Per dataset, the earliest instant a push notification said changed: the read
    /// reaches back to it, no further than [`MAX_PUSH_REACH`] and `sync.start`.
    pub hints: std::collections::BTreeMap<Dataset, DateTime<Utc>>,
}

/// How far back a notification can make a read reach: it says only "look here", and a
/// forged or confused one must not make a pass re-read months.
pub const MAX_PUSH_REACH: TimeDelta = TimeDelta::days(30);

impl<'p> AccountPass<'p> {
    pub fn new(
        account: &'p Account,
        user_id: &'p str,
        now: DateTime<Utc>,
        sync: &'p SyncSettings,
        series: &'p std::collections::BTreeMap<String, SeriesSettings>,
        store: &'p SqlStore,
    ) -> Self {
        Self {
            account,
            user_id,
            now,
            sync,
            series,
            store,
            zone: None,
            dataset: Dataset::Devices,
            zone_read: None,
            hints: Default::default(),
        }
    }

    /// How far before its cursor the dataset being read starts.
    pub fn lookback(&self) -> TimeDelta {
        TimeDelta::from_std(self.sync.plan(self.dataset).lookback).unwrap_or(TimeDelta::zero())
    }

    /// [`AccountPass::since`] for samples of `message_type`: when they are published as
    /// series, moved back to the start of its window, so every window is read whole.
    pub async fn since_for(&self, cursor_key: &str, message_type: &str) -> Result<DateTime<Utc>, StoreError> {
        let since = self.since(cursor_key).await?;
        Ok(match crate::config::series_window(self.series, message_type) {
            Some(window) => window_start(since, window),
            None => since,
        })
    }

    /// The cursor an instant dataset advances to once read up to `now` (RFC 3339).
    pub fn now_cursor(&self) -> String {
        self.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// The stored cursor `key` of this account.
    pub async fn cursor(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.store.cursor(self.account.id, key).await
    }

    /// The start of an instant window: `cursor - lookback`, or `sync.start` on a first
    /// backfill (never earlier than `sync.start`).
    pub async fn since(&self, cursor_key: &str) -> Result<DateTime<Utc>, StoreError> {
        let start = self.sync.start.resolve(self.now);
        let lookback = self.lookback();
        let cursor = self.cursor(cursor_key).await?;
        let since = match cursor.and_then(|c| DateTime::parse_from_rfc3339(&c).ok()) {
            Some(c) => c.with_timezone(&Utc).checked_sub_signed(lookback).unwrap_or(start).max(start),
            None => start,
        };
        Ok(match self.hint() {
            Some(hint) => since.min(hint.max(start)),
            None => since,
        })
    }

    /// The dataset's push hint, a minute early (a notification's interval and the data's
    /// own times need not share a precision), no earlier than [`MAX_PUSH_REACH`] before now.
    fn hint(&self) -> Option<DateTime<Utc>> {
        let floor = self.now - MAX_PUSH_REACH;
        self.hints.get(&self.dataset).map(|h| (*h - TimeDelta::minutes(1)).max(floor))
    }

    /// A sample read for `[from, now)` must lie in it: one outside is an upstream that
    /// ignored the query (or lies), skipped and counted.
    pub fn within(&self, record: Record, from: DateTime<Utc>) -> Result<Record, Skipped> {
        let at = record.observation.source_time();
        if at < from || at >= self.now {
            return Err(Skipped::bad("a sample outside the requested window"));
        }
        Ok(record)
    }

    /// The first civil day (in `zone`) to read for a daily cursor: the cursor's day less
    /// the look-back in whole days (at least one), or the day of `sync.start`; `None`
    /// when the cursor already reaches today (no day has ended since the last read).
    pub async fn first_day(&self, zone: Zone, cursor_key: &str) -> Result<Option<NaiveDate>, StoreError> {
        let lookback_days = self.sync.plan(self.dataset).lookback.as_secs().div_ceil(86_400).max(1);
        let start = zone.date_of(self.sync.start.resolve(self.now));
        let today = zone.date_of(self.now);
        let cursor = self.cursor(cursor_key).await?;
        let first = match cursor.and_then(|c| c.parse::<NaiveDate>().ok()) {
            Some(c) if c >= today => None,
            Some(c) => Some(c.checked_sub_days(Days::new(lookback_days)).unwrap_or(start).max(start)),
            None => Some(start),
        };
        // A notification about a day that is over reaches back to that day.
        let hinted = self.hint().map(|h| zone.date_of(h).max(start)).filter(|d| *d < today);
        Ok(match (first, hinted) {
            (Some(f), Some(h)) => Some(f.min(h)),
            (f, h) => f.or(h),
        })
    }

    /// The zone a source kept in an earlier pass, if it was read on the person's
    /// current civil day (a person who travels is followed daily).
    pub async fn todays_zone(&self) -> Result<Option<Zone>, StoreError> {
        let stored = self.cursor(crate::schedule::ZONE_CURSOR).await?;
        Ok(stored
            .as_deref()
            .and_then(crate::schedule::stored_zone)
            .filter(|(read_on, zone)| *read_on == zone.date_of(self.now))
            .map(|(_, zone)| zone))
    }
}
